"""The load generators: each a process of its own that drives one target and prints one JSON line."""
