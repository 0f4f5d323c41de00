"""Every private Flower use of fedslim, one entry each: the symbols it imports, the flwr
versions it was tested with, and a probe of the behaviour it relies on.

A use whose check fails is turned off, not fatal where fedslim can do without it: the
fast engine starts without that patch (or, without its executor, falls back to the
supported engine), and message sizes fall back to an estimate. Only a use with no
public substitute (the simulation's run config) raises, naming the moved symbol.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version

from packaging.specifiers import SpecifierSet
from packaging.version import Version

TESTED = ">=1.42.0,<1.43"  # the minor series these were written and tested against
MODULE = "fedslim.flower_internals"
CLIENT_APP_TASK = "flwr-clientapp"  # flwr.supercore.constant.TaskType.CLIENT_APP
STOCK_SLEEPS = (3, 0.5)  # start_client_internal: idle poll, wait for the ClientApp reply
_SCI, _RC = "flwr.supernode.start_client_internal", "flwr.supernode.runtime.run_clientapp"


@dataclass(frozen=True)
class Use:
    name: str
    symbols: tuple[tuple[str, str], ...]  # (module, attribute) imported by the use
    probe: Callable[[], None] | None = None  # raises RuntimeError when the behaviour moved
    versions: str = TESTED


def _probe_executor() -> None:
    from flwr.supercore.constant import TaskType
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supernode.runtime import run_clientapp as rc

    if TaskType.CLIENT_APP.value != CLIENT_APP_TASK:
        raise RuntimeError(f"the ClientApp task type is {TaskType.CLIENT_APP!r}")
    if not callable(getattr(make_simple_http_retry_invoker(), "should_giveup", None)):
        raise RuntimeError("the HTTP retry invoker has no should_giveup")
    if "client.PullMessages(" not in inspect.getsource(rc.pull_task_input):
        raise RuntimeError("pull_task_input no longer calls client.PullMessages")


def _probe_backoff() -> None:
    from flwr.supernode import start_client_internal as sci
    from flwr.supernode.runtime import run_clientapp as rc

    for fn in (rc.pull_and_inflate_object_from_tree, sci.pull_objects):
        fn = getattr(fn, "func", fn)  # already patched in this process
        if not {"initial_backoff", "backoff_cap"} <= set(inspect.signature(fn).parameters):
            raise RuntimeError(f"{fn.__qualname__} has no backoff arguments")


def _probe_sleeps() -> None:
    from flwr.supernode import start_client_internal as sci

    src = inspect.getsource(sci)
    for secs in STOCK_SLEEPS:
        if f"time.sleep({secs})" not in src:
            raise RuntimeError(f"start_client_internal no longer sleeps {secs} s")
    if "import time\n" not in src:
        raise RuntimeError("start_client_internal no longer imports time")


def _probe_claimed() -> None:
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.supernode.nodestate import NodeStateFactory

    state = NodeStateFactory(ObjectStoreFactory()).state()
    used = ("lock_task_store", "task_token_store", "get_tasks", "lock_msg_store", "msg_store",
            "_on_task_tokens_expired", "_lock_object_push_sessions", "_object_push_sessions",
            "_cleanup_push_session")  # fmt: skip
    if not all(hasattr(state, a) for a in used):
        raise RuntimeError("NodeState no longer keeps tasks as expected")
    if "is_retrieved" not in inspect.getsource(type(state)._store_error_replies):
        raise RuntimeError("crash replies no longer depend on is_retrieved")
    if "pending_object_ids" not in inspect.getsource(type(state).store_object):
        raise RuntimeError("push sessions no longer track pending objects")


USES = (
    # 1. the long-running ClientApp executor (without it there is no fast engine)
    Use("executor", (
        (_RC, "pull_task_input"), (_RC, "push_message"), (_RC, "push_task_output"),
        (_RC, "pull_and_inflate_object_from_tree"), ("flwr.supercore.date", "now"),
        ("flwr.supercore.runtime", "RuntimeHttpClient"),
        ("flwr.supercore.runtime.tracing", "RuntimeTracingInterceptor"),
        ("flwr.supercore.interceptors", "RuntimeTokenHttpInterceptor"),
        ("flwr.supercore.interceptors", "RuntimeVersionHttpInterceptor"),
        ("flwr.supercore.retry", "make_simple_http_retry_invoker"),
        ("flwr.supercore.heartbeat", "HeartbeatSender"),
        ("flwr.supercore.heartbeat", "make_task_heartbeat_fn_http"),
        ("flwr.supercore.constant", "TaskType"), ("flwr.proto.runtime_pb2", "AcquireTaskRequest"),
        ("flwr.cli.install", "install_from_fab"),
        ("flwr.clientapp.utils", "get_load_client_app_fn"),
        ("flwr.common.constant", "SubStatus"), ("flwr.common.constant", "ErrorCode"),
        (_SCI, "start_client_internal"),
        ("flwr.supernode.cli.flower_supernode", "flower_supernode"),
    ), _probe_executor),
    # 2. object-pull backoff
    Use("pull-backoff", ((_RC, "pull_and_inflate_object_from_tree"), (_SCI, "pull_objects")),
        _probe_backoff),
    # 3. the SuperNode's fixed sleeps
    Use("supernode-sleeps", ((_SCI, "start_client_internal"),), _probe_sleeps),
    # 4. a task orphaned by a run that stopped mid-pull
    Use("stopped-pulls", ((_SCI, "_pull_and_store_message"), (_SCI, "pull_objects"),
                          ("flwr.supercore.run", "RunNotRunningException"))),
    # 5. a dead executor's tasks expired at once
    Use("claimed-tasks", (("flwr.supernode.cli.flower_supernode", "NodeStateFactory"),
                          ("flwr.supernode.nodestate.in_memory_nodestate", "InMemoryNodeState")),
        _probe_claimed),
    # simulations/run.py: the apps get the run config, as `flwr run` gives it
    Use("simulation-run-config", (
        ("flwr.simulation.run_simulation", "_run_simulation"), ("flwr.supercore.run", "Run"),
        ("flwr.supercore.task_identity", "TaskIdentity"),
        ("flwr.common.constant", "SUPERLINK_NODE_ID"),
        ("flwr.supercore.constant", "NOOP_FEDERATION_ID"),
        ("flwr.supercore.telemetry", "EventType"),
    )),
    # messages.py: a message's exact size as the transport ships it
    Use("message-size", (("flwr.supercore.inflatable.inflatable_object",
                          "get_all_nested_objects"),)),
)  # fmt: skip
PATCHES = ("pull-backoff", "supernode-sleeps", "stopped-pulls", "claimed-tasks")
PRIVATE = tuple(sorted({s for use in USES for s in use.symbols}))


def flwr_version() -> str:
    return version("flwr")


def failure(name: str) -> str | None:
    """Why the use ``name`` is off under the installed Flower (None: it checks out)."""
    use = next(u for u in USES if u.name == name)
    found = flwr_version()
    if Version(found) not in SpecifierSet(use.versions):
        return f"{name}: tested with flwr{use.versions}, found {found}"
    for module, attr in use.symbols:
        try:
            getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            return f"{name}: flwr {found} has no {module}.{attr} ({err})"
    try:
        if use.probe:
            use.probe()
    except RuntimeError as err:
        return f"{name}: flwr {found}: {err}"
    return None


def working(names: tuple[str, ...] = PATCHES) -> tuple[str, ...]:
    return tuple(n for n in names if failure(n) is None)


def check_flower() -> None:
    """Raise RuntimeError naming the first use that is off (the test of this Flower)."""
    for use in USES:
        reason = failure(use.name)
        if reason:
            raise RuntimeError(reason)


def require(name: str) -> None:
    """Raise RuntimeError when ``name`` is off (for the uses nothing can stand in for)."""
    reason = failure(name)
    if reason:
        raise RuntimeError(f"{reason}; fedslim needs it (re-check {MODULE}/check.py)")
