"""The `client` extra is what a device needs and nothing more: installed into a fresh
virtual environment (no Ray), it runs a SuperNode that trains in a real federation."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from fedslim.config import RunConfig
from fedslim.deploy.local import LocalDeployment

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_a_supernode_runs_from_a_venv_with_only_the_client_extra(tmp_path, monkeypatch):
    # Flower's Ray backend (a simulation test earlier in the session) sets PYTHONPATH in
    # this process, which would let the edge environment import this one's packages
    monkeypatch.delenv("PYTHONPATH", raising=False)
    venv = tmp_path / "edge"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True, timeout=900)
    subprocess.run([*pip, "-e", f"{ROOT}[client]"], check=True, timeout=900)
    for absent in ("ray", "pytest", "hypothesis"):  # no Simulation Engine, no dev tools
        probe = subprocess.run([str(venv / "bin" / "python"), "-I", "-c", f"import {absent}"],
                               capture_output=True, timeout=120)  # fmt: skip
        assert probe.returncode != 0, f"{absent} came with the client extra"
    out = tmp_path / "run"
    local = LocalDeployment(tmp_path / "fed", 2, tls=True)
    try:
        local.start(first=1)  # node 0 from this environment ...
        local.start_node(1, venv=venv)  # ... node 1, a device, from the edge environment
        local.wait_for_nodes(2)
        run = RunConfig.of(num_server_rounds=1, num_examples=400, local_steps=2, out=str(out),
                           min_train_clients=2)  # fmt: skip
        local.submit(run, timeout=600)
        edge = next(c for c in local.procs if c.name == "supernode-1")
        assert str(venv) in Path(f"/proc/{edge.pid}/cmdline").read_bytes().decode()
    finally:
        local.stop()
    with (out / "clients.csv").open() as fh:
        rows = {r["client"]: r["status"] for r in csv.DictReader(fh)}
    assert rows == {"0": "ok", "1": "ok"}
