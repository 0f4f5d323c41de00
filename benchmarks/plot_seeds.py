"""Per-seed accuracy against simulated time for the link-bound bench-wordnet runs
(``python benchmarks/plot_seeds.py [RUNS_DIR]``; reads each run's rounds.csv)."""

import csv

import matplotlib

matplotlib.use("Agg")
import sys

import matplotlib.pyplot as plt

base = sys.argv[1] if len(sys.argv) > 1 else "runs/bench-wordnet-link-bound/runs"
recipes = [
    ("fedavg_fp32", "fedavg fp32"),
    ("auto", "auto"),
    ("sign_zstd_3", "sign|zstd:3"),
    ("vera__auto", "VeRA, auto"),
]
fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
for s, ax in enumerate(axes):
    for key, label in recipes:
        try:
            with open(f"{base}/{key}-s{s}/rounds.csv") as fh:
                rows = list(csv.DictReader(fh))
        except FileNotFoundError:
            continue
        ax.plot(
            [float(r["sim_elapsed_s"]) for r in rows],
            [float(r["accuracy"]) for r in rows],
            marker="o",
            ms=3,
            label=label,
        )
    ax.axhline(0.80, color="grey", lw=0.8, ls="--")
    ax.set_title(f"seed {s}")
    ax.set_xlabel("simulated seconds")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("held-out accuracy")
axes[0].legend(fontsize=8)
fig.suptitle(
    "link-bound population: 5 phones on 3G, 3 laptops behind a GEO dish, "
    "LoRA r=16 on every linear layer (8 rounds, stop at 0.80)"
)
fig.tight_layout()
fig.savefig("benchmarks/results/bench-wordnet-link-bound/seeds.png", dpi=110)
