"""A real federation with compression both ways and clients that send broken replies."""

import csv
import logging

from fedslim.client.faults import faulty_app
from fedslim.config import EngineConfig, RunConfig
from fedslim.simulations.run import simulate

FAULTS = {1: "garbage", 2: "nan", 3: "wrong-size", 4: "no-metrics", 5: "error"}


def test_broken_replies_are_logged_and_dropped_and_the_run_completes(tmp_path):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("flwr").addHandler(handler)
    try:
        cfg = RunConfig.of(
            out=str(tmp_path),
            num_server_rounds=2,
            num_examples=600,
            local_steps=10,
            uplink_codec="topk:0.1|q8|zstd:3",
            downlink_codec="q8|zstd:3",
            seed=1,
        )
        summary = simulate(
            cfg,
            EngineConfig(num_supernodes=6, num_cpus=2),
            report=lambda e, p: None,
            client_app=faulty_app(FAULTS),
        )
    finally:
        logging.getLogger("flwr").removeHandler(handler)
    with (tmp_path / "clients.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    status = {(int(r["round"]), int(r["client"])): r["status"] for r in rows}
    for rnd in (1, 2):
        assert status[(rnd, 0)] == "ok"
        for client in FAULTS:
            assert status[(rnd, client)] != "ok", (rnd, client)
    assert "injected client failure" in status[(1, 5)]
    assert "metrics" in status[(1, 4)]
    assert "spec" in status[(1, 2)]  # raw NaN in a compressed run: not the run's codec
    dropped = [r.getMessage() for r in records if "dropped reply" in r.getMessage()]
    assert len(dropped) == 2 * len(FAULTS)
    assert summary["final_accuracy"] > summary["initial_accuracy"]
    honest = [r for r in rows if r["status"] == "ok"]
    raw = 4 * summary["adapter_params"]  # the update in fp32; q8 + zstd is under a fifth
    assert all(int(r["uplink_payload_bytes"]) < 0.2 * raw for r in honest)
