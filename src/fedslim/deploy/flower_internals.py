"""Everything fedslim takes from Flower's private internals, in one place, pinned.

Why: on a Deployment Engine federation a round of the tiny model costs 35-45 s for
<1 s of training. Flower 1.42 has no supported way to avoid the costs removed here:

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

``python -m fedslim.deploy.flower_internals supernode [--idle-poll S] <flower-supernode
args>`` does all four: patches, starts the executor as its child and runs the SuperNode
with ``--isolation process``. Without this entry point Flower behaves as stock.
``check_flower()`` fails loudly when the installed Flower is not one tested here.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from importlib.metadata import version
from pathlib import Path

TESTED_FLWR = ("1.42.0",)
MODULE = "fedslim.deploy.flower_internals"
CLIENT_APP_TASK = "flwr-clientapp"  # flwr.supercore.constant.TaskType.CLIENT_APP
LOG = logging.getLogger("fedslim.executor")
TRACE = os.environ.get("FEDSLIM_EXECUTOR_TRACE") == "1"  # per-task seconds on stderr
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


# ---- 1. the long-running ClientApp executor -----------------------------------------
def _client(address: str, insecure: bool, certs: bytes | None, token: str | None):
    from flwr.supercore.interceptors import (
        RuntimeTokenHttpInterceptor,
        RuntimeVersionHttpInterceptor,
    )
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient
    from flwr.supercore.runtime.tracing import RuntimeTracingInterceptor

    name = "flwr-clientapp" if token else "SuperExec"
    interceptors = [RuntimeTracingInterceptor(), RuntimeVersionHttpInterceptor(name)]
    invoker = make_simple_http_retry_invoker()
    if token:
        interceptors.append(RuntimeTokenHttpInterceptor(token))
        invoker.should_giveup = _give_up_on_revoked_token(invoker.should_giveup)
    return RuntimeHttpClient.from_server_address(
        server_address=address,
        insecure=insecure,
        root_certificates=certs,
        interceptors=interceptors,
        retry_invoker=invoker,
    )


class TaskStopped(Exception):
    """Flower stopped this ClientApp task: its heartbeat was refused (the run ended)."""


def _stop_task(signum, frame) -> None:
    # Flower's task heartbeat SIGINTs the process when the SuperNode drops the task: it
    # ends a process per task; here it ends the task and the executor goes on.
    raise TaskStopped("Flower stopped the ClientApp task (its run ended)")


def _revoked(exc: BaseException) -> bool:
    """The task is over on the SuperNode's side: its token refused, or Flower stopped it."""
    import httpx

    if isinstance(exc, TaskStopped):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 401


def _give_up_on_revoked_token(flower_giveup):
    """On a 401 Flower's invoker SIGINTs its own process, right for a process per task;
    here it would end the executor and every later task with it. Raise instead."""

    def should_giveup(exc: Exception) -> bool:
        return True if _revoked(exc) else flower_giveup(exc)

    return should_giveup


class _Apps:
    """Installed FABs and loaded ClientApps by FAB hash: loaded once per process."""

    def __init__(self) -> None:
        self._apps: dict[str, object] = {}

    def get(self, run, fab):
        if fab.hash_str not in self._apps:
            from flwr.cli.install import install_from_fab
            from flwr.clientapp.utils import get_load_client_app_fn

            install_from_fab(fab.content, skip_prompt=True)
            load = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)
            self._apps[fab.hash_str] = load(run.fab_id, run.fab_version, fab.hash_str)
        return self._apps[fab.hash_str]


def run_task(address: str, insecure: bool, certs: bytes | None, token: str, apps: _Apps):
    """One ClientApp task, in process: the body of Flower's ``run_clientapp`` less its
    process exit (and less runtime dependency installation, which fedslim disables)."""
    from flwr.app import Message
    from flwr.app.error import Error
    from flwr.common.constant import ErrorCode, SubStatus
    from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
    from flwr.supernode.runtime import run_clientapp as rc

    t0 = time.monotonic()
    client = _client(address, insecure, certs, token)
    heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
    heartbeat.start()
    message = reply = context = None
    status, details, revoked = SubStatus.FAILED, "ClientApp task failed", False
    try:
        message, context, run, fab = rc.pull_task_input(client)
        t1 = time.monotonic()
        reply = apps.get(run, fab)(message=message, context=context)
        t2 = time.monotonic()
        status, details = SubStatus.COMPLETED, ""
    except Exception as ex:  # noqa: BLE001 - reported to the SuperLink, as Flower does
        revoked = _revoked(ex)  # its run stopped: nobody waits for a reply or an output
        if revoked:
            LOG.warning("ClientApp task abandoned, its run ended: %s", ex)
        else:
            LOG.exception("ClientApp raised")
        details = f"{type(ex)}:<'{ex}'>"
        if message is not None:
            code = ErrorCode.CLIENT_APP_RAISED_EXCEPTION
            reply = Message(Error(code=code, reason=details), reply_to=message)
    finally:
        try:
            if reply is not None and context is not None and not revoked:
                rc.push_message(client, reply, context)
            if not revoked:
                rc.push_task_output(client, context, status, details)
        except Exception as ex:  # noqa: BLE001 - the task is over either way
            LOG.warning("ClientApp task output not delivered: %s", ex)
        finally:
            if heartbeat.is_running():  # its thread ends on a refused token
                heartbeat.stop()
            client.close()
            if TRACE and reply is not None and status == SubStatus.COMPLETED:
                t3 = time.monotonic()
                print(f"[executor] pull {t1 - t0:.3f} s, app {t2 - t1:.3f} s, "
                      f"push {t3 - t2:.3f} s", file=sys.stderr, flush=True)  # fmt: skip


def run_executor(
    address: str,
    *,
    insecure: bool = True,
    root_certificates: str | None = None,
    poll: float = 0.05,
    parent_pid: int | None = None,
) -> None:
    """Loop forever: acquire a ClientApp task from the SuperNode at ``address`` and run
    it in this process. Stands in for ``flower-superexec`` under ``--isolation process``."""
    import httpx
    from flwr.proto.runtime_pb2 import AcquireTaskRequest

    if parent_pid is not None:
        _exit_with(parent_pid)
    shorten_pull_backoff()
    certs = Path(root_certificates).read_bytes() if root_certificates else None
    acquirer = _client(address, insecure, certs, None)
    apps = _Apps()
    while True:
        try:
            res = acquirer.AcquireTask(AcquireTaskRequest(supported_task_types=[CLIENT_APP_TASK]))
        except httpx.HTTPError:  # SuperNode not up yet, or restarting
            time.sleep(0.5)
            continue
        if res.HasField("task") and res.token:
            previous = signal.signal(signal.SIGINT, _stop_task)
            try:
                run_task(address, insecure, certs, res.token, apps)
            except Exception:  # one task's failure must not end the node's executor
                LOG.exception("ClientApp task failed")
            finally:
                signal.signal(signal.SIGINT, previous)
            continue  # look for the next task at once
        time.sleep(poll)


def _exit_with(pid: int) -> None:
    def watch() -> None:
        while True:
            time.sleep(0.2)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-monitor").start()


# ---- entry points -------------------------------------------------------------------
def supernode_main(argv: list[str]) -> None:
    """``flower-supernode`` with the patched sleeps and an in-process executor child."""
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--idle-poll", type=float, default=0.1)
    own.add_argument("--reply-poll", type=float, default=0.02)
    own.add_argument("--executor-poll", type=float, default=0.05)
    own.add_argument("--host", default="127.0.0.1")
    own.add_argument("--port", default="9094")
    own.add_argument("--ssl-ca-certfile", default=None)
    mine, rest = own.parse_known_args(argv)
    check_flower()
    patch_supernode_sleeps(mine.idle_poll, mine.reply_poll)
    shorten_pull_backoff()
    fail_stopped_pulls()
    tls = ["--root-certificates", mine.ssl_ca_certfile] if mine.ssl_ca_certfile else ["--insecure"]
    subprocess.Popen(  # noqa: S603 - stops with us: it watches our pid
        [sys.executable, "-m", MODULE, "executor", "--runtime-api-address",
         f"{mine.host}:{mine.port}", "--poll", str(mine.executor_poll),
         "--parent-pid", str(os.getpid()), *tls]
    )  # fmt: skip
    passthrough = ["--host", mine.host, "--port", mine.port]
    if mine.ssl_ca_certfile:
        passthrough += ["--ssl-ca-certfile", mine.ssl_ca_certfile]
    sys.argv = ["flower-supernode", *rest, *passthrough, "--isolation", "process"]
    from flwr.supernode.cli.flower_supernode import flower_supernode

    flower_supernode()


def executor_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="fedslim-executor")
    p.add_argument("--runtime-api-address", required=True)
    p.add_argument("--insecure", action="store_true")
    p.add_argument("--root-certificates", default=None)
    p.add_argument("--poll", type=float, default=0.05)
    p.add_argument("--parent-pid", type=int, default=None)
    a = p.parse_args(argv)
    if not a.insecure and not a.root_certificates:
        p.error("give --insecure or --root-certificates")
    check_flower()
    run_executor(
        a.runtime_api_address,
        insecure=a.insecure,
        root_certificates=a.root_certificates,
        poll=a.poll,
        parent_pid=a.parent_pid,
    )


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("supernode", "executor"):
        sys.exit("usage: python -m fedslim.deploy.flower_internals supernode|executor ARGS")
    {"supernode": supernode_main, "executor": executor_main}[sys.argv[1]](sys.argv[2:])
