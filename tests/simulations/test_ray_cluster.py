"""A federation on an existing Ray cluster: a head started on 127.0.0.1 by the test."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
# Ray resolves 127.0.0.1 to the machine's routed address unless told to stay local
ENV = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "FLWR_TELEMETRY_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_run_on_an_existing_ray_cluster(tmp_path):
    port, temp = _free_port(), tempfile.mkdtemp(prefix="ray", dir="/tmp")
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp}"],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not _listening(port):
            assert time.monotonic() < deadline and head.poll() is None, "the Ray head never came up"
            time.sleep(0.5)
        args = [str(BIN / "fedslim"), "simulate", "--verbose", "--out", str(tmp_path / "run")]
        for kv in ("num-supernodes=2", "num-server-rounds=1", "num-examples=300",
                   "local-steps=3", f"ray-address=127.0.0.1:{port}"):  # fmt: skip
            args += ["--set", kv]
        run = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=300)
        log = run.stdout + run.stderr
        assert run.returncode == 0, log[-3000:]
        assert f"Connecting to existing Ray cluster at address: 127.0.0.1:{port}" in log
        assert (tmp_path / "run" / "summary.json").exists()
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
