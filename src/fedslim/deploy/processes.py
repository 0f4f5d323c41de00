"""The processes a deployment started, recorded so another command can stop exactly them.

A pid alone is not an identity: after a crash or a reboot the number may belong to
someone else's process. A child is therefore recorded with its start time in clock ticks
since boot (``/proc/PID/stat`` field 22), and is only signalled while both still match.
Every child leads its own process group (``start_new_session``), so stopping it stops
what it spawned (ServerApp, ClientApp processes) too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields after the command name


def start_ticks(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields else None


@dataclass
class Child:
    name: str
    pid: int
    ticks: int
    popen: subprocess.Popen | None = None  # held by the command that started it
    group: bool = True  # leads its own process group (what we started), else a descendant

    @classmethod
    def spawn(cls, name: str, argv: list[str], *, log: Path, **kwargs) -> Child:
        with log.open("ab") as fh:
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True, **kwargs)  # fmt: skip
        return cls(name, proc.pid, start_ticks(proc.pid) or 0, proc)

    def alive(self) -> bool:
        """Running, not a zombie, and still the process that was started."""
        if self.popen is not None and self.popen.poll() is not None:
            return False
        fields = _stat(self.pid)
        return bool(fields) and fields[0] != "Z" and int(fields[19]) == self.ticks

    def signal(self, sig: int) -> None:
        """The group of a child we started; a descendant by itself (its group may be
        someone else's)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                (os.killpg if self.group else os.kill)(self.pid, sig)

    def record(self) -> dict:
        return {"name": self.name, "pid": self.pid, "ticks": self.ticks}


def descendants(pids: set[int]) -> list[Child]:
    """Every live process below ``pids``, found through parent ids (Flower starts some of
    its apps in sessions of their own, outside their parent's process group)."""
    parent = {}
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat(int(entry.name))
        if fields and fields[0] != "Z":
            parent[int(entry.name)] = (int(fields[1]), int(fields[19]))
    found, frontier = [], set(pids)
    while frontier:
        below = {pid for pid, (ppid, _) in parent.items() if ppid in frontier}
        found += [Child("descendant", pid, parent[pid][1], group=False) for pid in below]
        frontier = below
    return found


def stop_all(children: list[Child], *, grace_s: float = 10.0) -> None:
    """SIGTERM every group still ours and everything below it, then SIGKILL what is left
    after ``grace_s``."""
    owned = [c for c in children if c.alive()]
    owned += descendants({c.pid for c in owned})
    for child in owned:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(c.alive() for c in owned) and time.monotonic() < deadline:
        time.sleep(0.1)
    for child in owned:  # a group outlives its leader: its pgid is still the leader's pid
        child.signal(signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if child.group:
                os.killpg(child.pid, signal.SIGKILL)
    for child in children:
        if child.popen is not None:
            child.popen.wait()
