"""PEFT methods that exchange a few seeded coefficients (``task/methods.py``)."""

import dataclasses

import numpy as np
import pytest

from fedslim.config import RunConfig
from fedslim.errors import ConfigError
from fedslim.task import methods
from fedslim.task.adapters import base_fingerprint, get_adapter, set_adapter
from fedslim.task.data import load_task
from fedslim.task.models import ModelSpec, build_model, build_tokenizer
from fedslim.task.train import encode_batch, train_local
from fedslim.vectors import flatten

LORA = ModelSpec(
    model="tiny", kind="cls", num_labels=4, lora_r=8, lora_alpha=16, lora_targets="auto", seed=0
)


@pytest.mark.parametrize("text", ["vera:32", "fourierft:64", "tinylora:8", "tinylora:16x4"])
def test_a_method_exchanges_only_its_coefficients_and_every_node_starts_alike(text):
    spec = dataclasses.replace(LORA, method=methods.parse(text))
    a, b = build_model(spec), build_model(spec)
    exchanged = get_adapter(a)
    assert flatten(exchanged).size < flatten(get_adapter(build_model(LORA))).size / 2
    prefix = {"vera": "vera_lambda", "fourierft": "fourierft_spectrum", "tinylora": "tinylora_v"}
    assert all(prefix[spec.method.name] in k or ".score." in k for k in exchanged), list(exchanged)
    assert np.array_equal(flatten(exchanged), flatten(get_adapter(b)))  # one g0
    assert base_fingerprint(a) == base_fingerprint(b)
    task = load_task("template-cls", seed=0, num_examples=200, eval_fraction=0.2)
    train_local(a, task, task.train_idx, build_tokenizer("tiny"), steps=3, batch_size=8,
                lr=1e-2, max_length=32, seed=1)  # fmt: skip
    trained = get_adapter(a)
    assert not np.array_equal(flatten(trained), flatten(exchanged))
    set_adapter(b, trained)  # what crosses the network is all another node needs
    batch = encode_batch(task, task.eval_idx[:8], build_tokenizer("tiny"), 32)
    la, lb = (m(**batch).logits.detach().numpy() for m in (a.eval(), b.eval()))
    np.testing.assert_array_equal(la, lb)


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        (dict(adapter_method="vera:0"), "adapter-method"),
        (dict(adapter_method="lora:8"), "adapter-method"),
        (dict(adapter_method="vera:8x2"), "adapter-method"),  # a rank is tinylora's only
        (dict(adapter_method="vera", strategy="ffa"), "strategy"),
        (dict(adapter_method="fourierft", strategy="exact"), "strategy"),
        (dict(adapter_method="tinylora", lora_ranks="4,8"), "lora-ranks"),
    ],
)
def test_a_method_and_a_lora_only_strategy_are_refused_before_the_run(keys, named):
    with pytest.raises(ConfigError, match=f"config key '{named}'"):
        RunConfig.of(**keys)


def test_lora_names_are_pefts():
    from peft.tuners.lora import LoraLayer

    from fedslim.task.lora_names import LORA_A, LORA_B, rank_axis

    assert LoraLayer.adapter_layer_names[:2] == (LORA_A, LORA_B)
    assert rank_axis(f"m.q.{LORA_A}.weight") == 0 and rank_axis(f"m.q.{LORA_B}.weight") == 1
    assert rank_axis("m.classifier.weight") is None


def test_a_tinylora_rank_reaches_pefts_config():
    from fedslim.task.models import adapter_config

    method = methods.parse("tinylora:256x16")  # Fed-SB's shape: a 16 x 16 core
    assert (method.size, method.rank) == (256, 16) and methods.parse("tinylora").rank == 2
    config = adapter_config(dataclasses.replace(LORA, method=method))
    assert (config.u, config.r) == (256, 16)
