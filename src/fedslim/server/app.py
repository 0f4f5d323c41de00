"""Flower ServerApp: the round loop, central evaluation, checkpoints and results.

The loop is ours rather than ``Strategy.start`` so that rounds are numbered absolutely
(a resumed run continues at round k+1 with the same seeds and sampling), and so that
every round is evaluated, checkpointed and written before the next one starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from logging import INFO, WARNING
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from ..adapter import Adapter
from ..client.workload import initial_global, run_model, run_task
from ..config import RunConfig
from ..ledger import ClientRow, RoundRow, from_dict, to_dict
from ..strategies.clock import Clock
from ..strategies.secure import check_clients
from ..strategies.state import export_state
from ..task.models import build_tokenizer
from ..task.residual import load_global
from ..task.train import evaluate
from ..vectors import layout
from . import build, checkpoint, results
from .discovery import admit, discover
from .privacy import PrivacyLedger
from .rounds import play_round
from .tracking import open_tracker

# (event, payload): "start" (dict) | "round" (a RoundRow) | "end" (the summary dict)
Reporter = Callable[[str, Any], None]

app = ServerApp()


def _log_reporter(event: str, payload: Any) -> None:
    if event == "round":
        log(
            INFO,
            "round %d: accuracy %.4f loss %.4f uplink %d B downlink %d B",
            payload.round,
            payload.accuracy,
            payload.loss,
            payload.uplink_bytes,
            payload.downlink_bytes,
        )


@app.main()
def main(grid: Grid, context: Context) -> None:
    run_server(grid, context, report=_log_reporter)


def resolve_out(cfg: RunConfig) -> Path:
    return Path(cfg.out) if cfg.out else results.default_out()


@dataclass
class History:
    """The ledger so far: what the CSVs hold and a checkpoint carries."""

    rounds: list[RoundRow] = field(default_factory=list)
    clients: list[ClientRow] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "rounds": [to_dict(r) for r in self.rounds],
            "clients": [to_dict(r) for r in self.clients],
        }

    @classmethod
    def from_json(cls, data: dict) -> History:
        return cls(
            [from_dict(RoundRow, r) for r in data.get("rounds", [])],
            [from_dict(ClientRow, r) for r in data.get("clients", [])],
        )


ClockFactory = Callable[[RunConfig, Any, dict[int, int]], Clock]  # (cfg, model, partitions)


def run_server(
    grid: Grid,
    context: Context,
    report: Reporter = _log_reporter,
    clock: ClockFactory | None = None,
) -> dict:
    """Run the configured rounds; ``clock`` (the simulator's) prices every client-round."""
    return _Run(grid, RunConfig.from_mapping(context.run_config), report, clock).play()


class _Run:
    """One run on the server: setup, then a round at a time. The loop plays rounds; what
    follows a round (evaluation, the privacy ledger, tables and checkpoint, the tracker,
    the reporter, the target) is a list of callbacks on its row, so round 0 and every
    later round pass through the same ones."""

    def __init__(self, grid: Grid, cfg: RunConfig, report: Reporter, clock) -> None:
        self.grid, self.cfg, self.report = grid, cfg, report
        self.out = resolve_out(cfg)
        results.claim(self.out, resume=cfg.resume, overwrite=cfg.overwrite)
        self.task = run_task(cfg)
        self.model = run_model(cfg, self.task)
        self.tok = build_tokenizer(cfg.adapter.model)
        self.initial = initial_global(cfg, self.model)
        self.adapter, self.history, self.start, server_state = (
            Adapter.of(self.initial), History(), 0, {}
        )  # fmt: skip
        if cfg.resume:
            self.adapter, self.history, self.start, server_state = _resume(
                self.out, cfg, self.initial
            )
        t0 = time.monotonic()
        self.nodes = discover(grid, cfg)
        clients = len(self.nodes.partitions)
        self.privacy = PrivacyLedger(cfg, clients, self.history.rounds) if cfg.privacy.on else None
        self.strategy = build.strategy(
            cfg, self.model, self.initial, self.task, self.nodes, server_state,
            clock(cfg, self.model, self.nodes.partitions) if clock else None,
        )  # fmt: skip
        self.strategy.dp = self.privacy.mechanism if self.privacy else None
        if cfg.privacy.secagg:
            check_clients(clients, cfg.rounds.fraction_train, cfg.rounds.min_train_clients)
            self.strategy.secure = build.secure(grid, cfg, self.strategy.dp, self.history.rounds)
        self.startup_s = time.monotonic() - t0
        self.tracker = open_tracker(cfg.tracker, self.out, cfg.record(), cfg.resume)
        # each returns why the run stops after this round, or None
        self.callbacks: list[Callable[[RoundRow, list[ClientRow]], str | None]] = [
            self._evaluate,
            *([self._account] if self.privacy else []),
            self._persist,
            *([self._track] if self.tracker else []),
            self._report,
            self._target,
        ]

    def play(self) -> dict:
        try:
            return self._play()
        finally:
            if self.tracker:
                self.tracker.close()

    def _play(self) -> dict:
        cfg = self.cfg
        self.report("start", self._start_info())
        stop = self._close(RoundRow.of(0, [], 0.0), []) if self.start == 0 else None
        for rnd in range(self.start + 1, cfg.rounds.num_server_rounds + 1):
            stop = stop or self._over_budget(rnd)
            if stop:
                break
            new, rows, seconds = self._round(rnd)
            if new is not None:
                self.adapter = new
            totals = self.strategy.clock.totals(rows)
            elapsed = self.history.rounds[-1].sim_elapsed_s + totals.get("sim_round_s", 0.0)
            row = RoundRow.of(rnd, rows, seconds, sim_elapsed_s=elapsed, **totals)
            row.sampled = len(self.strategy.asked)
            if self.strategy.secure is not None:  # the next round's clip (adaptive: resumed)
                row.dp_clip = self.strategy.secure.dp.clip
            stop = self._close(row, rows)
        if stop:
            log(INFO, "%s", stop)
        extra = {"adapter_params": self.adapter.size, "nodes": len(self.nodes.partitions)}
        if self.privacy:
            extra["privacy"] = self.privacy.summary()
        summary = results.write_summary(self.out, self.history.rounds, cfg.record(), extra)
        self.report("end", summary)
        return summary

    def _round(self, rnd: int) -> tuple[Adapter | None, list[ClientRow], float]:
        admit(self.grid, self.cfg, self.nodes, self.strategy.views.all_ranks())
        timeout = self.cfg.rounds.round_timeout_s
        new, rows, seconds = play_round(self.strategy, self.grid, rnd, self.adapter, timeout)
        if new is None:
            dropped = sum(not r.ok for r in rows)
            log(WARNING, "round %d skipped: no valid reply (%d dropped)", rnd, dropped)
        return new, rows, seconds

    def _close(self, row: RoundRow, rows: list[ClientRow]) -> str | None:
        """Every callback on the round's row, in order; the first reason to stop."""
        self.history.rounds.append(row)
        self.history.clients.extend(rows)
        reasons = [callback(row, rows) for callback in self.callbacks]
        return next((r for r in reasons if r), None)

    def _over_budget(self, rnd: int) -> str | None:
        over = self.privacy.exceeded_by_next() if self.privacy else None
        if over is None:
            return None
        self.privacy.stopped = True
        return (
            f"stopped before round {rnd}: epsilon would reach {over:.3f}, over the budget "
            f"dp-epsilon={self.cfg.privacy.dp_epsilon:g}"
        )

    # ---- the callbacks ------------------------------------------------------------------
    def _evaluate(self, row: RoundRow, rows: list[ClientRow]) -> None:
        t0 = time.monotonic()
        load_global(self.model, self.adapter.arrays())
        metrics = evaluate(self.model, self.task, self.tok, max_length=self.cfg.task.max_length)
        row.accuracy, row.loss = metrics["accuracy"], metrics["loss"]
        row.eval_s = time.monotonic() - t0

    def _account(self, row: RoundRow, rows: list[ClientRow]) -> None:
        self.privacy.record(row)  # round 0: epsilon 0, nothing released yet

    def _persist(self, row: RoundRow, rows: list[ClientRow]) -> None:
        results.write_tables(self.out, self.history.rounds, self.history.clients)
        server = export_state(self.strategy.inner) if row.round else {}
        ckpt = checkpoint.Checkpoint(
            row.round, self.adapter.arrays(), self.cfg.record(), self.history.to_json(), server
        )
        checkpoint.save(self.out / "checkpoint", ckpt)

    def _track(self, row: RoundRow, rows: list[ClientRow]) -> None:
        self.tracker.log(row, rows)

    def _report(self, row: RoundRow, rows: list[ClientRow]) -> None:
        self.report("round", row)

    def _target(self, row: RoundRow, rows: list[ClientRow]) -> str | None:
        target = self.cfg.rounds.target_accuracy if self.cfg.rounds.stop_at_target else 0.0
        if row.round and target and row.accuracy >= target:
            return f"target accuracy {row.accuracy:.4f} reached in round {row.round}"
        return None

    def _start_info(self) -> dict:
        return {
            "out": str(self.out),
            "nodes": len(self.nodes.partitions),
            "start_round": self.start,
            "num_rounds": self.cfg.rounds.num_server_rounds,
            "adapter_params": self.adapter.size,
            "startup_s": self.startup_s,
        }


def _resume(out: Path, cfg: RunConfig, initial: dict) -> tuple[Adapter, History, int, dict]:
    """(adapter, history, round, server state) of the checkpoint in ``out``."""
    ckpt = checkpoint.load(out / "checkpoint")
    _check_resumable(ckpt.config, cfg)
    if layout(ckpt.adapter) != layout(initial):
        raise ValueError("--resume: checkpointed adapter does not fit this model")
    log(INFO, "resuming from round %d in %s", ckpt.round, out)
    history = History.from_json(ckpt.history)
    return Adapter.of(ckpt.adapter), history, ckpt.round, ckpt.server


# Keys that may change when resuming; any other change would make the result a
# different experiment, so it is refused.
RESUMABLE_CHANGES = {"num-server-rounds", "resume", "out", "target-accuracy"}


def _check_resumable(saved: dict, cfg: RunConfig) -> None:
    changed = [k for k in cfg.differences(saved) if k not in RESUMABLE_CHANGES]
    if changed:
        key = changed[0]
        was = saved.get(key, RunConfig().to_mapping()[key])  # a key added since: its default
        raise ValueError(
            f"--resume: config key '{key}' differs from the checkpoint "
            f"({was!r} -> {cfg.record()[key]!r}; --set {key}={was} continues it)"
        )
