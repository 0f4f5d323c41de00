"""Emulated links: `fedslim deploy up --link` puts each SuperNode in a network namespace
behind a rate-shaped veth pair, and `down` removes exactly what it made."""

import csv
import subprocess

import pytest
from typer.testing import CliRunner

from fedslim.cli import cli
from fedslim.deploy.links import check_rights

pytestmark = pytest.mark.slow


def _rights() -> str | None:
    try:
        check_rights()
    except RuntimeError as exc:
        return str(exc)
    return None


def _ours() -> list[str]:
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in names.splitlines() if line.startswith("fs-")]


@pytest.mark.skipif(_rights() is not None, reason=f"no rights to make namespaces: {_rights()}")
def test_supernodes_behind_emulated_links_train_and_down_removes_the_namespaces(tmp_path):
    work, runner = tmp_path / "fed", CliRunner()
    before = set(_ours())
    up = runner.invoke(cli, ["deploy", "up", "--dir", str(work), "--nodes", "2", "--link", "3g",
                             "--node-config", "1:link=wifi"])  # fmt: skip
    try:
        assert up.exit_code == 0, up.output
        made = set(_ours()) - before
        assert len(made) == 2
        shaped = subprocess.run(["ip", "netns", "exec", sorted(made)[0], "tc", "qdisc", "show"],
                                capture_output=True, text=True).stdout  # fmt: skip
        assert "tbf" in shaped and "rate 1Mbit" in shaped  # 3g uplink: 1.0 Mbit/s
        out = tmp_path / "run"
        args = ["deploy", "run", "--dir", str(work), "--out", str(out)]
        for kv in ("num-server-rounds=1", "num-examples=400", "local-steps=2"):
            args += ["--set", kv]
        done = runner.invoke(cli, args)
        assert done.exit_code == 0, done.output
        with (out / "clients.csv").open() as fh:
            assert [r["status"] for r in csv.DictReader(fh)] == ["ok", "ok"]
    finally:
        down = runner.invoke(cli, ["deploy", "down", "--dir", str(work)])
    assert down.exit_code == 0
    assert set(_ours()) == before  # every namespace it made is gone, no other touched


def test_an_unknown_link_is_refused_before_anything_starts(tmp_path):
    out = CliRunner().invoke(cli, ["deploy", "up", "--dir", str(tmp_path), "--link", "dialup"])
    assert out.exit_code == 2 and "known:" in out.output
    assert not list(tmp_path.iterdir())
