"""Per-seed accuracy against simulated time for the bench-wordnet runs of one population
(``python benchmarks/plot_seeds.py --population compute-bound|link-bound``; reads each
run's rounds.csv under ``runs/bench-wordnet[-link-bound]/runs``)."""

import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

POPULATIONS = {
    "compute-bound": (
        "runs/bench-wordnet/runs",
        [("fedavg_fp32", "fedavg fp32"), ("auto", "auto"),
         ("sign_zstd_3", "sign|zstd:3"), ("vera__q4_zstd_3", "VeRA, q4|zstd:3"),
         ("fedavgm_fp32", "fedavgm fp32"),
         ("fedavgm__sign_1024_zstd_3", "fedavgm, sign:1024|zstd:3"),
         ("fedavgm__vera__sign_zstd_3", "fedavgm, VeRA, sign|zstd:3"),
         ("fedavgm__vera__sign_zstd_3_q2_down", "fedavgm, VeRA, sign|zstd:3 / q2 down"),
         ("usign_zstd_3", "usign|zstd:3"),
         ("randk_0.9_usign_4096_zstd_3", "randk:0.9|usign:4096|zstd:3"),
         ("usign_zstd_3__top_3_blocks", "usign|zstd:3, top 3 blocks"),
         ("fp32__top_3_blocks", "fp32, top 3 blocks")],
        "compute-bound population: 5 phones on LTE/3G, 3 laptops on WiFi, LoRA r=8 "
        "(8 rounds)",
        "benchmarks/results/bench-wordnet/seeds.png",
    ),
    "link-bound": (
        "runs/bench-wordnet-link-bound/runs",
        [("fedavg_fp32", "fedavg fp32"), ("auto", "auto"), ("sign_zstd_3", "sign|zstd:3"),
         ("q8_zstd_3", "q8|zstd:3"), ("vera__auto", "VeRA, auto"),
         ("fedavgm__sign_zstd_3", "fedavgm, sign|zstd:3"),
         ("sign_zstd_3__5_steps", "sign|zstd:3, 5 steps"),
         ("fedavg_fp32__5_steps", "fedavg fp32, 5 steps"),
         ("auto__5_steps", "auto, 5 steps"),
         ("auto__5_steps__matched_gains", "auto, 5 steps, matched gains"),
         ("usign_zstd_3__5_steps", "usign|zstd:3, 5 steps"),
         ("by-link_3g=usign__5_steps", "usign on the phones, fp32 laptops, 5 steps"),
         ("fedavg_fp32__server_lr_0.7__5_steps", "fedavg fp32, server lr 0.7, 5 steps"),
         ("usign_zstd_3__server_lr_0.7__5_steps", "usign|zstd:3, server lr 0.7, 5 steps"),
         ("auto__server_lr_0.7__5_steps", "auto, server lr 0.7, 5 steps"),
         ("sign_zstd_3__server_lr_0.7__5_steps", "sign|zstd:3, server lr 0.7, 5 steps"),
         ("sign_zstd_3__5_steps__lr_0.0025", "sign|zstd:3, 5 steps, lr 0.0025"),
         ("auto__5_steps__lr_0.0025", "auto, 5 steps, lr 0.0025"),
         ("fedavg_fp32__5_steps__lr_0.0025", "fedavg fp32, 5 steps, lr 0.0025")],
        "link-bound population: 5 phones on 3G, 3 laptops behind a GEO dish, "
        "LoRA r=16 on every linear layer (stop at 0.80)",
        "benchmarks/results/bench-wordnet-link-bound/seeds.png",
    ),
}  # fmt: skip

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--population", choices=sorted(POPULATIONS), default="link-bound")
ap.add_argument("--runs", default="", help="the runs directory (default: the population's)")
ap.add_argument("--out", default="", help="the figure (default: the population's)")
ap.add_argument("--seeds", type=int, default=3, help="panels: seeds 0..N-1")
ap.add_argument("--only", default="", help="run keys to draw, comma-separated (default: all)")
args = ap.parse_args()
base, recipes, title, out = POPULATIONS[args.population]
base, out = args.runs or base, args.out or out
if args.only:
    recipes = [r for r in recipes if r[0] in args.only.split(",")]
cols = min(args.seeds, 3)  # three panels a row
panel_rows = -(-args.seeds // cols)
fig, axes = plt.subplots(panel_rows, cols, figsize=(4.3 * cols + 0.1, 4 * panel_rows), sharey=True,
                         squeeze=False)  # fmt: skip
for ax in axes.flat[args.seeds :]:
    ax.set_visible(False)
axes = axes.flat[: args.seeds]
for s, ax in enumerate(axes):
    for i, (key, label) in enumerate(recipes):  # one colour per recipe on every seed
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
            ls="--" if "fp32" in key else "-",  # the uncompressed baselines dashed
            color=f"C{i}",
            label=label,
        )
    ax.axhline(0.80, color="grey", lw=0.8, ls="--")
    ax.set_title(f"seed {s}")
    ax.set_xlabel("simulated seconds")
    ax.grid(alpha=0.3)
for ax in axes[::cols]:
    ax.set_ylabel("held-out accuracy")
axes[0].legend(fontsize=8)
fig.suptitle(title)
fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (4 * panel_rows)))  # room for the title
fig.savefig(out, dpi=110)
print("wrote", out)
