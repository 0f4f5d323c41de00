"""Which Flower fedslim's patches were written against, and a check that it is still that."""

from __future__ import annotations

import inspect
from importlib.metadata import version

TESTED_FLWR = ("1.42.0",)
MODULE = "fedslim.deploy.flower_internals"
CLIENT_APP_TASK = "flwr-clientapp"  # flwr.supercore.constant.TaskType.CLIENT_APP
STOCK_SLEEPS = (3, 0.5)  # start_client_internal: idle poll, wait for the ClientApp reply

# (module, name) of every private symbol used below: check_flower() imports each.
PRIVATE = (
    ("flwr.supernode.runtime.run_clientapp", "pull_task_input"),
    ("flwr.supernode.runtime.run_clientapp", "push_message"),
    ("flwr.supernode.runtime.run_clientapp", "push_task_output"),
    ("flwr.supernode.runtime.run_clientapp", "pull_and_inflate_object_from_tree"),
    ("flwr.supernode.start_client_internal", "pull_objects"),
    ("flwr.supernode.start_client_internal", "_pull_and_store_message"),
    ("flwr.supercore.run", "RunNotRunningException"),
    ("flwr.supernode.cli.flower_supernode", "NodeStateFactory"),
    ("flwr.supercore.date", "now"),
    ("flwr.supernode.nodestate.in_memory_nodestate", "InMemoryNodeState"),
    ("flwr.supercore.runtime", "RuntimeHttpClient"),
    ("flwr.supercore.runtime.tracing", "RuntimeTracingInterceptor"),
    ("flwr.supercore.interceptors", "RuntimeTokenHttpInterceptor"),
    ("flwr.supercore.interceptors", "RuntimeVersionHttpInterceptor"),
    ("flwr.supercore.retry", "make_simple_http_retry_invoker"),
    ("flwr.supercore.heartbeat", "HeartbeatSender"),
    ("flwr.supercore.heartbeat", "make_task_heartbeat_fn_http"),
    ("flwr.supercore.constant", "TaskType"),
    ("flwr.proto.runtime_pb2", "AcquireTaskRequest"),
    ("flwr.cli.install", "install_from_fab"),
    ("flwr.clientapp.utils", "get_load_client_app_fn"),
    ("flwr.common.constant", "SubStatus"),
    ("flwr.common.constant", "ErrorCode"),
    ("flwr.supernode.start_client_internal", "start_client_internal"),
    ("flwr.supernode.cli.flower_supernode", "flower_supernode"),
)


def check_flower() -> None:
    """Raise RuntimeError if Flower is not a tested version or the internals drifted."""
    import importlib

    found = version("flwr")
    if found not in TESTED_FLWR:
        raise RuntimeError(
            f"fedslim.deploy.flower_internals is tested with flwr {TESTED_FLWR}, found "
            f"{found}: re-check the private symbols it uses, then extend TESTED_FLWR"
        )
    for module, name in PRIVATE:
        try:
            getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            raise RuntimeError(f"flwr {found}: {module}.{name} is gone ({err})") from err
    from flwr.supercore.constant import TaskType
    from flwr.supernode import start_client_internal as sci

    if TaskType.CLIENT_APP.value != CLIENT_APP_TASK:
        raise RuntimeError(f"flwr {found}: ClientApp task type is {TaskType.CLIENT_APP!r}")
    from flwr.supernode.runtime import run_clientapp as rc

    for fn in (rc.pull_and_inflate_object_from_tree, sci.pull_objects):
        if not {"initial_backoff", "backoff_cap"} <= set(inspect.signature(fn).parameters):
            raise RuntimeError(f"flwr {found}: {fn.__qualname__} has no backoff arguments")
    from flwr.supercore.retry import make_simple_http_retry_invoker

    if not callable(getattr(make_simple_http_retry_invoker(), "should_giveup", None)):
        raise RuntimeError(f"flwr {found}: the HTTP retry invoker has no should_giveup")
    src = inspect.getsource(sci)
    for secs in STOCK_SLEEPS:
        if f"time.sleep({secs})" not in src:
            raise RuntimeError(f"flwr {found}: start_client_internal no longer sleeps {secs} s")
    if "import time\n" not in src:
        raise RuntimeError(f"flwr {found}: start_client_internal no longer imports time")
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.supernode.nodestate import NodeStateFactory

    state = NodeStateFactory(ObjectStoreFactory()).state()  # what patches.py item 5 uses
    used = ("lock_task_store", "task_token_store", "get_tasks", "lock_msg_store", "msg_store",
            "_on_task_tokens_expired")  # fmt: skip
    if not all(hasattr(state, a) for a in used):
        raise RuntimeError(f"flwr {found}: NodeState no longer keeps tasks as expected")
    if "is_retrieved" not in inspect.getsource(type(state)._store_error_replies):
        raise RuntimeError(f"flwr {found}: crash replies no longer depend on is_retrieved")
    if "client.PullMessages(" not in inspect.getsource(rc.pull_task_input):
        raise RuntimeError(f"flwr {found}: pull_task_input no longer calls client.PullMessages")
