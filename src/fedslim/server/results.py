"""Results files of a run: rounds.csv, clients.csv (the ledger) and summary.json."""

from __future__ import annotations

import json
from pathlib import Path

from ..ledger import ClientRow, RoundRow, write_csv


def write_tables(out: Path, rounds: list[RoundRow], clients: list[ClientRow]) -> None:
    """Rewrite both CSVs from the full history (small files; always consistent on disk)."""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "rounds.csv", rounds, RoundRow)
    write_csv(out / "clients.csv", clients, ClientRow)


def write_summary(out: Path, rounds: list[RoundRow], config: dict, extra: dict) -> dict:
    """``config`` is what defines the experiment (``RunConfig.record``), with ``out``
    relative to the results directory so the file reads the same on any machine."""
    summary = {
        "final_accuracy": rounds[-1].accuracy if rounds else None,
        "final_loss": rounds[-1].loss if rounds else None,
        "initial_accuracy": rounds[0].accuracy if rounds else None,
        "rounds": rounds[-1].round if rounds else 0,
        "total_uplink_bytes": sum(r.uplink_bytes for r in rounds),
        "total_downlink_bytes": sum(r.downlink_bytes for r in rounds),
        "total_uplink_payload_bytes": sum(r.uplink_payload_bytes for r in rounds),
        "total_downlink_payload_bytes": sum(r.downlink_payload_bytes for r in rounds),
        **extra,
        "config": {**config, "out": "."},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
