"""A Deployment Engine federation on this machine, for trying a job before the devices.

One SuperLink and N SuperNodes run as child processes on 127.0.0.1, TLS by default,
and the job is submitted with ``flwr run``: the same processes, transport and isolation
(every ClientApp in its own process) as a deployment on edge devices, only the
addresses differ. Every process is stopped on exit, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..config import RunConfig
from ..protocol import node_config_text
from ..simulations.run import write_app_dir
from .certs import TlsFiles, make_certs

ACTIVATED = re.compile(r"Activated node_id=(\d+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalDeployment:
    def __init__(
        self,
        workdir: Path,
        nodes: int,
        *,
        tls: bool = True,
        node_config: dict[int, str] | None = None,
        startup_timeout: float = 90.0,
    ) -> None:
        """``node_config[i]``: extra ``key=value`` pairs for SuperNode i (e.g. ``lora-r=4``)."""
        if nodes < 1:
            raise ValueError(f"LocalDeployment: nodes must be >= 1, got {nodes}")
        bad = [i for i in node_config or {} if not 0 <= i < nodes]
        if bad:
            raise ValueError(
                f"node config for SuperNode {bad[0]}: there are {nodes} (0..{nodes - 1})"
            )
        self.node_config = dict(node_config or {})
        self.workdir, self.nodes, self.tls = Path(workdir).resolve(), nodes, tls
        self.startup_timeout = startup_timeout
        self.procs: list[subprocess.Popen] = []
        self.port = free_port()
        self.certs: TlsFiles | None = None
        bin_dir = str(Path(sys.executable).parent)  # flower-superexec is looked up on PATH
        self.env = {
            **os.environ,
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "FLWR_HOME": str(self.workdir / "flwr-home"),
            "FLWR_TELEMETRY_ENABLED": "0",
        }

    # ---- processes ------------------------------------------------------------------
    def __enter__(self) -> LocalDeployment:
        self._handlers = _on_termination()  # SIGTERM / SIGHUP unwind like Ctrl-C does
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            for sig, handler in self._handlers.items():
                signal.signal(sig, handler)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        address = f"127.0.0.1:{self.port}"
        if self.tls:
            self.certs = make_certs(self.workdir / "certs", ["127.0.0.1", "localhost"])
            link_sec = self.certs.superlink_args()
            node_sec = ["--root-certificates", str(self.certs.ca)]
        else:
            link_sec = node_sec = ["--insecure"]
        self._write_connection(address)
        link = ["--port", str(self.port), "--disable-runtime-dependency-installation"]
        self._spawn("superlink", ["flower-superlink", *link_sec, *link])
        for i in range(self.nodes):
            own = node_config_text(i, self.nodes, self.node_config.get(i, ""))
            node = [
                *("--superlink", address, "--port", str(free_port())),
                *("--node-config", own.strip()),
            ]
            self._spawn(f"supernode-{i}", ["flower-supernode", *node_sec, *node])
        self._wait_for_nodes()

    def stop(self) -> None:
        for proc in self.procs:
            _signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
                proc.wait()
        self.procs.clear()

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _spawn(self, name: str, argv: list[str]) -> None:
        with (self.workdir / f"{name}.log").open("wb") as fh:
            self.procs.append(
                subprocess.Popen(
                    argv,
                    cwd=self.workdir,
                    env=self.env,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its ServerApp / ClientApp children stop with it
                )
            )

    def _write_connection(self, address: str) -> None:
        home = Path(self.env["FLWR_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        security = f'root-certificates = "{self.certs.ca}"' if self.certs else "insecure = true"
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "local"\n\n[superlink.local]\n'
            f'address = "{address}"\n{security}\n',
            encoding="utf-8",
        )

    def _wait_for_nodes(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead[0]} exited at start:\n{self.log('superlink')[-2000:]}")
            if len(set(ACTIVATED.findall(self.log("superlink")))) >= self.nodes:
                return
            time.sleep(0.5)
        raise TimeoutError(
            f"{self.nodes} SuperNodes did not connect within {self.startup_timeout:.0f} s:\n"
            + self.log("superlink")[-2000:]
        )

    # ---- jobs -----------------------------------------------------------------------
    def submit(self, run: RunConfig, *, timeout: float = 3600.0, echo=None) -> dict:
        """Run the job with ``flwr run`` and return its summary; raises if it fails.

        ``echo`` receives flwr's streamed log lines as they come (progress on long runs).
        """
        if not run.out:
            raise ValueError("LocalDeployment.submit: set 'out' (results are read from it)")
        out = Path(run.out).resolve()
        app = write_app_dir(_fresh(self.workdir / "app"), run.replace(out=str(out)))
        started = time.time()
        lines: list[str] = []
        with subprocess.Popen(
            ["flwr", "run", str(app), "local", "--stream"],
            env=self.env,
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc:
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
            try:
                for line in proc.stdout:
                    lines.append(line)
                    if echo:
                        echo(line.rstrip("\n"))
            except BaseException:  # interrupted or terminated: do not wait for the job
                proc.kill()
                raise
            finally:
                timer.cancel()
        summary = out / "summary.json"
        if proc.returncode != 0 or not summary.exists() or summary.stat().st_mtime < started:
            raise RuntimeError(f"flwr run failed (exit {proc.returncode}):\n{''.join(lines[-40:])}")
        return json.loads(summary.read_text(encoding="utf-8"))


def _on_termination() -> dict[int, object]:
    """Turn SIGTERM and SIGHUP into SystemExit, so every ``with`` and ``finally`` runs and
    the processes this deployment started are stopped; returns the handlers replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}  # only the main thread may set handlers; its owner decides there

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    return {sig: signal.signal(sig, terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}


def _signal(proc: subprocess.Popen, sig: int) -> None:
    """Signal the process's whole group; one that already exited is not an error."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _fresh(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    return directory
