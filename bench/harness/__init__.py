"""What every benchmark shares: child processes, the backends, the service under test, signing, the report.

The benchmark scripts (bench/*.py) orchestrate; they never serve or load anything themselves. The
service under test (`webhookd serve`), each baseline server (bench/servers/) and each load generator
(bench/load/) run in processes of their own, so a figure and its baseline are measured alike.
"""

import os

# The orchestrator starts processes while gRPC's threads live (its set-up calls use a gRPC channel);
# gRPC's fork handlers are not needed for fork+exec and would log warnings. Read when grpc loads.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
