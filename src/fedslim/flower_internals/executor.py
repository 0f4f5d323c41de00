"""The long-running ClientApp executor (item 1 of the package's list)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .check import CLIENT_APP_TASK, working
from .patches import shorten_pull_backoff

LOG = logging.getLogger("fedslim.executor")
TRACE = os.environ.get("FEDSLIM_EXECUTOR_TRACE") == "1"  # per-task seconds on stderr


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


_IN_APP = threading.Event()  # set while a ClientApp call runs in the main thread


def _stop_task(signum, frame) -> None:
    # Flower's task heartbeat SIGINTs the process when the SuperNode drops the task: it
    # ends a process per task; here it ends the ClientApp call and the executor goes on.
    # Outside a call the task ends on its own (its pulls and pushes are refused).
    if _IN_APP.is_set():
        raise TaskStopped("Flower stopped the ClientApp task (its run ended)")
    LOG.warning("SIGINT outside a ClientApp call: ignored")


def _revoked(exc: BaseException) -> bool:
    """The task is over on the SuperNode's side: its token refused, its run stopped (a
    403, raised by Flower as the BaseException RunNotRunningException), or Flower stopped
    it."""
    import httpx
    from flwr.supercore.run import RunNotRunningException

    if isinstance(exc, TaskStopped | RunNotRunningException):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 401


def _give_up_on_revoked_token(flower_giveup):
    """On a 401 Flower's invoker SIGINTs its own process, right for a process per task;
    here it would end the executor and every later task with it. Raise instead."""

    def should_giveup(exc: Exception) -> bool:
        return _revoked(exc) or flower_giveup(exc)

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


def _until_a_message(pull, wait_s: float = 10.0):
    """Flower creates a task before it stores its message, so a warm executor can ask in
    between and get none (a fresh process never came that early): ask again a while."""

    def patient(request):
        deadline = time.monotonic() + wait_s
        while not (res := pull(request)).messages_list and time.monotonic() < deadline:
            time.sleep(0.01)
        return res

    return patient


def _heartbeat_fn(client):
    """Flower's task heartbeat, which on a refused token stops the task (SIGINT, turned
    into TaskStopped in the main thread) instead of dying in its thread."""
    from flwr.supercore.heartbeat import make_task_heartbeat_fn_http
    from flwr.supercore.run import RunNotRunningException

    beat = make_task_heartbeat_fn_http(client)

    def fn() -> bool:
        try:
            return beat()
        except (Exception, RunNotRunningException) as exc:
            if not _revoked(exc):
                raise
            signal.raise_signal(signal.SIGINT)
            return True

    return fn


def run_task(address: str, insecure: bool, certs: bytes | None, token: str, apps: _Apps):
    """One ClientApp task, in process: the body of Flower's ``run_clientapp`` less its
    process exit (and less runtime dependency installation, which fedslim disables)."""
    from flwr.app import Message
    from flwr.app.error import Error
    from flwr.common.constant import ErrorCode, SubStatus
    from flwr.supercore.heartbeat import HeartbeatSender
    from flwr.supercore.run import RunNotRunningException
    from flwr.supernode.runtime import run_clientapp as rc

    t0 = time.monotonic()
    client = _client(address, insecure, certs, token)
    client.PullMessages = _until_a_message(client.PullMessages)
    heartbeat = HeartbeatSender(_heartbeat_fn(client))
    heartbeat.start()
    message = reply = context = None
    status, details, revoked = SubStatus.FAILED, "ClientApp task failed", False
    try:
        message, context, run, fab = rc.pull_task_input(client)
        t1 = time.monotonic()
        app = apps.get(run, fab)
        _IN_APP.set()
        try:
            reply = app(message=message, context=context)
        finally:
            _IN_APP.clear()
        t2 = time.monotonic()
        status, details = SubStatus.COMPLETED, ""
    except (Exception, SystemExit, RunNotRunningException) as ex:  # as Flower reports them
        revoked = _revoked(ex)  # its run stopped: nobody waits for a reply or an output
        if revoked:
            LOG.warning("ClientApp task abandoned, its run ended: %r", ex)
        else:
            LOG.exception("ClientApp raised")
        details = f"{type(ex)}:<'{ex}'>"
        if message is not None:
            code = ErrorCode.CLIENT_APP_RAISED_EXCEPTION
            reply = Message(Error(code=code, reason=details), reply_to=message)
    finally:
        try:
            _deliver(rc, client, reply, context, status, details, revoked)
        finally:
            if heartbeat.is_running:
                heartbeat.stop()
            client.close()
            if TRACE and reply is not None and status == SubStatus.COMPLETED:
                t3 = time.monotonic()
                print(f"[executor] pull {t1 - t0:.3f} s, app {t2 - t1:.3f} s, "
                      f"push {t3 - t2:.3f} s", file=sys.stderr, flush=True)  # fmt: skip


def _deliver(rc, client, reply, context, status, details, revoked: bool) -> None:
    """The reply and the task's output. Without a reply (the message was never read) no
    output either: finishing the task would leave the SuperNode waiting forever for a
    reply, while a task whose token expires gets Flower's own error reply."""
    from flwr.supercore.run import RunNotRunningException

    if revoked:
        return
    if reply is None or context is None:
        LOG.warning("ClientApp task failed before its message was read: left to expire")
        return
    try:
        rc.push_message(client, reply, context)
        rc.push_task_output(client, context, status, details)
    except (Exception, RunNotRunningException) as ex:  # the task is over either way
        LOG.warning("ClientApp task output not delivered: %r", ex)


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
    from flwr.supercore.run import RunNotRunningException

    if parent_pid is not None:
        _exit_with(parent_pid)
    signal.signal(signal.SIGINT, _stop_task)  # ends a ClientApp call, never the executor
    if working(("pull-backoff",)):
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
            try:
                run_task(address, insecure, certs, res.token, apps)
            except (Exception, SystemExit, RunNotRunningException):  # never end the loop
                LOG.exception("ClientApp task failed")
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
