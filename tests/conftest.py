import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # tests never leave this machine
