"""Paired ratios over two draws a seed: each run key beside its twin with other batches and
dropout (``train-seed``; the key with the ``--draw`` suffix), the geometric mean of a
seed's two times against the baseline's. The two draws share the seed's data, population
and start, so they are one sample, not two: the interval keeps a degree of freedom a seed,
and a seed's spread between its draws is printed apart (the noise a single draw carries).

    python benchmarks/pool_draws.py --baseline sign_zstd_3__5_steps__lr_0.0025 \\
        --only auto__5_steps__lr_0.0025 --draw __other_batches [--interpolate]
"""

import argparse
import math

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
    both = sorted(set(first) & set(second))
    if not both:
        ap.error(f"{key!r} needs runs of both draws on a seed ({len(first)}, {len(second)})")
    pooled[key] = {
        s: (math.sqrt(first[s][0] * second[s][0]), first[s][1] or second[s][1]) for s in both
    }
    between = ", ".join(f"{second[s][0] / first[s][0]:.2f}x" for s in both)
    print(f"{key}: second draw over first, seeds {both[0]}-{both[-1]}: {between}")
rows = [paired.pair(key, args.baseline, pooled) for key in keys[1:]]
print()
print(paired.markdown(rows, args.interpolate))
