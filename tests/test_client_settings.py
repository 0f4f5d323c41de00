"""Client settings in a federation: a real simulation where every precision x base-quant x
checkpointing trains side by side, and the memory plan's choices and refusals."""

import csv
from pathlib import Path

import pytest

from fedslim.config import ConfigError, EngineConfig, RunConfig
from fedslim.resources.memory import SETTINGS, Setting
from fedslim.simulations.pricing import plans, population
from fedslim.simulations.run import simulate

pytest.importorskip("bitsandbytes")
LLAMA_1B = Path(__file__).resolve().parents[1] / "benchmarks" / "models" / "llama-3.2-1b-shape"


def _rows(path):
    with path.open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_every_setting_trains_in_one_federation_and_it_learns(tmp_path):
    listed = ",".join(str(s) for s in SETTINGS)
    cfg = RunConfig.of(out=str(tmp_path / "run"), num_server_rounds=2, num_examples=960,
                       local_steps=10, batch_size=16, lr=1e-2, seed=1, client_settings=listed,
                       devices="phone-mid")  # fmt: skip
    simulate(cfg, EngineConfig(num_supernodes=len(SETTINGS), num_cpus=2),
             report=lambda e, p: None)  # fmt: skip
    clients = _rows(tmp_path / "run" / "clients.csv")
    assert len(clients) == 2 * len(SETTINGS)
    for c in clients:  # each client trained with its own setting, the adapter fp32 for all
        assert c["status"] == "ok" and c["setting"] == str(SETTINGS[int(c["client"])])
        assert float(c["train_loss"]) < 2.0 and int(c["flops"]) > 0
    rounds = _rows(tmp_path / "run" / "rounds.csv")
    assert float(rounds[-1]["accuracy"]) > float(rounds[0]["accuracy"]) + 0.1


def _plans(tmp_path, **kw):
    profile = tmp_path / "p.toml"
    profile.write_text("[device.watch]\nflops = 1e9\nactive_w = 1\nidle_w = 0.1\n"
                       "memory_mb = 512\n")  # fmt: skip
    cfg = RunConfig.of(model=f"random:{LLAMA_1B}", batch_size=1, max_length=128,
                       profiles=str(profile), **kw)  # fmt: skip
    return plans(cfg, population(cfg, [0, 1, 2, 3]))


def test_the_memory_plan_fits_a_1b_model_to_each_device_or_says_why(tmp_path):
    chosen = _plans(tmp_path, memory_plan="auto",
                    devices="mix:phone-low=1,laptop=1,desktop-gpu=1,watch=1")  # fmt: skip
    members = population(RunConfig.of(devices="mix:phone-low=1,laptop=1,desktop-gpu=1,watch=1",
                                      profiles=str(tmp_path / "p.toml")), [0, 1, 2, 3])  # fmt: skip
    by_device = {members[p].device.name: plan for p, plan in chosen.items()}
    if "phone-low" in by_device:  # 3 GB: only a quantized base fits
        assert Setting.parse(by_device["phone-low"].setting).base_quant != "none"
    if "laptop" in by_device:
        assert by_device["laptop"].setting == "fp32/none"  # fits, and the most precise
    if "desktop-gpu" in by_device:  # tensor cores: bf16 is twice as fast
        assert by_device["desktop-gpu"].setting.startswith("bf16/none")
    if "watch" in by_device:
        assert by_device["watch"].refusal.startswith("no setting fits")
    fixed = _plans(tmp_path, devices="phone-low")  # fp32 1B on a 3 GB phone: refused, why
    assert all(p.refusal.startswith("does not fit: fp32/none needs") for p in fixed.values())


def test_exact_aggregation_with_a_narrow_base_is_refused_naming_both_and_plans_fp32():
    with pytest.raises(ConfigError, match="base-quant.*strategy exact"):
        RunConfig.of(strategy="exact", base_quant="nf4")
    with pytest.raises(ConfigError, match="precision.*strategy exact"):
        RunConfig.of(strategy="exact", precision="bf16")
    cfg = RunConfig.of(strategy="exact", memory_plan="auto")
    assert {str(s) for s in cfg.client.candidates(full_precision=True)} == {
        "fp32/none", "fp32/none/ckpt"}  # fmt: skip
    with pytest.raises(ConfigError, match="client-settings"):
        RunConfig.of(client_settings="bf16/nf5")
