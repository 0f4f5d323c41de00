"""Real federations on Flower's Simulation Engine (Ray backend, loopback only)."""

import csv
import json

import numpy as np
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from fedslim.cli import cli
from fedslim.client.workload import model_spec, run_task
from fedslim.config import EngineConfig, RunConfig
from fedslim.server.checkpoint import latest
from fedslim.simulations.run import simulate
from fedslim.task.adapters import base_fingerprint, get_adapter, set_adapter
from fedslim.task.models import build_base, build_model, build_tokenizer
from fedslim.task.train import evaluate
from fedslim.vectors import layout

SIM = EngineConfig(num_supernodes=2, num_cpus=2)
BASE = dict(num_examples=600, local_steps=15, batch_size=16, lr=1e-2, seed=3)


def _run(out, rounds, **kw):
    events = []
    cfg = RunConfig.of(out=str(out), num_server_rounds=rounds, **BASE, **kw)
    summary = simulate(cfg, SIM, report=lambda e, p: events.append((e, p)))
    return cfg, summary, events


def _rows(path):
    with path.open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "run"
    return out, *_run(out, 2, tracker="tensorboard")


def test_federation_learns_and_writes_results(two_rounds):
    out, cfg, summary, events = two_rounds
    rounds = _rows(out / "rounds.csv")
    assert [int(r["round"]) for r in rounds] == [0, 1, 2]
    assert float(rounds[-1]["accuracy"]) > float(rounds[0]["accuracy"]) + 0.05
    assert float(rounds[-1]["loss"]) < float(rounds[0]["loss"])
    clients = _rows(out / "clients.csv")
    assert len(clients) == 4 and {c["client"] for c in clients} == {"0", "1"}
    assert all(int(c["flops"]) > 0 and int(c["uplink_bytes"]) > 0 for c in clients)
    data = json.loads((out / "summary.json").read_text())
    assert data["final_accuracy"] == pytest.approx(float(rounds[-1]["accuracy"]))
    assert data["total_uplink_bytes"] == sum(int(c["uplink_bytes"]) for c in clients)
    assert data["config"]["lora-r"] == cfg.adapter.lora_r
    assert [e for e, _ in events].count("round") == 3


def test_the_simulator_charges_the_ledger_bytes_and_flops(two_rounds):
    from fedslim.resources.profiles import DEVICES, LINKS

    out, cfg, summary, _ = two_rounds
    laptop, wifi = DEVICES["laptop"], LINKS["wifi"]
    clients = _rows(out / "clients.csv")
    for c in clients:  # the default population: laptops on home WiFi
        assert (c["device"], c["link"]) == ("laptop", "wifi")
        down = wifi.rtt_s / 2 + 8 * int(c["downlink_bytes"]) / (wifi.down_mbps * 1e6)
        up = wifi.rtt_s / 2 + 8 * int(c["uplink_bytes"]) / (wifi.up_mbps * 1e6)
        assert float(c["sim_down_s"]) == pytest.approx(down)  # exactly the message bytes
        assert float(c["sim_up_s"]) == pytest.approx(up)
        assert float(c["sim_compute_s"]) == pytest.approx(int(c["flops"]) / laptop.flops)
        assert float(c["energy_j"]) > 0 and float(c["peak_mem_mb"]) > 300
    rounds = _rows(out / "rounds.csv")
    for r in rounds[1:]:
        mine = [c for c in clients if c["round"] == r["round"]]
        slowest = max(sum(float(c[k]) for k in ("sim_down_s", "sim_compute_s", "sim_up_s"))
                      for c in mine)  # fmt: skip
        assert float(r["sim_round_s"]) == pytest.approx(slowest)
        assert float(r["energy_j"]) == pytest.approx(sum(float(c["energy_j"]) for c in mine))
    assert summary["sim_elapsed_s"] == pytest.approx(float(rounds[-1]["sim_elapsed_s"]))
    assert summary["total_energy_j"] > 0 and summary["total_cost_usd"] > 0


def test_only_the_adapter_travels_and_the_base_is_untouched(two_rounds):
    out, cfg, summary, _ = two_rounds
    task = run_task(cfg)
    spec = model_spec(cfg, task)
    model = build_model(spec)
    final = load_file(str(latest(out / "checkpoint") / "adapter.safetensors"))
    # what crossed the network fits exactly the adapter layout: no base tensor travels
    assert layout({k: final[k] for k in get_adapter(model)}) == layout(get_adapter(model))
    fresh = build_base(spec)
    base_before = {k: v.clone() for k, v in fresh.state_dict().items()}
    set_adapter(model, final)
    assert base_fingerprint(model) == base_fingerprint(build_model(spec))
    assert all(np.array_equal(base_before[k], v) for k, v in build_base(spec).state_dict().items())
    # the checkpointed adapter reproduces the reported accuracy
    got = evaluate(model, task, build_tokenizer(cfg.adapter.model), max_length=cfg.task.max_length)
    assert got["accuracy"] == pytest.approx(summary["final_accuracy"])
    # a per-client upload is about the adapter's fp32 size (plus Flower's framing)
    clients = _rows(out / "clients.csv")
    raw = sum(v.nbytes for v in final.values())
    assert all(raw < int(c["uplink_bytes"]) < raw * 1.2 for c in clients)


def _tensorboard(out) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}


def _mlflow(out) -> dict[str, list[tuple[int, float]]]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    run_id = (out / "mlflow-run-id").read_text()
    keys = client.get_run(run_id).data.metrics
    return {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in keys}


KEYS = ("accuracy", "loss", "uplink_bytes", "sim_elapsed_s")


def _series(rows, key):
    return [(int(r["round"]), pytest.approx(float(r[key]), rel=1e-6)) for r in rows]


def test_tensorboard_reads_each_rounds_ledger_back(two_rounds):
    out, *_ = two_rounds
    logged, rounds = _tensorboard(out), _rows(out / "rounds.csv")
    for key in KEYS:
        assert logged[key] == _series(rounds, key), key
    clients = _rows(out / "clients.csv")  # one series per client
    mine = [(int(c["round"]), float(c["uplink_bytes"])) for c in clients if c["client"] == "1"]
    assert logged["client/1/uplink_bytes"] == mine


def test_resume_matches_an_uninterrupted_run(two_rounds, tmp_path):
    """The uninterrupted run logs to MLflow; the resumed one continues its TensorBoard."""
    out, cfg, *_ = two_rounds
    _, straight, _ = _run(tmp_path / "straight", 3, tracker="mlflow")
    # the server died while writing round 3's checkpoint: debris of a half-written round
    debris = out / "checkpoint" / ".tmp-round-000003"
    debris.mkdir()
    (debris / "adapter.safetensors").write_bytes(b"\x00" * 17)
    resumed_cfg = cfg.replace(num_server_rounds=3, resume=True)
    resumed = simulate(resumed_cfg, SIM, report=lambda e, p: None)
    a = load_file(str(latest(tmp_path / "straight" / "checkpoint") / "adapter.safetensors"))
    b = load_file(str(latest(out / "checkpoint") / "adapter.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert resumed["final_accuracy"] == straight["final_accuracy"]
    assert [r["round"] for r in _rows(out / "rounds.csv")] == ["0", "1", "2", "3"]
    assert [step for step, _ in _tensorboard(out)["accuracy"]] == [0, 1, 2, 3]
    logged, rounds = _mlflow(tmp_path / "straight"), _rows(tmp_path / "straight" / "rounds.csv")
    for key in KEYS:
        assert logged[key] == _series(rounds, key), key


def test_dp_reports_epsilon_every_round_and_stops_before_the_budget(tmp_path):
    from fedslim.privacy.accountant import epsilon

    out = tmp_path / "dp"
    dp = dict(dp="central", dp_noise_multiplier=1.0, dp_epsilon=8.0, dp_delta=1e-5)
    _, summary, _ = _run(out, 3, **dp)
    rounds = _rows(out / "rounds.csv")
    assert [int(r["round"]) for r in rounds] == [0, 1, 2]  # a third round would pass 8
    want = [epsilon("rdp", samplings=[1.0] * r, noise=1.0, delta=1e-5) for r in range(3)]
    assert [float(r["epsilon"]) for r in rounds] == pytest.approx(want)
    assert want[2] <= 8.0 < epsilon("rdp", samplings=[1.0] * 3, noise=1.0, delta=1e-5)
    assert summary["privacy"]["epsilon"] == pytest.approx(want[2])
    assert summary["privacy"]["stopped_by_budget"]
    clients = [c for c in _rows(out / "clients.csv") if c["status"] == "ok"]
    assert len(clients) == 4 and all(float(c["update_norm"]) > 0 for c in clients)


def test_secure_aggregation_learns_when_a_client_drops_after_sharing_its_keys(tmp_path):
    """Four clients under SecAgg+, partition 2 fails every train after the key and share
    exchanges: its masks are recovered from the others' shares and the rounds go on."""
    from fedslim.client.faults import faulty_app

    out = tmp_path / "secagg"
    cfg = RunConfig.of(out=str(out), num_server_rounds=2, secagg=True, dp_clip=1.0, **BASE)
    four = EngineConfig(num_supernodes=4, num_cpus=2)
    summary = simulate(cfg, four, report=lambda e, p: None, client_app=faulty_app({2: "error"}))
    rounds, clients = _rows(out / "rounds.csv"), _rows(out / "clients.csv")
    assert float(rounds[-1]["accuracy"]) > float(rounds[0]["accuracy"]) + 0.05
    assert [c["status"] == "ok" for c in clients] == [True, True, False, True] * 2
    assert [float(r["dp_clip"]) for r in rounds[1:]] == [1.0, 1.0]  # clients clipped to it
    # masked codes: 8 + 2 bits a value for 4 clients, against fp32's 32
    plain = 4 * summary["adapter_params"]
    assert all(int(c["uplink_bytes"]) < plain / 2 for c in clients if c["status"] == "ok")


def _tiny_bert_dir(path, words):
    from transformers import BertConfig, BertModel, BertTokenizer

    path.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(words))]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(path / "vocab.txt")).save_pretrained(path)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(path)
    return path


def test_cli_with_a_user_model_dir_and_csv(tmp_path):
    rows = [
        (f"the {'cat' if i % 2 else 'dog'} sat on mat {i % 5}", "cat" if i % 2 else "dog")
        for i in range(120)
    ]
    data = tmp_path / "pets.csv"
    data.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    model_dir = _tiny_bert_dir(tmp_path / "bert", " ".join(t for t, _ in rows).split())
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--set",
            f"model={model_dir}",
            "--set",
            f"task=text-cls:{data}",
            "--set",
            "num-supernodes=2",
            "--set",
            "num-server-rounds=2",
            "--set",
            "lr=0.02",
            "--set",
            "num-cpus=2",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["model"] == str(model_dir)
    assert summary["final_accuracy"] > 0.9  # the label is one word: trivially learnable
    names = list(load_file(str(latest(out / "checkpoint") / "adapter.safetensors")))
    assert any("classifier" in n for n in names) and any("lora_A" in n for n in names)
