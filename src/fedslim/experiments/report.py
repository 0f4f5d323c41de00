"""A sweep's report: a table per configuration (mean and spread over repeats), the Pareto
fronts of accuracy against bytes, time, energy and money, and figures.

    table.csv, table.md   one row per configuration
    pareto.csv            the non-dominated configurations, per cost axis
    curves.png            accuracy against round, cumulative uplink bytes, simulated time
                          and energy (one line per configuration, the mean of its repeats)
    pareto.png            accuracy against each cost, the front drawn through
    paired.md             time to target over the fastest configuration's (or a named
                          baseline's), seed by seed, with a 95% interval (2 or more seeds);
                          then the same at the interpolated crossing of the target
    privacy.png           accuracy against epsilon (runs with dp = central), a line per
                          configuration of the other keys
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from ..ledger import RoundRow, read_clients, read_rounds, totals
from . import paired
from .sweep import INDEX

COSTS = {  # pareto axis -> (table column, label)
    "uplink": ("uplink_bytes", "uplink bytes"),
    "time": ("sim_s", "simulated seconds"),
    "energy": ("energy_j", "energy (J)"),
    "money": ("cost_usd", "cost (USD)"),
}
TOTALS = ("uplink_bytes", "total_bytes", "sim_s", "energy_j", "cost_usd")


@dataclass
class Run:
    label: str
    rounds: list[RoundRow]
    summary: dict
    peak_mem_mb: float
    repeat: int = 0  # the repeat's index (paired.py pairs by the seed in its config)


def load(out: Path) -> list[Run]:
    index = json.loads((out / INDEX).read_text(encoding="utf-8"))
    runs = []
    for item in index:
        directory = out / item["dir"]
        if not (directory / "summary.json").exists():
            continue  # not run yet (an interrupted sweep): reported once it is
        summary = json.loads((directory / "summary.json").read_text(encoding="utf-8"))
        peak = max((c.peak_mem_mb for c in read_clients(directory)), default=0.0)
        runs.append(Run(item["label"], read_rounds(directory), summary, peak, item["repeat"]))
    return runs


def _totals(run: Run) -> dict[str, float]:
    sums = totals(run.rounds, "uplink_bytes", "downlink_bytes", "energy_j", "cost_usd")
    return {
        "uplink_bytes": sums["uplink_bytes"],
        "total_bytes": sums["uplink_bytes"] + sums["downlink_bytes"],
        "sim_s": run.rounds[-1].sim_elapsed_s,
        "energy_j": sums["energy_j"],
        "cost_usd": sums["cost_usd"],
    }


def table(runs: list[Run]) -> list[dict]:
    """Per configuration: mean (and standard deviation) over its repeats."""
    rows = []
    for label in dict.fromkeys(r.label for r in runs):
        mine = [r for r in runs if r.label == label]
        row = {"configuration": label, "repeats": len(mine)}
        row |= _stat("final_accuracy", [r.rounds[-1].accuracy for r in mine])
        totals = [_totals(r) for r in mine]
        for key in TOTALS:
            row |= _stat(key, [t[key] for t in totals])
        reached = [r.summary["to_target"] for r in mine if r.summary.get("to_target")]
        row["reached_target"] = f"{len(reached)}/{len(mine)}"
        for key in ("round", "sim_s", "energy_j", "cost_usd", "uplink_bytes"):
            values = [t[key] for t in reached]
            row[f"to_target_{key}"] = statistics.mean(values) if len(reached) == len(mine) else ""
        row["peak_mem_mb"] = max(r.peak_mem_mb for r in mine)
        row["epsilon"] = max(r.rounds[-1].epsilon for r in mine)  # inf: no DP; the worst seed
        rows.append(row)
    return rows


def _stat(key: str, values: list[float]) -> dict:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return {key: statistics.mean(values), f"{key}_std": spread}


def pareto(rows: list[dict]) -> list[dict]:
    """For each cost axis, the configurations no other beats on both accuracy and cost."""
    out = []
    for axis, (column, _) in COSTS.items():
        for row in rows:
            acc, spent = row["final_accuracy"], row[column]
            beaten = any(
                o["final_accuracy"] >= acc and o[column] <= spent
                and (o["final_accuracy"] > acc or o[column] < spent)
                for o in rows
            )  # fmt: skip
            if not beaten:
                out.append({"axis": axis, "configuration": row["configuration"],
                            "final_accuracy": acc, column: spent})  # fmt: skip
    return out


def write(out: Path, baseline: str | None = None) -> list[Path]:
    """table.csv, table.md, pareto.csv, curves.png, pareto.png and paired.md from the runs in
    ``out``; paired.md against ``baseline`` (a configuration's label; default: the fastest)."""
    runs = load(out)
    if not runs:
        raise FileNotFoundError(f"{out}: no finished run to report")
    pairs = paired.pairings(runs, baseline)  # a bad baseline fails before a file is written
    crossed = paired.pairings(runs, pairs[0].baseline, interpolate=True) if pairs else []
    rows = table(runs)
    _csv(out / "table.csv", rows)
    (out / "table.md").write_text(_markdown(rows), encoding="utf-8")
    front = pareto(rows)
    _csv(out / "pareto.csv", front)
    from .figures import curves, fronts, privacy

    written = [
        out / "table.csv",
        out / "table.md",
        out / "pareto.csv",
        curves(runs, out / "curves.png"),
        fronts(rows, front, COSTS, out / "pareto.png"),
    ]
    if any(math.isfinite(r["epsilon"]) for r in rows):
        written.append(privacy(rows, out / "privacy.png"))
    if max(r["repeats"] for r in rows) > 1 and pairs:
        text = paired.markdown(pairs) + "\n" + paired.markdown(crossed, interpolated=True)
        (out / "paired.md").write_text(text, encoding="utf-8")
        written.append(out / "paired.md")
    else:
        (out / "paired.md").unlink(missing_ok=True)  # a stale one from an earlier sweep
    return written


def run_and_write(planned: list, out: Path, *, simulate, report_only: bool = False) -> None:
    """A benchmark's sweep: run what is not finished (``report_only``: nothing), printing
    each run as reused or running, then write and print the report."""
    from .sweep import finished, run_sweep

    if report_only:
        planned = [p for p in planned if finished(p)]

    def on_run(p, skipped: bool) -> None:
        print(f"{p.label} #{p.repeat}: {'reused' if skipped else 'running'}", flush=True)

    run_sweep(planned, out, simulate=simulate, on_run=on_run)
    for path in write(out):
        print("wrote", path)
    print(tables(out))


def tables(out: Path) -> str:
    """What a reader sees of a written report: table.md, then paired.md when there is one."""
    names = [n for n in ("table.md", "paired.md") if (out / n).exists()]
    return "\n".join((out / n).read_text(encoding="utf-8") for n in names)


def _csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _markdown(rows: list[dict]) -> str:
    head = ["configuration", "final acc", "to target (round, sim s, J)", "uplink", "sim s",
            "energy", "USD", "peak MB", "epsilon"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        target = (
            f"{r['to_target_round']:.1f}, {r['to_target_sim_s']:.0f}, {r['to_target_energy_j']:.0f}"
            if r["to_target_round"] != ""
            else f"{r['reached_target']} reach"
        )
        acc = f"{r['final_accuracy']:.3f} ± {r['final_accuracy_std']:.3f}"
        name = r["configuration"].replace("|", "\\|")
        lines.append(
            f"| {name} | {acc} | {target} | {r['uplink_bytes'] / 1e3:,.1f} KB | "
            f"{r['sim_s']:.1f} | {r['energy_j']:.0f} J | {r['cost_usd']:.4f} | "
            f"{r['peak_mem_mb']:.0f} | {r['epsilon']:.3g} |"
        )
    return "\n".join(lines) + "\n"
