"""Faults real devices bring, on the Deployment Engine with real processes on 127.0.0.1:
a SuperNode killed mid-round, a client sending corrupted blobs, a SuperNode that joins
late, the server side stopped after round r and the job resumed. Each is bounded in time."""

import csv
import signal
import threading
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

from fedslim.config import RunConfig
from fedslim.deploy.local import LocalDeployment

pytestmark = pytest.mark.slow

JOB = dict(num_examples=400, local_steps=40, round_timeout_s=30.0)


def _rows(out, name="clients.csv") -> list[dict]:
    path = out / name
    if not path.exists():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _when(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _background(local, run, **kwargs):
    """Submit in a thread; returns (thread, box) where box holds the summary or error."""
    box: dict = {}

    def job():
        try:
            box["summary"] = local.submit(run, timeout=600, **kwargs)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            box["error"] = exc

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    return thread, box


def test_a_supernode_killed_mid_round_and_a_corrupted_client(tmp_path):
    """3 SuperNodes, min-train-clients 1: node 1 sends truncated blobs every round, node 2
    is killed during round 2. Every round completes and the run finishes."""
    out = tmp_path / "run"
    node_config = {1: 'fault="truncate"'}
    with LocalDeployment(tmp_path / "fed", 3, tls=False, node_config=node_config) as local:
        run = RunConfig.of(num_server_rounds=4, out=str(out), **JOB)
        thread, box = _background(local, run, clientapp="fedslim.client.faults:app")
        _when(lambda: any(r["round"] == "1" for r in _rows(out, "rounds.csv")), 300, "round 1")
        victim = next(c for c in local.procs if c.name == "supernode-2")
        victim.signal(signal.SIGKILL)  # a device that dies mid-round, without a goodbye
        thread.join(600)
    assert "error" not in box, box.get("error")
    assert box["summary"]["rounds"] == 4
    rows = _rows(out)
    corrupted = [r for r in rows if r["client"] == "1"]
    assert corrupted and all(r["status"] != "ok" and "truncat" in r["status"] for r in corrupted)
    honest = [r["status"] for r in rows if r["client"] == "0"]
    assert honest == ["ok"] * box["summary"]["rounds"], honest  # every round, not vacuously
    late = [r for r in rows if r["client"] == "2" and int(r["round"]) >= 3]
    assert not any(r["status"] == "ok" for r in late)  # gone, and the rounds went on
    assert {r["round"] for r in _rows(out, "rounds.csv")} == {"0", "1", "2", "3", "4"}


def test_a_supernode_that_joins_late_takes_part_in_later_rounds(tmp_path):
    out = tmp_path / "run"
    local = LocalDeployment(tmp_path / "fed", 3, tls=False)
    try:
        local.start(first=2)
        # many short rounds: a late node's first app load takes seconds, rounds do not wait
        job = JOB | {"local_steps": 5}
        run = RunConfig.of(num_server_rounds=80, out=str(out), min_train_clients=2, **job)
        thread, box = _background(local, run)
        _when(lambda: any(r["round"] == "1" for r in _rows(out, "rounds.csv")), 300, "round 1")
        local.start_node(2)
        thread.join(600)
    finally:
        local.stop()
    assert "error" not in box, box.get("error")
    rows = _rows(out)
    assert not [r for r in rows if r["client"] == "2" and r["round"] == "1"]
    joined = [r for r in rows if r["client"] == "2" and r["status"] == "ok"]
    assert joined and int(joined[-1]["round"]) == 80  # admitted, then in every round
    assert len(joined) == 80 - int(joined[0]["round"]) + 1


def _executors(supernode_pid: int) -> list:
    """The fast engine's ClientApp executor(s) under a SuperNode."""
    import psutil

    kids = psutil.Process(supernode_pid).children(recursive=True)
    return [p for p in kids if "executor" in " ".join(p.cmdline())]


def test_a_clientapp_executor_killed_mid_task_is_replaced_at_once(tmp_path):
    """The OOM killer takes node 1's executor while it trains in round 2: the SuperNode
    expires the task at once (Flower's crash reply for round 2, not a minute of silence),
    starts another executor, and node 1 trains again from the next rounds on."""
    out = tmp_path / "run"
    with LocalDeployment(tmp_path / "fed", 2, tls=False) as local:
        node = next(c for c in local.procs if c.name == "supernode-1")
        _when(lambda: _executors(node.pid), 60, "node 1's executor")
        [victim] = _executors(node.pid)
        # ~1.5 s of training a round: the kill below lands inside it, polling or not
        run = RunConfig.of(num_server_rounds=6, out=str(out), **(JOB | {"local_steps": 200}))
        thread, box = _background(local, run)
        received = lambda: local.log("supernode-1").count("Received successfully")  # noqa: E731
        _when(lambda: received() >= 3, 300, "node 1's round-2 message")  # query, r1, r2
        time.sleep(0.5)  # into its training
        victim.kill()
        thread.join(600)
        assert [p.pid for p in _executors(node.pid)] not in ([], [victim.pid])
    assert "error" not in box, box.get("error")
    mine = {int(r["round"]): r["status"] for r in _rows(out) if r["client"] == "1"}
    assert mine[1] == "ok" and "client error" in mine[2], mine
    assert all(mine[r] == "ok" for r in (5, 6)), mine  # a resync may cost round 3
    walls = [float(r["wall_s"]) for r in _rows(out, "rounds.csv")[1:]]
    assert max(walls) < 20, walls  # no round waited out the 30 s timeout


def test_the_server_side_stopped_after_round_r_resumes_to_the_same_adapter(tmp_path):
    """The SuperLink (and with it the ServerApp) is stopped after round 2 of 4 and started
    again; `--resume` continues from checkpoint 2 and ends with the adapter of an
    uninterrupted run, bit for bit."""
    common = dict(num_server_rounds=4, **JOB)
    with LocalDeployment(tmp_path / "fed", 2, tls=False) as local:
        local.submit(RunConfig.of(out=str(tmp_path / "whole"), **common), timeout=600)
        cut = tmp_path / "cut"
        thread, box = _background(local, RunConfig.of(out=str(cut), **common))
        _when(lambda: (cut / "checkpoint" / "LATEST").exists()
              and "round-000002" in (cut / "checkpoint" / "LATEST").read_text(), 300,
              "checkpoint 2")  # fmt: skip
        local.restart_superlink()
        thread.join(120)
        assert "error" in box  # that job died with its server
        local.submit(RunConfig.of(out=str(cut), resume=True, **common), timeout=600)
    took_part = {(r["round"], r["client"]) for r in _rows(cut) if r["status"] == "ok"}
    assert took_part == {(str(r), str(c)) for r in range(1, 5) for c in (0, 1)}, _rows(cut)
    whole = load_file(
        str(tmp_path / "whole" / "checkpoint" / "round-000004" / "adapter.safetensors")
    )
    resumed = load_file(str(cut / "checkpoint" / "round-000004" / "adapter.safetensors"))
    assert whole.keys() == resumed.keys()
    assert all(np.array_equal(whole[k], resumed[k]) for k in whole)
