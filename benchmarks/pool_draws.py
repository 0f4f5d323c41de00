"""Paired ratios over two draws a seed: each run key beside its twin with other batches and
dropout (``train-seed``, a key ending in ``--draw``), against the baseline and its twin,
pooled into one interval (a seed's second draw is written ``N'``).

    python benchmarks/pool_draws.py --baseline sign_zstd_3__5_steps__lr_0.0025 \\
        --only auto__5_steps__lr_0.0025 --draw __other_batches [--interpolate]
"""

import argparse

from stored_runs import RUNS, load

from fedslim.experiments import paired

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--population", choices=sorted(RUNS), default="link-bound")
ap.add_argument("--baseline", required=True, help="the run key the ratios are against")
ap.add_argument("--only", required=True, help="run keys to pair, comma-separated")
ap.add_argument("--draw", required=True, help="the suffix of each key's second draw")
ap.add_argument("--interpolate", action="store_true", help="times at the target's crossing")
args = ap.parse_args()
keys = [args.baseline, *(k for k in args.only.split(",") if k)]
runs = load(RUNS[args.population], [*keys, *(k + args.draw for k in keys)])
per_key = paired.times(runs, args.interpolate)
pooled: paired.Times = {}
for key in keys:
    first, second = per_key.get(key, {}), per_key.get(key + args.draw, {})
    if not first or not second:
        ap.error(f"{key!r} needs runs of both draws (found {len(first)} and {len(second)})")
    pooled[key] = {f"{s:02d}": t for s, t in first.items()}
    pooled[key] |= {f"{s:02d}'": t for s, t in second.items()}
rows = [paired.pair(key, args.baseline, pooled) for key in keys[1:]]
print(paired.markdown(rows, args.interpolate))
