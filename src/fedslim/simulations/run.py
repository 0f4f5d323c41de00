"""One federation on Flower's Simulation Engine (Ray backend), from a validated config.

Flower's public ``run_simulation`` hands the apps an empty run config. We instead give
the engine a throw-away app directory whose ``pyproject.toml`` holds the resolved run
config, exactly as ``flwr run`` would from a FAB, so both paths feed the ClientApp
through ``Context.run_config`` and nothing else.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from ..config import EngineConfig, RunConfig
from ..config.app_dir import write_app_dir

Reporter = Callable[[str, dict], None]


class _OwnWarningsOnly(logging.Filter):
    """Quiet mode: keep fedslim's warnings (dropped replies, skipped rounds) and errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = f"{os.sep}fedslim{os.sep}" in record.pathname
        return record.levelno >= logging.ERROR or (own and record.levelno >= logging.WARNING)


def _quiet() -> None:
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::UserWarning")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    logger = logging.getLogger("flwr")
    if not any(isinstance(f, _OwnWarningsOnly) for f in logger.filters):
        logger.addFilter(_OwnWarningsOnly())


def _backend(sim: EngineConfig, verbose: bool) -> dict:
    """Ray's settings: one client per ``cpus-per-client`` CPUs, quiet unless verbose; on an
    existing cluster (``ray-address``) its own resources apply."""
    if sim.ray_address:
        init_args: dict = {"address": sim.ray_address}
    else:  # this machine's loopback, never another interface; no dashboard (seconds/start)
        init_args = {"include_dashboard": False, "_node_ip_address": "127.0.0.1"}
    if sim.num_cpus and not sim.ray_address:
        init_args["num_cpus"] = sim.num_cpus
    if not verbose:
        init_args |= {"logging_level": logging.ERROR, "log_to_driver": False}
    return {
        "client_resources": {"num_cpus": sim.cpus_per_client, "num_gpus": sim.gpus_per_client},
        "init_args": init_args,
    }


def simulate(
    run: RunConfig,
    sim: EngineConfig,
    *,
    report: Reporter,
    verbose: bool = False,
    client_app=None,
) -> dict:
    """Run the federation to the end; returns the run summary. Raises on failure.
    ``client_app`` replaces fedslim's ClientApp (e.g. ``client.faults.faulty_app``)."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # runs stay on this machine
    from flwr.serverapp import ServerApp

    from ..client.app import app as default_client
    from ..flower_internals.simulation import run_with_config
    from ..server.app import run_server
    from .pricing import check, make_clock

    check(run, sim.num_supernodes)  # profiles, mixes and population files, before Ray starts
    summary: dict = {}
    server_app = ServerApp()

    @server_app.main()
    def _main(grid, context) -> None:
        summary.update(run_server(grid, context, report=report, clock=make_clock))

    if not verbose:
        _quiet()
    with tempfile.TemporaryDirectory(prefix="fedslim-app-") as tmp:
        app_dir = write_app_dir(Path(tmp), run)
        run_with_config(
            run.to_mapping(),
            run_id=run.seed + 1,
            num_supernodes=sim.num_supernodes,
            client_app=client_app or default_client,
            server_app=server_app,
            backend_config=_backend(sim, verbose),
            app_dir=str(app_dir),
            verbose=verbose,
        )
    if not summary:
        raise RuntimeError("the simulation ended without results (see --verbose for logs)")
    return summary
