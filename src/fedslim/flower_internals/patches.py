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


# ---- 5. a dead executor's tasks -------------------------------------------------------
_FACTORY: list = []  # the SuperNode's NodeStateFactory, once it makes one


def record_node_state() -> None:
    """Keep the SuperNode's NodeStateFactory where ``expire_claimed_tasks`` finds it."""
    import importlib

    from flwr.supernode.nodestate import NodeStateFactory

    # the module, not the function of the same name that its package exports
    fs = importlib.import_module("flwr.supernode.cli.flower_supernode")

    if getattr(fs.NodeStateFactory, "recorded", False):  # idempotent
        return

    class Recorded(NodeStateFactory):
        recorded = True

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            _FACTORY.append(self)

        def state(self):  # as Flower's, with the state below
            with self.lock:
                if self.state_instance is None:
                    store = self.objectstore_factory.store()
                    self.state_instance = _answering_state_class()(store)
                return self.state_instance

    fs.NodeStateFactory = Recorded


def _answering_state_class():
    """Flower's in-memory NodeState, except that an expired running task's message gets
    Flower's crash reply even if it was never read (the executor died or gave up between
    PullTaskInput and PullMessages), or if the executor died while it uploaded its reply.
    Flower answers only read messages without a reply, and a half-uploaded reply counts
    as one, though it will never be complete; the SuperNode, handling one message at a
    time, would wait for either forever."""
    from flwr.supercore.constant import TaskType
    from flwr.supernode.nodestate.in_memory_nodestate import InMemoryNodeState

    class Answering(InMemoryNodeState):
        def get_messages_legacy(self, *, run_ids=None, is_reply=None, limit=None):
            """As Flower's, except that a reply still uploading is held back (marked
            unread again) until its last object arrives: the SuperNode would forward it
            at once and then wait on its objects, forever if its executor died."""
            got = super().get_messages_legacy(run_ids=run_ids, is_reply=is_reply, limit=limit)
            if not is_reply or not got:
                return got
            uploading = _uploading(self)
            with self.lock_msg_store:
                # held back: still uploading (marked unread again), or gone (an expiry
                # below deleted it since Flower's pass picked it)
                ids = {m.metadata.message_id for m in got}
                held = {i for i in ids if i in uploading or i not in self.msg_store}
                for message_id in held & self.msg_store.keys():
                    self.msg_store[message_id].is_retrieved = False
            return [m for m in got if m.metadata.message_id not in held]

        def _on_task_tokens_expired(self, tasks) -> None:
            runs = {t.run_id for t in tasks if t.type == TaskType.CLIENT_APP}
            _end_open_uploads(self, runs)
            with self.lock_msg_store:
                for entry in self.msg_store.values():
                    meta = entry.message.metadata
                    request = meta.run_id in runs and not meta.reply_to_message_id
                    if request and not entry.is_retrieved:  # as if read now, booked as Flower does
                        entry.is_retrieved = True
                        self.record_message_processing_start(meta.message_id)
            super()._on_task_tokens_expired(tasks)

    return Answering


def _uploading(state, runs: set[int] | None = None) -> dict[str, str]:
    """Messages whose push session still waits for objects: message id -> session id."""
    with state._lock_object_push_sessions:
        return {
            root: sid
            for sid, session in state._object_push_sessions.items()
            if session.pending_object_ids and (runs is None or session.run_id in runs)
            for root in session.root_object_ids
        }


def _end_open_uploads(state, runs: set[int]) -> None:
    """Delete these runs' replies still waiting for objects, with their push sessions:
    nobody is left to finish them."""
    uploading = _uploading(state, runs)
    with state.lock_msg_store:
        replies = {
            sid
            for mid, sid in uploading.items()
            if mid in state.msg_store and state.msg_store[mid].message.metadata.reply_to_message_id
        }
    for sid in replies:
        state._cleanup_push_session(sid, cleanup_messages=True)


def expire_claimed_tasks() -> int:
    """The executor died: expire every task it had claimed now, as Flower does after two
    missed heartbeats (60 s). A running task fails and its message gets Flower's
    CLIENT_APP_CRASHED reply, so the SuperNode, which waits for a reply before it pulls
    the next message, goes on; a starting one goes back to pending."""
    from datetime import timedelta

    from flwr.supercore.date import now

    state = _FACTORY[-1].state_instance if _FACTORY else None
    if state is None:
        return 0
    with state.lock_task_store:
        records = list(state.task_token_store.values())
        for record in records:
            record.active_until = now() - timedelta(seconds=1)
    state.get_tasks()  # Flower's own expiry runs first in every task query
    return len(records)
