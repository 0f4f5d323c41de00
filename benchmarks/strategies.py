"""Strategies x (no compression, a compressed pipeline) on real federations, as a sweep.

For each strategy and codec setting, ``--repeat`` runs (seeds 0, 1, ...) on Flower's
Simulation Engine through ``fedslim.experiments.sweep`` (finished runs under
``OUT/CASE/runs/`` are reused; ``--fresh`` re-runs them); prints final accuracy, rounds
to reach 95% of the best final accuracy in the table, and uplink / downlink bytes
(Flower messages on the wire), means over repeats; the table is also written to
``OUT/CASE-table.txt`` and the sweep's own report (Pareto fronts, figures) to
``OUT/CASE/``.

    python benchmarks/strategies.py --case tiny --repeat 2
    python benchmarks/strategies.py --case wordnet --codecs fp32 --strategies exact
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

from convergence import CASES, kebab

from fedslim.experiments.report import load, write
from fedslim.experiments.sweep import plan_recipes, run_sweep
from fedslim.simulations.run import simulate

STRATEGIES = {
    "fedavg": {},
    "ffa": {"strategy": "ffa"},
    "exact": {"strategy": "exact"},
    "hetero-4,8": {"lora-ranks": "4,8"},
    "fedavgm": {"strategy": "fedavgm", "server-momentum": 0.5},
    "fedadam": {"strategy": "fedadam", "server-lr": 0.01},
    "fedyogi": {"strategy": "fedyogi", "server-lr": 0.01},
    "fedprox": {"strategy": "fedprox", "proximal-mu": 0.01},
    "fedmedian": {"strategy": "fedmedian"},
}
CODECS = {"fp32": ("none", "none"), "compressed": ("topk:0.1|q4|zstd:3", "q8|zstd:3")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=sorted(CASES), default="tiny")
    ap.add_argument("--repeat", type=int, default=1, help="seeds 0..N-1 per configuration")
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    ap.add_argument("--codecs", nargs="+", choices=list(CODECS), default=list(CODECS))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/strategies"))
    ap.add_argument("--fresh", action="store_true", help="re-run even stored finished runs")
    args = ap.parse_args()
    make_base, nodes = CASES[args.case]
    base = {**kebab(make_base()), "num-supernodes": nodes}
    recipes = {
        f"{name} {codec}": {
            **STRATEGIES[name],
            "uplink-codec": CODECS[codec][0],
            "downlink-codec": CODECS[codec][1],
        }
        for name in args.strategies
        for codec in args.codecs
    }
    out = args.out / args.case
    planned = plan_recipes(recipes, base, args.repeat, out)
    if args.fresh:
        for p in planned:
            shutil.rmtree(p.out, ignore_errors=True)
    t0 = time.perf_counter()

    def on_run(p, skipped: bool) -> None:
        state = "stored" if skipped else "running"
        print(
            f"[{time.perf_counter() - t0:6.0f}s] {p.label} seed {p.run.seed}: {state}", flush=True
        )

    run_sweep(planned, out, simulate=simulate, on_run=on_run)
    write(out)
    rounds = planned[0].run.rounds.num_server_rounds
    lines = report(load(out), args.case, args.repeat, rounds)
    print("\n" + "\n".join(lines))
    (args.out / f"{args.case}-table.txt").write_text("\n".join(lines) + "\n")


def report(runs, case: str, repeats: int, rounds: int) -> list[str]:
    table: dict[str, list] = {}
    for run in runs:
        table.setdefault(run.label, []).append(run.rounds)
    best = max(statistics.mean(r[-1].accuracy for r in rs) for rs in table.values())
    lines = [
        f"{case}: {repeats} seeds, {rounds} rounds; 95% of best = {0.95 * best:.3f}",
        "| strategy | codec | final acc | rounds to 95% best | uplink | downlink |",
        "|---|---|---|---|---|---|",
    ]
    for label, runs_ in table.items():
        name, codec = label.rsplit(" ", 1)
        reach = [
            next((r.round for r in rows if r.round > 0 and r.accuracy >= 0.95 * best), None)
            for rows in runs_
        ]
        shown = (
            f"{statistics.mean(reach):.1f}"
            if all(x is not None for x in reach)
            else f"{sum(x is not None for x in reach)}/{len(runs_)} reach"
        )
        acc = statistics.mean(r[-1].accuracy for r in runs_)
        up = statistics.mean(sum(r.uplink_bytes for r in rows) for rows in runs_)
        down = statistics.mean(sum(r.downlink_bytes for r in rows) for rows in runs_)
        lines.append(
            f"| {name} | {codec} | {acc:.3f} | {shown} | {up / 1e3:,.1f} KB | "
            f"{down / 1e3:,.1f} KB |"
        )
    return lines


if __name__ == "__main__":
    main()
