"""Time to target seed by seed, and each recipe's ratio to a baseline with its 95% interval
(``python benchmarks/plot_paired.py --population link-bound --baseline sign_zstd_3__5_steps
--only KEY,KEY,... [--interpolate]``; reads each run's rounds.csv and summary.json under
``runs/bench-wordnet[-link-bound]/runs``; run keys are directory names without ``-sN``)."""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
from stored_runs import RUNS, load  # noqa: E402

from fedslim.experiments import paired  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--population", choices=sorted(RUNS), default="link-bound")
ap.add_argument("--runs", default="", help="the runs directory (default: the population's)")
ap.add_argument("--baseline", required=True, help="the run key the ratios are against")
ap.add_argument("--only", default="", help="run keys to draw, comma-separated (default: all)")
ap.add_argument("--out", required=True, help="the figure (a .png); its table beside, as .md")
ap.add_argument("--interpolate", action="store_true", help="times at the target's crossing")
args = ap.parse_args()
keys = [k for k in args.only.split(",") if k]
runs = load(args.runs or RUNS[args.population], [*keys, args.baseline] if keys else ())
pairs = paired.pairings(runs, args.baseline, args.interpolate)
per_config = paired.times(runs, args.interpolate)
order = [args.baseline] + [p.configuration for p in pairs]

fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.4), width_ratios=(3, 2))
for i, key in enumerate(order):  # seeds are not ordered: side by side, no lines
    seeds = sorted(per_config[key])
    shift = (i - (len(order) - 1) / 2) * 0.8 / len(order)
    hollow = ["none" if per_config[key][s][1] else f"C{i}" for s in seeds]  # never reached
    left.scatter([s + shift for s in seeds], [per_config[key][s][0] for s in seeds],
                 marker="o" if i else "s", color=hollow, edgecolors=f"C{i}", label=key)  # fmt: skip
left.set_xlabel("seed")
rule = "crossing of the target" if args.interpolate else "to target"
left.set_ylabel(f"simulated s, {rule}")
left.set_title("hollow: never reached (its whole time)", fontsize=9)
left.set_xticks(sorted({s for k in order for s in per_config[k]}))
left.grid(alpha=0.3)
left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
for i, p in enumerate(pairs, start=1):
    faces = ["none" if c else f"C{i}" for c in p.censored]  # hollow: a floor
    right.scatter(p.ratios, [i] * len(p.ratios), color=faces, edgecolors=f"C{i}", alpha=0.6, s=18)
    if p.geomean:
        right.errorbar(p.geomean, i, xerr=[[p.geomean - p.low], [p.high - p.geomean]],
                       fmt="D", color=f"C{i}", capsize=4)  # fmt: skip
right.axvline(1.0, color="grey", lw=0.8)
right.axvspan(1 / (1 + paired.MARGIN), 1 + paired.MARGIN, color="grey", alpha=0.15,
              label=f"within {paired.MARGIN:.0%}")  # fmt: skip
right.set_yticks(range(1, len(pairs) + 1), [p.configuration for p in pairs], fontsize=7)
right.set_xscale("log")
lo, hi = right.get_xlim()  # a log axis this narrow gets one or two labels of its own
nice = (0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.1, 1.2, 1.3, 1.5, 2, 3, 4, 5)
if hi / lo > 3:  # a wide axis: fewer, so that the labels near 1 do not overlap
    nice = (0.5, 0.7, 0.8, 1, 1.2, 1.5, 2, 3, 4, 5)
right.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([v for v in nice if lo <= v <= hi]))
right.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
right.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
right.set_xlabel("ratio to the baseline's time (dots: seeds; diamond: 95% CI)")
right.set_title(f"baseline: {args.baseline}", fontsize=9)
right.legend(fontsize=7)
fig.tight_layout()
fig.savefig(args.out, dpi=110)
text = paired.markdown(pairs, args.interpolate)
Path(args.out).with_suffix(".md").write_text(text)
print(text)
print("wrote", args.out)
