"""Where a simulated round's time goes: Flower + Ray framework overhead vs pure training.

Runs, side by side in one process: (1) the clients' local training called directly,
with and without FLOP counting, and (2) the same federation on Flower's Simulation
Engine. Prints ratios, not absolute claims: the machine sets the absolute numbers.

    python benchmarks/overhead.py [--clients 5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

import torch  # noqa: E402

from fedslim import seeds  # noqa: E402
from fedslim.client.workload import model_spec, run_task  # noqa: E402
from fedslim.config import EngineConfig, RunConfig  # noqa: E402
from fedslim.ledger import read_clients  # noqa: E402
from fedslim.simulations.run import simulate  # noqa: E402
from fedslim.task import train as train_mod  # noqa: E402
from fedslim.task.adapters import get_adapter, set_adapter  # noqa: E402
from fedslim.task.models import build_model, build_tokenizer  # noqa: E402
from fedslim.task.partition import partition_indices  # noqa: E402


def direct_round(cfg: RunConfig, clients: int, count_flops: bool) -> tuple[float, list[float]]:
    """One round of every client's local training, called directly (no Flower, no Ray)."""
    task = run_task(cfg)
    tok = build_tokenizer(cfg.adapter.model)
    start_adapter = get_adapter(build_model(model_spec(cfg, task)))
    real_counter = train_mod.FlopCounterMode
    if not count_flops:
        train_mod.FlopCounterMode = _NoCount  # type: ignore[misc]
    t0, per_client = time.perf_counter(), []
    try:
        for pid in range(clients):
            model = build_model(model_spec(cfg, task))
            set_adapter(model, start_adapter)
            idx = partition_indices(
                task, cfg.task.partition, partition_id=pid, num_partitions=clients, seed=cfg.seed
            )
            res = train_mod.train_local(
                model,
                task,
                idx,
                tok,
                steps=cfg.task.local_steps,
                batch_size=cfg.task.batch_size,
                lr=cfg.task.lr,
                max_length=cfg.task.max_length,
                seed=seeds.local_training(cfg.training_seed, 1, pid),
            )
            per_client.append(res.seconds)
    finally:
        train_mod.FlopCounterMode = real_counter
    return time.perf_counter() - t0, per_client


class _NoCount:
    def __init__(self, *a, **k) -> None: ...
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None: ...
    def get_total_flops(self) -> int:
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)  # as in a Ray actor with one CPU
    with tempfile.TemporaryDirectory() as out:
        cfg = RunConfig.of(num_server_rounds=args.rounds, out=out)
        direct_round(cfg, 1, True)  # warm caches (task, imports) so both sides start equal
        plain_s, plain = direct_round(cfg, args.clients, count_flops=False)
        counted_s, counted = direct_round(cfg, args.clients, count_flops=True)
        rows: list = []
        t0 = time.perf_counter()
        sim = EngineConfig(num_supernodes=args.clients)
        marks: dict[str, float] = {}

        def report(event: str, payload) -> None:
            marks.setdefault(event, time.perf_counter() - t0)
            if event == "round" and payload.round > 0:
                rows.append(payload)

        simulate(cfg, sim, report=report)
        total = time.perf_counter() - t0
        clients = read_clients(Path(out))
    parallel = 2  # Ray runs two one-CPU clients at a time on this 2-core machine
    walls = [r.wall_s for r in rows]
    warm = statistics.mean(walls[1:]) if len(walls) > 1 else walls[0]
    # the sum of the clients' own training seconds in the warm rounds, over the workers
    warm_rounds = {r.round for r in rows[1:]} or {rows[0].round}
    trained = sum(c.train_s for c in clients if c.round in warm_rounds) / len(warm_rounds)
    ideal = trained / parallel
    print(f"clients={args.clients} rounds={args.rounds} local-steps={cfg.task.local_steps}")
    print(
        f"direct training, one round, sequential:  {plain_s:6.2f} s "
        f"(per client {statistics.mean(plain):.3f} s in the step loop)"
    )
    print(
        f"  with FLOP counting:                    {counted_s:6.2f} s "
        f"-> counting costs {statistics.mean(counted) / statistics.mean(plain):.2f}x "
        "the step loop"
    )
    print(
        f"simulation total {total:.1f} s: engine start + node discovery "
        f"{marks.get('start', 0):.1f} s, rounds {sum(walls):.1f} s, "
        f"teardown {total - marks.get('end', total):.1f} s"
    )
    print(f"round 1 (cold actors) {walls[0]:.2f} s; warm rounds {warm:.2f} s each")
    print(
        f"warm round / ideal parallel training time ({ideal:.2f} s): {warm / ideal:.2f}x "
        f"-> framework overhead {max(warm - ideal, 0) / args.clients * 1000:.0f} ms "
        "per client message (includes model build and central evaluation)"
    )


if __name__ == "__main__":
    main()
