"""Everything fedslim takes from Flower's private internals, in one place, each use
checked on its own (``check.py``): the fast deployment engine's executor and patches, the
simulation's run config (``simulation.py``) and messages' wire size (``messages.py``).

Why the deployment patches: on a Deployment Engine federation a round of the tiny model
costs 35-45 s for <1 s of training. Flower 1.42 has no supported way to avoid the costs
removed here:

1. Per-message process. The SuperNode's executor (``flower-superexec``) starts a fresh
   ``flwr-clientapp`` per message (``supernode/runtime/run_clientapp.py``): it re-imports
   torch and rebuilds the model, ~4 s each. ``run_executor`` is one long-running process
   that acquires ClientApp tasks from the SuperNode's Runtime API exactly as
   ``flower-superexec`` + ``flwr-clientapp`` do (AcquireTask, then the task's token for
   PullTaskInput / PullMessages / PushMessages / PushTaskOutput) but runs each task in
   process, so imports, the loaded ClientApp and its ``lru_cache``'d model survive.
   It plugs in through the supported ``flower-supernode --isolation process`` (the
   SuperNode then starts no executor and waits for an external one). Where Flower ends
   a task by ending its process (SIGINT on a refused token or heartbeat), the executor
   ends the task and goes on.
2. Object-pull backoff. The SuperNode creates the task before it has pulled the
   message's objects from the SuperLink, so a warm executor asks for them too early and
   Flower's pull retries back off 1 s, 2 s, ... (``PULL_INITIAL_BACKOFF``). A fresh
   process never noticed. ``shorten_pull_backoff`` rebinds the pull helper that
   ``run_clientapp`` and ``start_client_internal`` call to one starting at 20 ms.
3. Fixed SuperNode sleeps. ``start_client_internal`` sleeps 3 s when the SuperLink has
   no message and polls its own state every 0.5 s for the ClientApp's reply; there is no
   flag. ``patch_supernode_sleeps`` swaps that module's ``time`` for a shim whose
   ``sleep`` shortens exactly those two waits, in the SuperNode process only.

4. A task orphaned by a stopped run. When a run stops while the SuperNode pulls a
   message's objects (its SuperLink restarted, say), Flower raises
   ``RunNotRunningException``, a ``BaseException``, past the ``except Exception`` in
   ``_pull_and_store_message`` that would delete the half-received message and fail its
   task. The task stays; the executor that takes it waits for objects that never come
   (~4 min with the short backoff), and one long-running executor blocks every message
   behind it: after a SuperLink restart no node answered the resumed job.
   ``fail_stopped_pulls`` makes the SuperNode's pull helper raise an ordinary error
   instead, so Flower's own cleanup runs.

5. A dead executor's tasks. The SuperNode waits for a message's reply before it pulls
   the next; when the executor dies mid-task (the OOM killer) Flower fails the task only
   after two missed 30 s heartbeats, and in one measured case not within 3 minutes.
   The SuperNode's supervisor restarts the executor and ``expire_claimed_tasks`` expires
   its tasks at once, so Flower's own crash reply goes out within a second. An executor
   that dies while it uploads its reply leaves a half reply the SuperNode would forward
   and then wait on forever: a reply goes on only once its upload is complete, and the
   expiry deletes half ones with their push sessions, so the crash reply goes instead.

``python -m fedslim.flower_internals supernode [--idle-poll S] <flower-supernode
args>`` does all five: patches, starts the executor as its child and runs the SuperNode
with ``--isolation process``. Without this entry point Flower behaves as stock. A patch
whose check fails under the installed Flower is left off (the node says which); without
the executor there is no fast engine and ``fedslim deploy`` starts the supported one.

Layout: ``check.py`` (each use's symbols, versions and probe), ``patches.py`` (items
2-5), ``executor.py`` (item 1), ``__main__.py`` (entry points and the executor's
supervisor), ``simulation.py``, ``messages.py``.
"""

from .check import MODULE, PATCHES, PRIVATE, TESTED, USES, check_flower, failure, working
from .executor import TaskStopped, run_executor
from .patches import (
    RunStoppedDuringPull,
    fail_stopped_pulls,
    patch_supernode_sleeps,
    shorten_pull_backoff,
)

__all__ = [
    "MODULE",
    "PATCHES",
    "PRIVATE",
    "TESTED",
    "USES",
    "RunStoppedDuringPull",
    "TaskStopped",
    "check_flower",
    "failure",
    "fail_stopped_pulls",
    "patch_supernode_sleeps",
    "run_executor",
    "shorten_pull_backoff",
    "working",
]
