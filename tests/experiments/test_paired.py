"""Paired per-seed comparisons of time to target (the report's arithmetic, no federation)."""

import json
import math

import pytest
from typer.testing import CliRunner

from fedslim.cli import cli
from fedslim.errors import ConfigError
from fedslim.experiments import paired, report
from fedslim.ledger import ClientRow, RoundRow, write_csv


def _run(label: str, seed: int, seconds: float, reached: bool = True) -> report.Run:
    rows = [RoundRow(0, 0.2), RoundRow(1, 0.85 if reached else 0.7, sim_elapsed_s=seconds)]
    summary = {"to_target": {"round": 1, "sim_s": seconds}} if reached else {"to_target": None}
    return report.Run(label, rows, summary, 10.0, seed)


def _runs(**times):
    return [_run(label, s, t) for label, ts in times.items() for s, t in enumerate(ts)]


def test_the_fastest_is_the_baseline_and_ratios_pair_seed_by_seed():
    runs = _runs(a=[100, 200, 150], b=[110, 220, 165], c=[50, 400, 160])
    by = {p.configuration: p for p in paired.pairings(runs)}
    assert set(by) == {"b", "c"} and by["b"].baseline == "a"
    assert by["b"].ratios == pytest.approx((1.1, 1.1, 1.1)) and by["b"].seeds == (0, 1, 2)
    # the same 10% on every seed: no spread, a tight interval that excludes 1
    assert by["b"].geomean == pytest.approx(1.1) and by["b"].verdict == "slower"
    assert by["b"].seeds_for_width == 2
    # c halves one seed and doubles another: equal on the geometric mean, unresolved
    assert by["c"].geomean == pytest.approx(1.0, abs=0.03)
    assert by["c"].low < 0.2 and by["c"].high > 5 and by["c"].verdict == "not resolved"
    assert by["c"].seeds_for_width > 100


@pytest.mark.parametrize(
    ("times", "verdict"),
    [
        ([101, 199, 151, 120], "within 5%"),  # 1%, 0.5% faster, ...: the interval holds 1
        ([101, 202, 151.5, 121.2], "slower, within 5%"),  # 1% slower on every seed
        ([98, 195, 147, 118], "faster, within 5%"),  # 1.7-2.5% faster
        ([92, 210, 140, 118], "not resolved"),  # 0.88-1.07x: past both margins
        # 0.91-1.02x: the interval holds 1 and not 1.05, a one-sided claim (non-inferiority)
        ([96, 190, 139, 121], "at most 5% slower"),
        ([103, 215, 150, 130], "at most 5% faster"),  # 0-8% slower: the mirror
    ],
)
def test_the_verdict_tells_a_side_and_the_margin_apart(times, verdict):
    (p,) = paired.pairings(_runs(a=[100, 200, 150, 120], b=times), baseline="a")
    assert p.verdict == verdict


def test_a_run_that_never_reached_is_a_floor_and_no_baseline():
    runs = _runs(a=[100, 200], b=[90, 190])
    runs += [_run("c", 0, 300, reached=False), _run("c", 1, 250, reached=False)]
    runs += [_run("d", 0, 50), _run("d", 1, 500, reached=False)]
    by = {p.configuration: p for p in paired.pairings(runs)}
    assert by["a"].baseline == "b"  # c's 250 s floor is less than b's time, d never whole
    assert by["c"].censored == (True, True) and by["c"].geomean is None
    assert by["c"].verdict == "slower on every seed (2 of 2 did not reach)"
    assert by["d"].verdict == "1 of 2 did not reach: not resolved"
    text = paired.markdown(list(by.values()))
    assert ">3.33x" in text and "| d |" in text
    with pytest.raises(ConfigError, match="'d' did not reach the target on every seed"):
        paired.pairings(runs, baseline="d")


def test_a_named_baseline_a_probe_and_seeds_not_shared():
    runs = _runs(a=[100, 200], b=[90, 190]) + [_run("probe", 0, 10), _run("late", 5, 10)]
    by = {p.configuration: p for p in paired.pairings(runs, baseline="a")}
    assert by["b"].verdict == "not resolved" and by["b"].geomean < 1
    assert by["probe"].seeds == (0,) and by["probe"].verdict == "one seed: not resolved"
    assert by["late"].verdict == "no common seed"
    assert paired.fastest(paired.times(runs)) == "b"  # the probes ran fewer seeds
    with pytest.raises(ConfigError, match="'z'.*'a', 'b', 'probe'"):
        paired.pairings(runs, baseline="z")


def test_runs_pair_by_the_seed_they_ran_not_their_position():
    runs = _runs(a=[100, 200], b=[110, 220])
    runs[2].summary["config"] = {"seed": 1}  # b's repeat 0 ran seed 1, and its repeat 1 seed 0
    runs[3].summary["config"] = {"seed": 0}
    (p,) = paired.pairings(runs, baseline="a")
    assert p.ratios == pytest.approx((2.2, 0.55))
    runs[3].summary["config"] = {"seed": 1}
    with pytest.raises(ValueError, match="'b' ran seed 1 twice"):
        paired.pairings(runs)


def test_the_crossing_is_linear_between_the_evaluations_around_the_target():
    rows = [RoundRow(0, 0.2), RoundRow(1, 0.7, sim_elapsed_s=10.0),
            RoundRow(2, 0.85, sim_elapsed_s=20.0)]  # fmt: skip
    summary = {"to_target": {"round": 2, "sim_s": 20.0}, "config": {"target-accuracy": 0.8}}
    run = report.Run("a", rows, summary, 10.0, 0)
    assert paired.crossing(run) == pytest.approx(10 + 10 * 0.1 / 0.15)
    # one round apart by the round rule (0.799 against 0.805 at round 8), 1% at the crossing
    config = {"config": {"target-accuracy": 0.8, "seed": 3}}
    early = [RoundRow(7, 0.685, sim_elapsed_s=70.0), RoundRow(8, 0.805, sim_elapsed_s=80.0)]
    late = [RoundRow(8, 0.799, sim_elapsed_s=80.0), RoundRow(9, 0.823, sim_elapsed_s=90.0)]
    runs = [
        report.Run("early", early, {"to_target": {"round": 8, "sim_s": 80.0}, **config}, 1.0),
        report.Run("late", late, {"to_target": {"round": 9, "sim_s": 90.0}, **config}, 1.0),
    ]
    (by_round,) = paired.pairings(runs, baseline="early")
    (crossed,) = paired.pairings(runs, baseline="early", interpolate=True)
    assert by_round.ratios == pytest.approx((1.125,))
    assert crossed.ratios == pytest.approx(((80 + 10 / 24) / (70 + 10 * 0.115 / 0.12),))
    assert crossed.ratios[0] < 1.011
    # rows that cannot place it (no target in the config, no evaluation before): the round's end
    assert paired.crossing(report.Run("a", rows, {"to_target": summary["to_target"]}, 1.0)) == 20
    rows[1] = RoundRow(1, math.nan, sim_elapsed_s=10.0)
    assert paired.crossing(run) == 20


def test_t_quantiles_and_the_seeds_for_a_width():
    assert paired.t975(1) == 12.706 and paired.t975(30) == 2.042
    assert paired.t975(60) == pytest.approx(2.000, abs=1e-3)  # Cornish-Fisher past the table
    assert paired.t975(31) < paired.t975(30)
    with pytest.raises(ValueError):
        paired.t975(0)
    # a log-spread of 0.2 (a seed moving by one round in five) needs ~67 seeds for +-5%
    n = paired.seeds_for_width(0.2)
    assert 60 < n < 75
    assert paired.t975(n - 1) * 0.2 / math.sqrt(n) <= math.log(1.05)
    assert paired.t975(n - 2) * 0.2 / math.sqrt(n - 1) > math.log(1.05)
    assert paired.markdown([]).startswith("Nothing to pair")


def test_fedslim_report_writes_the_pairing_against_a_named_baseline(tmp_path):
    """A stored sweep's directory, as `fedslim sweep --repeat 2` leaves it."""
    index = []
    for label, seconds in (("uplink-codec=none", (100, 200)), ("uplink-codec=sign", (80, 170))):
        for seed, t in enumerate(seconds):
            directory = tmp_path / "runs" / f"{label}-r{seed}"
            directory.mkdir(parents=True)
            reached = 0.85 if label.endswith("none") or seed else 0.9  # sign's seed 0 leaps
            rows = [RoundRow(0, 0.2), RoundRow(1, reached, sim_elapsed_s=t)]
            write_csv(directory / "rounds.csv", rows, RoundRow)
            write_csv(directory / "clients.csv", [ClientRow(round=1, client=0)], ClientRow)
            summary = {"to_target": {"round": 1, "sim_s": t, "energy_j": 1.0, "cost_usd": 0.0,
                                        "uplink_bytes": 10},
                       "config": {"target-accuracy": 0.8, "seed": seed}}  # fmt: skip
            (directory / "summary.json").write_text(json.dumps(summary))
            index.append(
                {"label": label, "repeat": seed, "dir": str(directory.relative_to(tmp_path))}
            )
    (tmp_path / "sweep.json").write_text(json.dumps(index))
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "paired.md").read_text()
    assert "over **uplink-codec=sign**'s" in text
    # at the crossing: none's seed 0 crosses 0.8 at 0.6/0.65 of its round, sign's at 0.6/0.7
    crossing = text.split("**At the crossing:**")[1]
    assert "over **uplink-codec=sign**'s" in crossing
    assert f"{(100 * 0.6 / 0.65) / (80 * 0.6 / 0.7):.2f}x, 1.18x" in crossing
    assert "1.25x, 1.18x" in result.output  # none against the faster sign, seed by seed
    result = CliRunner().invoke(cli, ["report", str(tmp_path), "--baseline", "uplink-codec=none"])
    assert result.exit_code == 0 and "0.80x, 0.85x" in result.output
    stamp = (tmp_path / "table.md").stat().st_mtime_ns
    result = CliRunner().invoke(cli, ["report", str(tmp_path), "--baseline", "fp32"])
    assert result.exit_code == 2 and "'fp32'" in result.output
    assert "uplink-codec=none" in result.output
    assert (tmp_path / "table.md").stat().st_mtime_ns == stamp  # refused before writing
    # one repeat a configuration: no pairing, and the stale paired.md goes
    (tmp_path / "sweep.json").write_text(json.dumps(index[::2]))
    assert CliRunner().invoke(cli, ["report", str(tmp_path)]).exit_code == 0
    assert not (tmp_path / "paired.md").exists()
