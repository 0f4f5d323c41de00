"""Results files of a run: rounds.csv, clients.csv and summary.json."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

ROUND_FIELDS = (
    "round",
    "accuracy",
    "loss",
    "uplink_bytes",
    "downlink_bytes",
    "uplink_payload_bytes",
    "downlink_payload_bytes",
    "clients",
    "dropped",
    "train_s",
    "wall_s",
)
CLIENT_FIELDS = (
    "round",
    "client",
    "status",
    "num_examples",
    "train_loss",
    "train_s",
    "flops",
    "uplink_bytes",
    "downlink_bytes",
    "uplink_payload_bytes",
    "downlink_payload_bytes",
)


def _write_csv(path: Path, fields: tuple[str, ...], rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def write_tables(out: Path, history: dict) -> None:
    """Rewrite both CSVs from the full history (small files; always consistent on disk)."""
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "rounds.csv", ROUND_FIELDS, history["rounds"])
    _write_csv(out / "clients.csv", CLIENT_FIELDS, history["clients"])


def write_summary(out: Path, history: dict, config: dict, extra: dict) -> dict:
    rounds = history["rounds"]
    summary = {
        "final_accuracy": rounds[-1]["accuracy"] if rounds else None,
        "final_loss": rounds[-1]["loss"] if rounds else None,
        "initial_accuracy": rounds[0]["accuracy"] if rounds else None,
        "rounds": rounds[-1]["round"] if rounds else 0,
        "total_uplink_bytes": sum(r["uplink_bytes"] for r in rounds),
        "total_downlink_bytes": sum(r["downlink_bytes"] for r in rounds),
        "total_uplink_payload_bytes": sum(r.get("uplink_payload_bytes", 0) for r in rounds),
        "total_downlink_payload_bytes": sum(r.get("downlink_payload_bytes", 0) for r in rounds),
        **extra,
        "config": config,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
