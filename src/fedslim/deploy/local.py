"""A Deployment Engine federation on this machine, for trying a job before the devices.

One SuperLink and N SuperNodes run as child processes on 127.0.0.1, TLS by default,
and jobs are submitted with ``flwr run``: the same processes, transport and isolation
(every ClientApp in its own process) as a deployment on edge devices, only the
addresses differ. Used as a context manager every process is stopped on exit, whatever
happened; ``save`` / ``attach`` let a federation outlive the command that started it
(``fedslim deploy up`` ... ``down``), its state in ``federation.json`` in its directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

from ..config import RunConfig
from ..config.app_dir import write_app_dir
from ..flower_internals.check import MODULE
from ..protocol import node_config_text
from ..resources.profiles import Link
from .certs import TlsFiles, make_certs, make_node_key
from .links import Emulation
from .processes import Child, stop_all

STATE = "federation.json"
# How much of Flower's deployment path fedslim replaces (measured in benchmarks/deploy_round.py):
#   stock      Flower as installed: a process per ClientApp message, 3 s server pulls
#   supported  public knobs only: the server's push + short pull loop, a 0.05 s executor
#              poll, one torch thread share per SuperNode
#   fast       supported + flower_internals (a long-running ClientApp executor, short
#              SuperNode sleeps and object-pull backoff), pinned to the tested Flower
ENGINES = ("stock", "supported", "fast")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fast_or_supported() -> str:
    """The fast engine where its executor checks out, without any patch that does not
    (one warning); else, with one warning, the supported engine (public Flower only), so
    a Flower upgrade never breaks the default."""
    from ..flower_internals.check import PATCHES, failure

    reason = failure("executor")
    if reason:
        warnings.warn(
            f"{reason}. The fast engine's Flower patches are off: this federation runs the "
            "supported engine (public Flower only, slower rounds).",
            RuntimeWarning,
            stacklevel=3,
        )
        return "supported"
    off = [r for r in map(failure, PATCHES) if r]
    if off:
        warnings.warn(f"the fast engine runs without: {'; '.join(off)}", RuntimeWarning,
                      stacklevel=3)  # fmt: skip
    return "fast"


class LocalDeployment:
    def __init__(
        self,
        workdir: Path,
        nodes: int,
        *,
        tls: bool = True,
        node_config: dict[int, str] | None = None,
        startup_timeout: float = 90.0,
        engine: str = "fast",
        auth: bool = False,
        links: dict[int, Link] | None = None,
        check_engine: bool = True,
    ) -> None:
        """``node_config[i]``: extra ``key=value`` pairs for SuperNode i (e.g. ``lora-r=4``).
        ``check_engine=False`` (attaching to running processes) skips the Flower check."""
        if engine not in ENGINES:
            raise ValueError(f"engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
        if engine == "fast" and check_engine:
            engine = _fast_or_supported()
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
        self.procs: list[Child] = []
        self.port = free_port()
        self.certs: TlsFiles | None = None
        bin_dir = str(Path(sys.executable).parent)  # flower-superexec is looked up on PATH
        self.env = {
            **os.environ,
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "FLWR_HOME": str(self.workdir / "flwr-home"),
            "FLWR_TELEMETRY_ENABLED": "0",
        }
        self.engine, self.auth = engine, auth
        bad = [i for i in links or {} if not 0 <= i < nodes]
        if bad:
            raise ValueError(f"link for SuperNode {bad[0]}: there are {nodes} (0..{nodes - 1})")
        self.emulation = Emulation(secrets.token_hex(3), dict(links)) if links else None
        self.host = "127.0.0.1"  # where the SuperLink listens
        self._node_sec: list[str] = []
        self._superlink: list[str] = []
        if engine == "stock":
            self.env["FEDSLIM_SERVER_PULL"] = "stock"  # the ServerApp's send_and_receive
        else:
            self.env["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] = "0.05"
        self.node_env = dict(self.env)
        if engine != "stock":  # SuperNodes sharing this machine share its cores, not contend
            self.node_env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nodes))

    # ---- processes ------------------------------------------------------------------
    def __enter__(self) -> LocalDeployment:
        self._handlers = on_termination()  # SIGTERM / SIGHUP unwind like Ctrl-C does
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

    def start(self, first: int | None = None) -> None:
        """The SuperLink and SuperNodes 0..first-1 (all by default; start_node adds one
        later, as a device that joins late)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.emulation is not None:  # the SuperLink on the bridge the namespaces share
            self.emulation.create()
            self.host = self.emulation.host_ip
        address = f"{self.host}:{self.port}"
        if self.tls:
            hosts = ["127.0.0.1", "localhost"] + ([self.host] if self.emulation else [])
            self.certs = make_certs(self.workdir / "certs", hosts)
            link_sec = self.certs.superlink_args()
            node_sec = ["--root-certificates", str(self.certs.ca)]
        else:
            link_sec = node_sec = ["--insecure"]
        self._write_connection(address)
        link = ["--host", self.host, "--port", str(self.port),
                "--disable-runtime-dependency-installation",
                # state on disk: registered nodes, runs and their messages survive a
                # SuperLink restart (SuperNodes whose node id it forgot shut down)
                "--database", str(self.workdir / "superlink.db")]  # fmt: skip
        if self.auth:
            link.append("--enable-supernode-auth")
        self._superlink = ["flower-superlink", *link_sec, *link]
        self._spawn("superlink", self._superlink)
        self._node_sec = node_sec
        for i in range(self.nodes if first is None else first):
            key = None
            if self.auth:  # registered through the SuperLink's Control API, as users do
                key, public = make_node_key(self.workdir / "keys", f"node-{i}")
                self.register(public)
            self.start_node(i, key=key)
        self.wait_for_nodes(self.nodes if first is None else first)

    def start_node(
        self, i: int, *, key: Path | None = None, name: str | None = None, venv: Path | None = None
    ) -> None:
        """SuperNode ``i`` (its partition); ``key``: its private key under --auth;
        ``venv``: run it from another environment (e.g. one with only ``fedslim[client]``)."""
        own = node_config_text(i, self.nodes, self.node_config.get(i, ""))
        node = [*("--superlink", f"{self.host}:{self.port}", "--port", str(free_port())),
                *("--node-config", own.strip())]  # fmt: skip
        if key is not None:
            node += ["--auth-supernode-private-key", str(key)]
        bin_dir = Path(venv) / "bin" if venv else Path(sys.executable).parent
        env = dict(self.node_env, PATH=str(bin_dir) + os.pathsep + self.node_env["PATH"])
        if venv:  # its own packages only (Flower's Ray backend may have set PYTHONPATH here)
            env.pop("PYTHONPATH", None)
        launcher = [str(bin_dir / "flower-supernode")]
        if self.engine == "fast":
            launcher = [
                str(bin_dir / "python"),
                "-m",
                MODULE,
                "supernode",
            ]
        prefix = self.emulation.prefix(i) if self.emulation else []
        argv = [*prefix, *launcher, *self._node_sec, *node]
        self._spawn(name or f"supernode-{i}", argv, env=env)

    def register(self, public: Path, timeout: float = 60.0) -> None:
        """``flwr supernode register``: retried while the SuperLink is still starting."""
        deadline = time.monotonic() + timeout
        while True:
            argv = ["flwr", "supernode", "register", str(public), "local"]
            done = subprocess.run(argv, env=self.env, cwd=self.workdir, capture_output=True,
                                  text=True)  # fmt: skip
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"flwr supernode register {public.name} failed:\n"
                                   f"{done.stdout[-1500:]}{done.stderr[-1500:]}")  # fmt: skip
            time.sleep(1.0)

    def stop(self) -> None:
        """Stop every process on record; any still running afterwards (one we may not
        signal: started by root, say) stays on record."""
        stop_all(self.procs)
        self.procs = [c for c in self.procs if c.alive()]
        if self.emulation is not None and self.emulation.subnet:
            self.emulation.remove()

    def restart_superlink(self) -> None:
        """Stop the SuperLink (and the ServerApps it runs) and start it again on the same
        port: the server-side restart a deployment lives through. SuperNodes reconnect."""
        link = next(c for c in self.procs if c.name == "superlink")
        stop_all([link])
        self.procs.remove(link)
        nodes = sum(c.alive() for c in self.procs if c.name.startswith("supernode"))
        self._spawn("superlink", self._superlink)  # its database still holds the node keys
        self.wait_for_nodes(nodes)

    # ---- a federation that outlives its command ------------------------------------------
    def save(self) -> None:
        procs = [c.record() for c in self.procs]
        state = {"nodes": self.nodes, "tls": self.tls, "port": self.port, "engine": self.engine,
                 "auth": self.auth, "node_config": self.node_config, "procs": procs,
                 "host": self.host,
                 "links": self.emulation.record() if self.emulation else None}  # fmt: skip
        (self.workdir / STATE).write_text(json.dumps(state, indent=1), encoding="utf-8")

    @classmethod
    def attach(cls, workdir: Path) -> LocalDeployment:
        """The federation ``save`` recorded in ``workdir``, its processes as they are now."""
        path = Path(workdir) / STATE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            node_config = {int(k): v for k, v in state["node_config"].items()}
            self = cls(
                workdir,
                state["nodes"],
                tls=state["tls"],
                node_config=node_config,
                engine=state.get("engine", "stock"),
                auth=state.get("auth", False),
                check_engine=False,
            )  # stopping must work after a Flower upgrade too
            self.port, self.host = state["port"], state.get("host", "127.0.0.1")
            if state.get("links"):
                self.emulation = Emulation.from_record(state["links"])
            self.procs = [Child(p["name"], p["pid"], p["ticks"]) for p in state["procs"]]
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no federation in {workdir} (fedslim deploy up --dir)"
            ) from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # damaged record
            raise ValueError(
                f"{path} is damaged ({exc!r}): stop its processes by hand (pids in the file), "
                "then remove it"
            ) from None
        if self.tls:
            self.certs = TlsFiles.in_dir(self.workdir / "certs")
            self._node_sec = ["--root-certificates", str(self.certs.ca)]
        else:
            self._node_sec = ["--insecure"]
        return self

    def online(self) -> list[dict]:
        """The SuperNodes the SuperLink reports online (``flwr supernode list``, the public
        Control API; 0 while the SuperLink is still starting)."""
        argv = ["flwr", "supernode", "list", "local", "--format", "json"]
        done = subprocess.run(argv, env=self.env, cwd=self.workdir, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        try:
            nodes = json.loads(done.stdout).get("nodes", [])
        except json.JSONDecodeError:
            return []
        return [n for n in nodes if n.get("status") == "online"]

    def connected(self) -> int:
        return len(self.online())

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> None:
        log = self.workdir / f"{name}.log"
        log.unlink(missing_ok=True)
        with _recorded_before_exit():  # a SIGTERM here would lose the started child
            child = Child.spawn(name, argv, log=log, cwd=self.workdir, env=env or self.env)
            self.procs.append(child)

    def _write_connection(self, address: str) -> None:
        home = Path(self.env["FLWR_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        security = f'root-certificates = "{self.certs.ca}"' if self.certs else "insecure = true"
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "local"\n\n[superlink.local]\n'
            f'address = "{address}"\n{security}\n',
            encoding="utf-8",
        )

    def wait_for_nodes(self, count: int) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            dead = [c.name for c in self.procs if not c.alive()]
            if dead:
                raise RuntimeError(f"{dead[0]} exited at start:\n{self.log(dead[0])[-2000:]}")
            if self.connected() >= count:
                return
            time.sleep(0.5)
        raise TimeoutError(
            f"{count} SuperNodes did not connect within {self.startup_timeout:.0f} s:\n"
            + self.log("superlink")[-2000:]
        )

    # ---- jobs -----------------------------------------------------------------------
    def submit(self, run: RunConfig, *, timeout: float = 3600.0, echo=None,
               clientapp: str = "fedslim.client.app:app") -> dict:  # fmt: skip
        """Run the job with ``flwr run`` and return its summary; raises if it fails.

        ``echo`` receives flwr's streamed log lines as they come (progress on long runs);
        ``clientapp`` is the app component (``fedslim.client.faults:app`` injects faults).
        """
        if not run.out:
            raise ValueError("LocalDeployment.submit: set 'out' (results are read from it)")
        out = Path(run.out).resolve()
        started = time.time()
        lines: list[str] = []
        with (
            _job_app(self.workdir, run.replace(out=str(out)), clientapp) as app,
            subprocess.Popen(
                ["flwr", "run", str(app), "local", "--stream"],
                env=self.env,
                cwd=self.workdir,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ) as proc,
        ):
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


def on_termination() -> dict[int, object]:
    """Turn SIGTERM and SIGHUP into SystemExit, so every ``with`` and ``finally`` runs and
    the processes this deployment started are stopped; returns the handlers replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}  # only the main thread may set handlers; its owner decides there

    def terminate(signum, frame):
        if _SPAWNING:  # between starting a child and recording it: exit right after
            _SPAWNING.append(signum)
            return
        raise SystemExit(128 + signum)

    return {sig: signal.signal(sig, terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}


_SPAWNING: list = []  # non-empty while a child is started and recorded; then its signals


@contextlib.contextmanager
def _recorded_before_exit():
    """Hold back on_termination's exit until the child being started is on record."""
    _SPAWNING.append(None)
    try:
        yield
    finally:
        held = [s for s in _SPAWNING if s is not None]
        _SPAWNING.clear()
        if held:
            raise SystemExit(128 + held[0])


@contextlib.contextmanager
def _job_app(workdir: Path, run: RunConfig, clientapp: str):
    """A Flower app directory of the job's own: jobs submitted at once never share one."""
    (workdir / "apps").mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="job-", dir=workdir / "apps"))
    try:
        yield write_app_dir(path, run, clientapp)
    finally:
        shutil.rmtree(path, ignore_errors=True)
