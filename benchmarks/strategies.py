"""Strategies x (no compression, a compressed pipeline) on real federations.

For each strategy and codec setting, one run per seed on Flower's Simulation Engine;
prints final accuracy, rounds to reach 95% of the best final accuracy in the table,
and uplink / downlink bytes (Flower messages on the wire), means over seeds; the table
is also written to ``OUT/CASE-table.txt``. Stored finished runs are reused.

    python benchmarks/strategies.py --case tiny --seeds 0 1
    python benchmarks/strategies.py --case wordnet --seeds 0 --codecs fp32 --strategies exact
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from convergence import CASES, run_once

STRATEGIES = {
    "fedavg": {},
    "ffa": {"strategy": "ffa"},
    "exact": {"strategy": "exact"},
    "hetero-4,8": {"lora_ranks": "4,8"},
    "fedavgm": {"strategy": "fedavgm", "server_momentum": 0.5},
    "fedadam": {"strategy": "fedadam", "server_lr": 0.01},
    "fedyogi": {"strategy": "fedyogi", "server_lr": 0.01},
    "fedprox": {"strategy": "fedprox", "proximal_mu": 0.01},
    "fedmedian": {"strategy": "fedmedian"},
}
CODECS = {"fp32": ("none", "none"), "compressed": ("topk:0.1|q4|zstd:3", "q8|zstd:3")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=sorted(CASES), default="tiny")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    ap.add_argument("--codecs", nargs="+", choices=list(CODECS), default=list(CODECS))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/strategies"))
    ap.add_argument("--fresh", action="store_true", help="re-run even stored finished runs")
    args = ap.parse_args()
    make_base, nodes = CASES[args.case]
    base = make_base()
    rounds = base.pop("num_server_rounds", 5)
    t0 = time.perf_counter()
    table: dict[tuple[str, str], list[list]] = {}
    for name in args.strategies:
        for codec in args.codecs:
            up, down = CODECS[codec]
            for seed in args.seeds:
                out = args.out / args.case / f"{name}-{codec}-s{seed}"
                rows = run_once(
                    {**base, **STRATEGIES[name]},
                    nodes,
                    up,
                    down,
                    seed,
                    rounds,
                    0.0,
                    out,
                    fresh=args.fresh,
                )
                table.setdefault((name, codec), []).append(rows)
                print(
                    f"[{time.perf_counter() - t0:6.0f}s] {name} {codec} seed {seed}: "
                    f"{rows[-1].accuracy:.3f}",
                    flush=True,
                )
    lines = report(table, args.case, len(args.seeds), rounds)
    print("\n" + "\n".join(lines))
    (args.out / f"{args.case}-table.txt").write_text("\n".join(lines) + "\n")


def report(table: dict, case: str, seeds: int, rounds: int) -> list[str]:
    best = max(statistics.mean(r[-1].accuracy for r in runs) for runs in table.values())
    lines = [
        f"{case}: {seeds} seeds, {rounds} rounds; 95% of best = {0.95 * best:.3f}",
        "| strategy | codec | final acc | rounds to 95% best | uplink | downlink |",
        "|---|---|---|---|---|---|",
    ]
    for (name, codec), runs in table.items():
        reach = [
            next((r.round for r in rows if r.round > 0 and r.accuracy >= 0.95 * best), None)
            for rows in runs
        ]
        shown = (
            f"{statistics.mean(reach):.1f}"
            if all(x is not None for x in reach)
            else f"{sum(x is not None for x in reach)}/{len(runs)} reach"
        )
        acc = statistics.mean(r[-1].accuracy for r in runs)
        up = statistics.mean(sum(r.uplink_bytes for r in rows) for rows in runs)
        down = statistics.mean(sum(r.downlink_bytes for r in rows) for rows in runs)
        lines.append(
            f"| {name} | {codec} | {acc:.3f} | {shown} | {up / 1e3:,.1f} KB | "
            f"{down / 1e3:,.1f} KB |"
        )
    return lines


if __name__ == "__main__":
    main()
