"""One federated round, with an exact ledger of what it sent and received."""

from __future__ import annotations

import time

import numpy as np
from flwr.app import ConfigRecord, Message
from flwr.serverapp import Grid

from ..records import arrays_to_record, record_to_arrays, wire_bytes
from ..strategies.compressed import Compressed


def _payload(msg: Message, key: str) -> int:
    try:
        blob = msg.content["config"][key]
    except (KeyError, ValueError, AttributeError):
        return 0
    return len(blob) if isinstance(blob, bytes) else 0


def _metric(msg: Message, key: str, default):
    try:
        return msg.content["config"][key]
    except (KeyError, ValueError, AttributeError):
        return default


def play_round(
    strategy: Compressed, grid: Grid, rnd: int, arrays: dict[str, np.ndarray], *, timeout: float
) -> tuple[dict[str, np.ndarray] | None, list[dict], float]:
    """Send, receive, aggregate. Returns (new adapter or None, client rows, seconds)."""
    t0 = time.monotonic()
    messages = list(strategy.configure_train(rnd, arrays_to_record(arrays), ConfigRecord(), grid))
    sent = {m.metadata.dst_node_id: (wire_bytes(m), _payload(m, "down")) for m in messages}
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    rows = []
    for reply in replies:  # read before aggregation rewrites the content
        node = reply.metadata.src_node_id
        down_bytes, down_payload = sent.get(node, (0, 0))
        has = reply.has_content()
        rows.append(
            {
                "round": rnd,
                "client": strategy.partitions.get(node, -1),
                "node": node,
                "num_examples": _metric(reply, "num-examples", 0) if has else 0,
                "train_loss": _metric(reply, "train-loss", float("nan")) if has else float("nan"),
                "train_s": _metric(reply, "train-s", 0.0) if has else 0.0,
                "flops": _metric(reply, "flops", 0) if has else 0,
                "uplink_bytes": wire_bytes(reply),
                "uplink_payload_bytes": _payload(reply, "up") if has else 0,
                "downlink_bytes": down_bytes,
                "downlink_payload_bytes": down_payload,
            }
        )
    new, _ = strategy.aggregate_train(rnd, replies)
    answered = {r["node"] for r in rows}
    for node in sent.keys() - answered:
        strategy.dropped.setdefault(node, "no reply before the round timeout")
    for row in rows:
        row["status"] = strategy.dropped.get(row.pop("node"), "ok")
    rows.sort(key=lambda r: r["client"])
    return (None if new is None else record_to_arrays(new)), rows, time.monotonic() - t0


def round_row(rnd: int, metrics: dict, rows: list[dict], seconds: float, dropped: int) -> dict:
    ok = [r for r in rows if r["status"] == "ok"]
    total = {
        k: sum(r[k] for r in rows)
        for k in (
            "uplink_bytes",
            "uplink_payload_bytes",
            "downlink_bytes",
            "downlink_payload_bytes",
        )
    }
    return {
        "round": rnd,
        **metrics,
        **total,
        "clients": len(ok),
        "dropped": dropped,
        "train_s": max((r["train_s"] for r in ok), default=0.0),
        "wall_s": seconds,
    }
