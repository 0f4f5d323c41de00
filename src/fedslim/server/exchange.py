"""Send messages and collect their replies without Flower's fixed wait.

``Grid.send_and_receive`` over the Deployment Engine sleeps 3 s between pulls (flwr 1.42,
``HttpGrid``), which alone adds up to 3 s to every round and to the node query. Pushing
and then pulling with a short interval that grows while nothing arrives uses only the
public ``push_messages`` / ``pull_messages``: replies come back within ~50 ms of arriving
early in a round, and a long round costs at most a pull every ``max_poll_s``.
``FEDSLIM_SERVER_PULL=stock`` restores Flower's call (to measure stock deployments).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid


def exchange(
    grid: Grid,
    messages: Iterable[Message],
    *,
    timeout: float,
    poll_s: float = 0.05,
    max_poll_s: float = 0.5,
) -> list[Message]:
    """Every reply that arrives within ``timeout`` seconds (each message's at most once)."""
    if os.environ.get("FEDSLIM_SERVER_PULL") == "stock":
        return list(grid.send_and_receive(messages, timeout=timeout))
    pending = set(grid.push_messages(messages))
    replies: list[Message] = []
    deadline = time.monotonic() + timeout
    wait = poll_s
    while pending:
        got = list(grid.pull_messages(pending))
        replies.extend(got)
        pending -= {m.metadata.reply_to_message_id for m in got}
        left = deadline - time.monotonic()
        if not pending or left <= 0:
            break
        wait = poll_s if got else min(wait * 1.5, max_poll_s)
        time.sleep(min(wait, left))
    return replies
