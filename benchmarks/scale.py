"""Cost of a round follows the sampled clients, not the population.

The same 50 clients per round from a population of 1,000 (fraction-train 0.05) and of
100 (0.5), on the tiny default: warm-round wall time side by side, and the peak resident
memory of the whole process tree (the driver, Ray and its workers), sampled every 0.2 s.

    python benchmarks/scale.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from fedslim.config import EngineConfig, RunConfig  # noqa: E402
from fedslim.simulations.run import simulate  # noqa: E402

CASES = {"1,000 clients at 5%": (1000, 0.05), "100 clients at 50%": (100, 0.5)}


def tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and all its descendants, from /proc."""
    parents, rss = {}, {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            status = (proc / "status").read_text()
        except OSError:
            continue
        pid = int(proc.name)
        parents[pid] = int(stat[1])
        rss[pid] = next(
            (int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS")), 0
        )
    total, todo = 0, [root]
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total / 1024


def run(nodes: int, fraction: float, rounds: int) -> tuple[list[float], float, int]:
    peak, done = [0.0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss_mb(os.getpid()))
            time.sleep(0.2)

    walls, sampled = [], []
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    with tempfile.TemporaryDirectory() as out:
        cfg = RunConfig.of(num_server_rounds=rounds, fraction_train=fraction, out=out)

        def report(event: str, payload) -> None:
            if event == "round" and payload.round > 0:
                walls.append(payload.wall_s)
                sampled.append(payload.clients)

        simulate(cfg, EngineConfig(num_supernodes=nodes), report=report)
    done.set()
    thread.join()
    return walls, peak[0], max(sampled)


def main() -> None:
    results = {}
    for name, (nodes, fraction) in CASES.items():
        walls, peak, sampled = run(nodes, fraction, rounds=3)
        warm = statistics.mean(walls[1:])
        results[name] = warm
        print(f"{name}: {sampled} clients per round, warm round {warm:.2f} s "
              f"(rounds {', '.join(f'{w:.2f}' for w in walls)}), peak RSS {peak:,.0f} MB",
              flush=True)  # fmt: skip
    big, small = results.values()
    print(f"warm round, 1,000-client population / 100-client population: {big / small:.2f}x")


if __name__ == "__main__":
    main()
