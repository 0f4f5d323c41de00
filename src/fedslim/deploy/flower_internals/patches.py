"""Patches to Flower's SuperNode modules (items 2-4 of the package's list), each applied
in the process that needs it and idempotent."""

from __future__ import annotations

import time

from .check import STOCK_SLEEPS


# ---- 3. the SuperNode's fixed sleeps ------------------------------------------------
class _ShortSleeps:
    """Stands in for the ``time`` module inside ``start_client_internal`` only."""

    def __init__(self, idle: float, reply: float) -> None:
        self._map = {STOCK_SLEEPS[0]: idle, STOCK_SLEEPS[1]: reply}

    def sleep(self, seconds: float) -> None:
        time.sleep(self._map.get(seconds, seconds))

    def __getattr__(self, name: str):
        return getattr(time, name)


def patch_supernode_sleeps(idle: float = 0.1, reply: float = 0.02) -> None:
    """Shorten the SuperNode's idle poll of the SuperLink (3 s) and its poll for the
    ClientApp's reply (0.5 s). Call in the SuperNode process before it starts."""
    from flwr.supernode import start_client_internal as sci

    sci.time = _ShortSleeps(idle, reply)


# ---- 2. object-pull backoff ---------------------------------------------------------
def shorten_pull_backoff(initial: float = 0.02, cap: float = 0.5) -> None:
    """Retry unavailable objects after ``initial`` s (doubling up to ``cap``), not 1 s."""
    from functools import partial

    from flwr.supernode import start_client_internal as sci
    from flwr.supernode.runtime import run_clientapp as rc

    for module, name in ((rc, "pull_and_inflate_object_from_tree"), (sci, "pull_objects")):
        fn = getattr(module, name)
        fn = getattr(fn, "func", fn)  # idempotent
        setattr(module, name, partial(fn, initial_backoff=initial, backoff_cap=cap))


# ---- 4. a task orphaned by a run that stopped mid-pull -------------------------------
class RunStoppedDuringPull(RuntimeError):
    """An ``Exception``: ``_pull_and_store_message`` deletes the message and fails the task."""


def fail_stopped_pulls() -> None:
    """Make the SuperNode's object pull raise ``RunStoppedDuringPull`` where Flower raises
    ``RunNotRunningException`` (a BaseException its cleanup does not catch)."""
    from functools import wraps

    from flwr.supercore.run import RunNotRunningException
    from flwr.supernode import start_client_internal as sci

    pull = sci.pull_objects
    if getattr(pull, "fails_stopped_runs", False):  # idempotent
        return

    @wraps(pull)
    def pull_objects(*args, **kwargs):
        try:
            return pull(*args, **kwargs)
        except RunNotRunningException as exc:
            raise RunStoppedDuringPull("the run stopped while its message was pulled") from exc

    pull_objects.fails_stopped_runs = True
    sci.pull_objects = pull_objects
