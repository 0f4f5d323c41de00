"""Every LoRA-aware strategy in a real federation (Flower Simulation Engine, loopback)."""

import csv

import pytest

from fedslim.config import RunConfig, SimulationConfig
from fedslim.simulations.run import simulate

CASES = [  # (run-config overrides, what must hold)
    ({"strategy": "exact"}, "improves"),
    ({"strategy": "ffa"}, "half-uplink"),
    ({"lora_ranks": "4,8"}, "rank-bytes"),
    ({"strategy": "fedadam", "server_lr": 0.01}, "runs"),
    ({"strategy": "fedprox", "proximal_mu": 0.1}, "improves"),
]


@pytest.mark.parametrize(("overrides", "check"), CASES, ids=[str(c[0]) for c in CASES])
def test_strategy_in_a_real_federation(tmp_path, overrides, check):
    cfg = RunConfig(
        out=str(tmp_path),
        num_server_rounds=2,
        num_examples=600,
        local_steps=15,
        uplink_codec="q8|zstd:3",
        downlink_codec="q8|zstd:3",
        seed=2,
        **overrides,
    )
    summary = simulate(
        cfg, SimulationConfig(num_supernodes=2, num_cpus=2), report=lambda e, p: None
    )
    with (tmp_path / "clients.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    if check == "improves":
        assert summary["final_accuracy"] > summary["initial_accuracy"]
    if check == "rank-bytes":  # client 0 trains and sends rank 4, client 1 rank 8
        by_client = {int(r["client"]): int(r["uplink_payload_bytes"]) for r in rows}
        assert by_client[0] < 0.8 * by_client[1]
    if check == "half-uplink":  # B and the head only: 4,608 of 8,704 values at rank 8
        assert all(int(r["uplink_payload_bytes"]) < 0.6 * 8704 for r in rows)
