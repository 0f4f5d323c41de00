"""``python -m fedslim.flower_internals supernode|executor ARGS``."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

from .check import MODULE, PATCHES, failure, require, working
from .executor import run_executor
from .patches import (
    expire_claimed_tasks,
    fail_stopped_pulls,
    patch_supernode_sleeps,
    record_node_state,
    shorten_pull_backoff,
)

POLITE_STOPS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def supervise(argv: list[str], *, steady_s: float = 60.0, max_delay: float = 30.0) -> None:
    """Keep the executor running: one that dies (the OOM killer, a crash in native code)
    would leave a SuperNode that is online but never answers. The tasks it held are
    expired at once (Flower's crash reply goes out) and a new one starts, backing off
    from 1 s to ``max_delay`` while it keeps dying young. The executor exits with us (it
    watches our pid); this thread dies with us. An executor stopped politely (SIGTERM,
    SIGINT, SIGHUP) was stopped with its node's process group, not crashed: a new one
    would start into a SuperNode that is shutting down, so supervision ends there."""

    def loop() -> None:
        delay = 0.5
        while True:
            started = time.monotonic()
            try:
                code = subprocess.Popen(argv).wait()  # noqa: S603 - our own module
                if -code in POLITE_STOPS:
                    print(f"fedslim: the ClientApp executor was stopped ({code})",
                          file=sys.stderr, flush=True)  # fmt: skip
                    return
                why = f"exited ({code}), {expire_claimed_tasks()} task(s) expired"
            except Exception as exc:  # noqa: BLE001 - supervision must go on
                why = f"could not be run or cleaned up after ({exc!r})"
            young = time.monotonic() - started < steady_s
            delay = min(delay * 2, max_delay) if young else 1.0
            print(f"fedslim: the ClientApp executor {why}; restarting it in {delay:.0f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
            time.sleep(delay)

    threading.Thread(target=loop, daemon=True, name="executor-supervisor").start()


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
    require("executor")
    patch = {
        "supernode-sleeps": lambda: patch_supernode_sleeps(mine.idle_poll, mine.reply_poll),
        "pull-backoff": shorten_pull_backoff,
        "stopped-pulls": fail_stopped_pulls,
        "claimed-tasks": record_node_state,
    }
    on = working()
    for name in PATCHES:
        if name in on:
            patch[name]()
        else:
            print(f"fedslim: patch off: {failure(name)}", file=sys.stderr, flush=True)
    tls = ["--root-certificates", mine.ssl_ca_certfile] if mine.ssl_ca_certfile else ["--insecure"]
    supervise([sys.executable, "-m", MODULE, "executor", "--runtime-api-address",
               f"{mine.host}:{mine.port}", "--poll", str(mine.executor_poll),
               "--parent-pid", str(os.getpid()), *tls])  # fmt: skip
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
    require("executor")
    run_executor(
        a.runtime_api_address,
        insecure=a.insecure,
        root_certificates=a.root_certificates,
        poll=a.poll,
        parent_pid=a.parent_pid,
    )


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("supernode", "executor"):
        sys.exit("usage: python -m fedslim.flower_internals supernode|executor ARGS")
    {"supernode": supernode_main, "executor": executor_main}[sys.argv[1]](sys.argv[2:])
