import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedslim.cli import cli
from fedslim.config import ConfigError, RunConfig, parse_assignments, split_config

ROOT = Path(__file__).resolve().parents[1]

BAD = [  # (values, key named in the error)
    ({"lora-rank": "8"}, "lora-rank"),
    ({"num-server-rounds": "0"}, "num-server-rounds"),
    ({"num-server-rounds": "two"}, "num-server-rounds"),
    ({"fraction-train": "1.5"}, "fraction-train"),
    ({"lr": "-1"}, "lr"),
    ({"partition": "dirichlet:0"}, "partition"),
    ({"partition": "pathological"}, "partition"),
    ({"task": "text-cls:/no/such/file.csv"}, "task"),
    ({"task": "imagenet"}, "task"),
    ({"model": "/no/such/model"}, "model"),
    ({"model": "package:no_such_model_package"}, "model"),
    ({"seed": "-1"}, "seed"),
    ({"lr": "inf"}, "lr"),
    ({"lr": "nan"}, "lr"),
    ({"round-timeout-s": "inf"}, "round-timeout-s"),
    ({"partition": "shards:0"}, "partition"),
    ({"lora-r": "100000"}, "lora-r"),
    ({"num-examples": str(10**12)}, "num-examples"),
    ({"resume": "maybe"}, "resume"),
    ({"num-supernodes": "0"}, "num-supernodes"),
    ({"target-accuracy": "1.5"}, "target-accuracy"),
    ({"uplink-codec": "topk:0"}, "uplink-codec"),
    ({"downlink-codec": "zstd|q4"}, "downlink-codec"),
    ({"error-feedback": "sometimes"}, "error-feedback"),
    ({"uplink-gains": "mean"}, "uplink-gains"),
    ({"strategy": "fedavg", "server-lr": "0.1"}, "server-lr"),  # ignored by fedavg
    ({"strategy": "fedadam", "proximal-mu": "0.1"}, "proximal-mu"),
    ({"strategy": "krum", "byzantine-clients": "1"}, "min-train-clients"),
    ({"strategy": "fedmedian", "lora-ranks": "4,8"}, "lora-ranks"),
    ({"strategy": "exact", "lora-ranks": "4,8"}, "lora-ranks"),
    ({"tracker": "wandb"}, "tracker"),
]


@pytest.mark.parametrize(("values", "key"), BAD)
def test_bad_config_names_the_key(values, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        split_config(values)


def test_unknown_key_lists_accepted_keys():
    with pytest.raises(ConfigError, match="accepted keys: .*lora-r"):
        split_config({"lora-rank": 4})


def test_strings_are_typed_by_the_schema():
    run, sim = split_config(parse_assignments(["lr=0.1", "resume=true", "num-supernodes=3"]))
    assert run.task.lr == 0.1 and run.resume is True and sim.num_supernodes == 3


def test_pyproject_defaults_match_the_dataclass():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["tool"]["flwr"]["app"]["config"] == RunConfig.of().to_mapping()


def test_cli_fails_before_starting_on_bad_config(tmp_path):
    result = CliRunner().invoke(cli, ["simulate", "--set", "lora-r=0", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "lora-r" in result.output
    assert not any(tmp_path.iterdir())  # nothing started, nothing written


def test_cli_rejects_malformed_assignment():
    result = CliRunner().invoke(cli, ["simulate", "--set", "lr"])
    assert result.exit_code == 2 and "KEY=VALUE" in result.output


def test_a_strategy_owns_its_options_and_the_record_keeps_only_those_it_reads():
    fedavgm = RunConfig.of(strategy="fedavgm")
    assert fedavgm.record()["server-momentum"] == 0.5 and "proximal-mu" not in fedavgm.record()
    assert "server-momentum" not in RunConfig.of().record()
    assert RunConfig.of(strategy="fedprox", proximal_mu=0.2).strategy.client_options() == {
        "proximal-mu": 0.2
    }
    assert RunConfig.of().strategy.client_options() == {}
    from fedslim.strategies.catalog import train_args

    assert train_args({"proximal-mu": 0.2}) == {"proximal_mu": 0.2}  # what the client runs
    with pytest.raises(ValueError, match="unknown client option 'server-lr'"):
        train_args({"server-lr": 0.1})  # the server's alone


def test_capabilities_replace_strategy_names():
    from fedslim.strategies.catalog import STRATEGIES

    assert [n for n, s in STRATEGIES.items() if s.freezes_a] == ["ffa"]
    assert [n for n, s in STRATEGIES.items() if s.base_residual] == ["exact"]
    mixers = {n for n, s in STRATEGIES.items() if s.one_rank is None}
    assert mixers == {"fedavg", "fedavgm", "fedadam", "fedyogi", "fedprox"}


def test_flat_mapping_round_trips_and_replace_revalidates():
    cfg = RunConfig.of(lora_r=4, strategy="fedadam", server_lr=0.05, uplink_codec="q8")
    assert RunConfig.from_mapping(cfg.to_mapping()) == cfg
    assert cfg.adapter.lora_r == 4 and cfg.codecs.uplink == "q8"
    with pytest.raises(ConfigError, match="'lora-r'"):
        cfg.replace(lora_r=0)


def test_types_come_from_the_declaration_not_the_default():
    run, _ = split_config({"lora-alpha": "16.5", "seed": "7"})
    assert run.adapter.lora_alpha == 16.5 and run.seed == 7
    with pytest.raises(ConfigError, match="'seed'"):
        split_config({"seed": "7.5"})


def test_an_existing_run_is_never_overwritten_silently(tmp_path):
    (tmp_path / "rounds.csv").write_text("round\n0\n")
    result = CliRunner().invoke(cli, ["simulate", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--resume" in result.output and "--overwrite" in result.output
    assert (tmp_path / "rounds.csv").read_text() == "round\n0\n"  # untouched
    from fedslim.server.results import claim

    claim(tmp_path, resume=False, overwrite=True)  # on purpose: the old files go
    assert not (tmp_path / "rounds.csv").exists()
    with pytest.raises(ConfigError, match="'overwrite'"):
        split_config({"resume": "true", "overwrite": "true", "out": str(tmp_path)})


def test_default_results_directories_are_unique():
    from fedslim.server.results import default_out

    assert len({default_out() for _ in range(50)}) == 50


def test_a_recorded_config_differs_only_where_the_experiment_does(tmp_path, monkeypatch):
    """A key added since the record counts as its default; a file named by another
    spelling of its path is the same file; another file is another experiment."""
    from fedslim.config import RunConfig

    monkeypatch.chdir(tmp_path)
    for name in ("pop.csv", "other.csv"):
        (tmp_path / name).write_text("partition,device,link\n0,laptop,wifi\n")
    cfg = RunConfig.of(population=str(tmp_path / "pop.csv"))
    saved = {k: v for k, v in cfg.record().items() if k != "secagg"}  # recorded before it
    assert cfg.differences(saved | {"population": "pop.csv"}) == []
    assert cfg.differences(saved | {"population": "./other.csv"}) == ["population"]
    assert cfg.differences(saved | {"population": "gone.csv"}) == ["population"]
    assert cfg.differences(saved | {"seed": 9}) == ["seed"]
    auto = cfg.replace(uplink_codec="auto")
    before = {k: v for k, v in auto.record().items() if k != "uplink-gains"}
    assert auto.differences(before | {"population": "pop.csv"}) == []  # "own", as before it
    matched = auto.replace(uplink_gains="match")
    assert matched.differences(before | {"population": "pop.csv"}) == ["uplink-gains"]
    assert "uplink-gains" not in cfg.record()  # one pipeline for all: the key is not read
