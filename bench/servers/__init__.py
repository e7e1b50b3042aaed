"""The baseline servers: bare versions of what the service does, each run as a process of its own."""
