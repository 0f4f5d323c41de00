"""A 3-client sweep of 2 x 2 configurations: runs, resumes, and writes its report."""

import csv
import json

import pytest
from typer.testing import CliRunner

from fedslim.cli import cli
from fedslim.config import ConfigError
from fedslim.experiments.sweep import parse_grid, plan

BASE = ["num-supernodes=3", "num-server-rounds=2", "num-examples=300", "local-steps=3",
        "num-cpus=2", "devices=mix:phone-mid=0.5,laptop=0.5", "links=lte"]  # fmt: skip
GRID = ["strategy=fedavg", "strategy=ffa", "uplink-codec=none", "uplink-codec=q4|zstd:3"]


def _args(out, *extra):
    args = ["sweep", "--out", str(out)]
    for g in GRID:
        args += ["--grid", g]
    for s in BASE:
        args += ["--set", s]
    return args + list(extra)


def test_a_sweep_writes_table_pareto_and_figures_and_resumes(tmp_path):
    out = tmp_path / "sweep"
    result = CliRunner().invoke(cli, _args(out))
    assert result.exit_code == 0, result.output
    with (out / "table.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {r["configuration"] for r in rows} == {
        f"strategy={s}, uplink-codec={c}" for s in ("fedavg", "ffa") for c in ("none", "q4|zstd:3")
    }
    assert all(float(r["energy_j"]) > 0 and float(r["sim_s"]) > 0 for r in rows)
    by = {r["configuration"]: r for r in rows}
    compressed = by["strategy=fedavg, uplink-codec=q4|zstd:3"]["uplink_bytes"]
    assert float(compressed) < float(by["strategy=fedavg, uplink-codec=none"]["uplink_bytes"])
    with (out / "pareto.csv").open() as fh:
        front = list(csv.DictReader(fh))
    assert {f["axis"] for f in front} == {"uplink", "time", "energy", "money"}
    for name in ("curves.png", "pareto.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    summaries = sorted(out.glob("runs/*/summary.json"))
    stamps = [p.stat().st_mtime_ns for p in summaries]
    again = CliRunner().invoke(cli, _args(out))  # finished runs are skipped
    assert again.exit_code == 0, again.output
    assert [p.stat().st_mtime_ns for p in summaries] == stamps
    index = json.loads((out / "sweep.json").read_text())
    assert len(index) == 4


def test_a_bad_grid_fails_before_anything_runs(tmp_path):
    result = CliRunner().invoke(cli, ["sweep", "--out", str(tmp_path / "s"), "--grid", "lora-r=x"])
    assert result.exit_code == 2 and "lora-r" in result.output
    assert not (tmp_path / "s").exists()
    result = CliRunner().invoke(
        cli, ["sweep", "--out", str(tmp_path / "s"), "--grid", "devices=pager"]
    )
    assert result.exit_code == 2 and "pager" in result.output
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_grid(["nokey"])


def test_repeats_differ_by_seed_and_values_may_hold_commas(tmp_path):
    planned = plan(parse_grid(["devices=mix:laptop=1,phone-low=1"]), {"seed": "5"}, 2, tmp_path)
    assert [p.run.seed for p in planned] == [5, 6]
    assert planned[0].run.sim.devices == "mix:laptop=1,phone-low=1"


def test_the_report_puts_epsilon_beside_accuracy_and_draws_accuracy_against_it(tmp_path):
    """Rows as a sweep over dp-epsilon and the uplink codec leaves them (no federation:
    the report's own arithmetic); a run without DP has epsilon infinity."""
    import math

    from fedslim.experiments import report
    from fedslim.experiments.figures import privacy
    from fedslim.ledger import RoundRow

    runs = []
    for codec, base in (("none", 0.80), ("q4|zstd:3", 0.78)):
        for eps in (1.0, 4.0, 8.0, math.inf):
            label = f"dp-epsilon={eps:g}, uplink-codec={codec}" if eps < math.inf else (
                f"uplink-codec={codec}")  # fmt: skip
            for seed in range(2):
                acc = base - 0.3 / eps - 0.01 * seed
                spent = eps * (0.9 + 0.1 * seed)
                rows = [RoundRow(0, 0.25, 1.4, epsilon=0.0 if eps < math.inf else math.inf),
                        RoundRow(1, acc, 0.7, uplink_bytes=100, epsilon=spent)]  # fmt: skip
                runs.append(report.Run(label, rows, {}, 10.0))
    rows = report.table(runs)
    by = {r["configuration"]: r for r in rows}
    assert by["dp-epsilon=4, uplink-codec=none"]["epsilon"] == pytest.approx(4.0)  # worst seed
    assert by["uplink-codec=none"]["epsilon"] == math.inf
    assert "| 4 |" in report._markdown(rows)
    path = privacy(rows, tmp_path / "privacy.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("stored", "rounds", "to_target", "want"),
    [
        ({}, 2, None, "done"),  # the same experiment, all its rounds
        ({"num-server-rounds": 1}, 1, None, "extend"),  # fewer rounds, all of them ran
        ({"num-server-rounds": 1}, 1, {"round": 1}, "done"),  # it would stop there again
        ({"num-server-rounds": 1}, 0, None, "run"),  # interrupted before its last round
        ({"num-server-rounds": 3}, 3, None, "run"),  # more rounds than wanted
        ({"num-server-rounds": 1, "lr": 0.5}, 1, None, "run"),  # another experiment
        ({"resume": True}, 2, None, "done"),  # an extended run is the same experiment
    ],
)
def test_a_stored_run_with_fewer_rounds_is_continued_not_restarted(
    tmp_path, stored, rounds, to_target, want
):
    from fedslim.experiments.sweep import progress, run_sweep

    (p,) = plan({}, {"num-server-rounds": "2", "stop-at-target": "true"}, 1, tmp_path)
    p.out.mkdir(parents=True)
    (p.out / "checkpoint").mkdir()
    config = {**p.run.record(), **stored}
    summary = {"config": config, "rounds": rounds, "to_target": to_target}
    (p.out / "summary.json").write_text(json.dumps(summary))
    assert progress(p) == want
    calls = []
    run_sweep([p], tmp_path, simulate=lambda run, sim, report: calls.append(run))
    if want == "done":
        assert calls == []
    else:  # an extension resumes the stored run in place; anything else starts afresh
        (run,) = calls
        assert (run.resume, run.overwrite, run.out) == (want == "extend", want == "run", p.run.out)
