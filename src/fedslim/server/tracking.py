"""Each round's ledger where researchers look (``tracker = tensorboard | mlflow``).

Fed from the same rows as ``rounds.csv`` and ``clients.csv``, by the server loop after
every round, so simulations, sweeps and deployments log alike. The common convention:
one run per job, step = server round, the round's columns under their ledger names
(``accuracy``, ``loss``, ``uplink_bytes``, ``sim_elapsed_s``, ...) and one series per
client (``client/<id>/<column>``). TensorBoard writes to ``OUT/tensorboard``; MLflow to
``MLFLOW_TRACKING_URI`` if set, else a SQLite store ``OUT/mlflow.db`` (MLflow 3 keeps
its file store in maintenance mode), experiment ``fedslim``, the run named after ``OUT``
with the run config as its parameters. A resumed run continues the same series.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Protocol

from ..ledger import ClientRow, RoundRow, to_dict

CLIENT_COLUMNS = ("train_loss", "uplink_bytes", "downlink_bytes", "sim_s", "energy_j")
_RUN_ID = "mlflow-run-id"  # in OUT: the run a resumed job continues


class Tracker(Protocol):
    def log(self, row: RoundRow, clients: list[ClientRow]) -> None: ...

    def close(self) -> None: ...


def scalars(row: RoundRow, clients: list[ClientRow]) -> dict[str, float]:
    """The round's columns and each identified client's, finite numbers only."""
    out = {k: float(v) for k, v in to_dict(row).items() if k != "round"}
    for c in clients:
        if c.client >= 0:
            out |= {f"client/{c.client}/{k}": float(getattr(c, k)) for k in CLIENT_COLUMNS}
    return {k: v for k, v in out.items() if math.isfinite(v)}


def open_tracker(kind: str, out: Path, params: dict[str, Any], resume: bool) -> Tracker | None:
    if kind == "tensorboard":
        return TensorBoard(out)
    if kind == "mlflow":
        return MLflow(out, params, resume)
    return None


class TensorBoard:
    def __init__(self, out: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out / "tensorboard"))

    def log(self, row: RoundRow, clients: list[ClientRow]) -> None:
        for key, value in scalars(row, clients).items():
            self.writer.add_scalar(key, value, row.round)
        self.writer.flush()  # a run read while it goes on shows every finished round

    def close(self) -> None:
        self.writer.close()


class MLflow:
    def __init__(self, out: Path, params: dict[str, Any], resume: bool) -> None:
        from mlflow import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(out / 'mlflow.db').resolve()}"
        self.client = MlflowClient(uri)
        marker = out / _RUN_ID
        if resume and marker.exists():
            self.run_id = marker.read_text().strip()
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment = self.client.get_experiment_by_name("fedslim")
        eid = experiment.experiment_id if experiment else self.client.create_experiment("fedslim")
        self.run_id = self.client.create_run(eid, run_name=out.name).info.run_id
        marker.write_text(self.run_id)
        from mlflow.entities import Param

        pairs = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for at in range(0, len(pairs), 100):  # MLflow takes at most 100 a batch
            self.client.log_batch(self.run_id, params=pairs[at : at + 100])

    def log(self, row: RoundRow, clients: list[ClientRow]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, row.round) for k, v in scalars(row, clients).items()]
        for at in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[at : at + 1000])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
