"""A Simulation Engine run whose apps get the run config, as ``flwr run`` gives it.

Flower's public ``run_simulation`` hands the ServerApp and every ClientApp an empty run
config; fedslim's apps read theirs from it (``RunConfig.from_mapping``), so the run is
made here the way ``flwr run`` makes it, through the private ``_run_simulation``.
"""

from __future__ import annotations

from .check import require


def run_with_config(
    config: dict,
    *,
    run_id: int,
    num_supernodes: int,
    client_app,
    server_app,
    backend_config: dict,
    app_dir: str,
    verbose: bool,
) -> None:
    """Run ``server_app`` with ``num_supernodes`` ``client_app`` nodes on Ray, every app's
    ``context.run_config`` being ``config``."""
    require("simulation-run-config")
    from flwr.app import Context, RecordDict
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.simulation.run_simulation import _run_simulation
    from flwr.supercore.constant import NOOP_FEDERATION_ID
    from flwr.supercore.run import Run
    from flwr.supercore.task_identity import TaskIdentity
    from flwr.supercore.telemetry import EventType

    flwr_run = Run.create_empty(run_id=run_id)
    flwr_run.primary_task_id = 1
    flwr_run.federation_id = NOOP_FEDERATION_ID
    TaskIdentity.task_id, TaskIdentity.run_id = 1, flwr_run.run_id
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    context = Context(
        run_id=flwr_run.run_id, node_id=0, node_config={}, state=RecordDict(), run_config=config
    )
    _run_simulation(
        num_supernodes=num_supernodes,
        exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
        client_app=client_app,
        server_app=server_app,
        backend_name="ray",
        backend_config=backend_config,
        server_app_context=context,
        app_dir=app_dir,
        run=flwr_run,
        is_app=True,
        verbose_logging=verbose,
    )
