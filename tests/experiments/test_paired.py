"""Paired per-seed comparisons of time to target (the report's arithmetic, no federation)."""

import math

import pytest

from fedslim.errors import ConfigError
from fedslim.experiments import paired, report
from fedslim.ledger import RoundRow


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
    assert by["b"].ratios == pytest.approx((1.1, 1.1, 1.1))
    # the same 10% on every seed: no spread, a tight interval that excludes 1
    assert by["b"].geomean == pytest.approx(1.1) and by["b"].verdict == "slower"
    assert by["b"].seeds_to_resolve == 2
    # c halves one seed and doubles another: equal on the geometric mean, unresolved
    assert by["c"].geomean == pytest.approx(1.0, abs=0.03)
    assert by["c"].low < 0.2 and by["c"].high > 5 and by["c"].verdict == "not resolved"
    assert by["c"].seeds_to_resolve > 100


def test_a_small_steady_difference_is_within_the_margin():
    runs = _runs(a=[100, 200, 150, 120], b=[101, 201, 150, 121])
    (p,) = paired.pairings(runs)
    assert p.verdict == "within 5%" and 1.0 < p.geomean < 1.01


def test_a_run_that_never_reached_is_a_floor_and_no_baseline():
    runs = _runs(a=[100, 200], b=[90, 190])
    runs += [_run("c", 0, 300, reached=False), _run("c", 1, 250, reached=False)]
    runs += [_run("d", 0, 50), _run("d", 1, 500, reached=False)]
    by = {p.configuration: p for p in paired.pairings(runs)}
    assert by["a"].baseline == "b"  # c's 250 s floor is less than b's time, d never whole
    assert by["c"].censored == (True, True) and by["c"].geomean is None
    assert by["c"].verdict == "slower (did not reach)"
    assert by["d"].verdict == "did not reach"
    text = paired.markdown(list(by.values()))
    assert ">3.33x" in text and "| d |" in text


def test_a_named_baseline_and_a_one_seed_probe():
    runs = _runs(a=[100, 200], b=[90, 190]) + [_run("probe", 0, 10)]
    by = {p.configuration: p for p in paired.pairings(runs, baseline="a")}
    assert by["b"].verdict in ("faster", "not resolved") and by["b"].geomean < 1
    assert by["probe"].seeds == (0,) and by["probe"].verdict == "one seed: not resolved"
    assert paired.fastest(paired.times(runs)) == "b"  # the probe ran fewer seeds
    with pytest.raises(ConfigError, match="'z'.*'a', 'b', 'probe'"):
        paired.pairings(runs, baseline="z")


def test_seeds_to_resolve_follow_the_spread():
    # a log-spread of 0.2 (a seed moving by one round in five) needs ~70 seeds for +-5%
    n = paired.seeds_to_resolve(0.2)
    assert 60 < n < 80
    assert paired.t975(n - 1) * 0.2 / math.sqrt(n) <= math.log(1.05)
    assert paired.t975(n - 2) * 0.2 / math.sqrt(n - 1) > math.log(1.05)


def test_fedslim_report_writes_the_pairing_against_a_named_baseline(tmp_path):
    """A stored sweep's directory, as `fedslim sweep --repeat 2` leaves it."""
    import json

    from typer.testing import CliRunner

    from fedslim.cli import cli
    from fedslim.ledger import ClientRow, RoundRow, write_csv

    index = []
    for label, seconds in (("uplink-codec=none", (100, 200)), ("uplink-codec=sign", (80, 170))):
        for seed, t in enumerate(seconds):
            directory = tmp_path / "runs" / f"{label}-r{seed}"
            directory.mkdir(parents=True)
            rows = [RoundRow(0, 0.2), RoundRow(1, 0.85, sim_elapsed_s=t)]
            write_csv(directory / "rounds.csv", rows, RoundRow)
            write_csv(directory / "clients.csv", [ClientRow(round=1, client=0)], ClientRow)
            summary = {"to_target": {"round": 1, "sim_s": t, "energy_j": 1.0, "cost_usd": 0.0,
                                        "uplink_bytes": 10}}  # fmt: skip
            (directory / "summary.json").write_text(json.dumps(summary))
            index.append(
                {"label": label, "repeat": seed, "dir": str(directory.relative_to(tmp_path))}
            )
    (tmp_path / "sweep.json").write_text(json.dumps(index))
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "against **uplink-codec=sign**" in (tmp_path / "paired.md").read_text()
    assert "1.25x, 1.18x" in result.output  # none against the faster sign, seed by seed
    result = CliRunner().invoke(cli, ["report", str(tmp_path), "--baseline", "uplink-codec=none"])
    assert result.exit_code == 0 and "0.80x, 0.85x" in result.output
    result = CliRunner().invoke(cli, ["report", str(tmp_path), "--baseline", "fp32"])
    assert (
        result.exit_code == 2 and "'fp32'" in result.output and "uplink-codec=none" in result.output
    )
