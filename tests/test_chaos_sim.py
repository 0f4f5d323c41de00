"""Chaos: real federations whose clients send everything wrong, under three strategies.

Bounded (one round, then one resumed round, 8 virtual clients), and it stops by itself.
"""

import csv
import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from fedslim.client.faults import faulty_app
from fedslim.config import EngineConfig, RunConfig
from fedslim.server.checkpoint import latest
from fedslim.simulations.run import simulate

FAULTS = {
    1: "wrong-types",
    2: "huge",
    3: "nan",
    4: "truncate",
    5: "oversized",
    6: "stale",
    7: "wrong-size",
}
REASON = {  # what each fault's status must say
    "wrong-types": "numbers",
    "huge": "max-update-ratio",
    "nan": "spec",
    "truncate": "CRC",
    "oversized": "exceeds",
    "stale": "another adapter",
    "wrong-size": "allowed 1..",
}
SIM = EngineConfig(num_supernodes=8, num_cpus=2)


@pytest.mark.parametrize("strategy", ["fedavg", "fedavgm", "exact"])
def test_a_run_survives_hostile_clients_and_resumes(tmp_path, strategy):
    cfg = RunConfig.of(
        out=str(tmp_path),
        strategy=strategy,
        num_server_rounds=1,
        num_examples=800,
        local_steps=5,
        uplink_codec="q8|zstd:3",
        downlink_codec="q8|zstd:3",
        seed=2,
    )
    app = faulty_app(FAULTS)
    first = simulate(cfg, SIM, report=lambda e, p: None, client_app=app)
    resumed = simulate(
        cfg.replace(num_server_rounds=2, resume=True), SIM, report=lambda e, p: None, client_app=app
    )
    assert first["rounds"] == 1 and resumed["rounds"] == 2
    with (tmp_path / "clients.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == resumed["rounds"] * SIM.num_supernodes  # a row per client-round
    for row in rows:
        client = int(row["client"])
        if client == 0:
            assert row["status"] == "ok"
        else:
            assert REASON[FAULTS[client]] in row["status"], (client, row["status"])
            assert row["train_loss"] in ("nan", "") and row["flops"] == "0"
    adapter = load_file(str(latest(tmp_path / "checkpoint") / "adapter.safetensors"))
    assert all(np.isfinite(v).all() for v in adapter.values())
    state = json.loads((latest(tmp_path / "checkpoint") / "state.json").read_text())
    assert [r["clients"] for r in state["history"]["rounds"]] == [0, 1, 1]
