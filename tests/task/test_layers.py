"""The adapter on chosen blocks only (``task/layers.py``): fewer values, shorter backward."""

import dataclasses

import pytest

from fedslim.config import ConfigError, split_config
from fedslim.task import layers
from fedslim.task.adapters import get_adapter
from fedslim.task.data import load_task
from fedslim.task.models import ModelSpec, build_model, build_tokenizer
from fedslim.task.train import train_local
from fedslim.vectors import flatten

SPEC = ModelSpec(
    model="tiny", kind="cls", num_labels=4, lora_r=4, lora_alpha=8, lora_targets="auto", seed=0
)


@pytest.mark.parametrize(
    ("spec", "depth", "chosen"),
    [("", 6, None), ("top:3", 6, [3, 4, 5]), ("top:6", 6, [0, 1, 2, 3, 4, 5]),
     ("0,2", 6, [0, 2]), ("1-3,5", 6, [1, 2, 3, 5]), ("4-4", 6, [4])],
)  # fmt: skip
def test_blocks_from_each_form(spec, depth, chosen):
    assert layers.blocks(spec, depth) == chosen


@pytest.mark.parametrize(
    ("spec", "depth", "reason"),
    [("top:7", 6, "has 6 blocks"), ("6", 6, "block 6 is past"), ("3-1", 6, "backwards"),
     ("top:0", 6, "is not one of"), ("last:2", 6, "is not one of"), ("1,,2", 6, "is not one of")],
)  # fmt: skip
def test_a_block_the_model_lacks_or_a_bad_form_is_refused(spec, depth, reason):
    with pytest.raises(ValueError, match=reason):
        layers.blocks(spec, depth)


def test_a_bad_form_fails_the_config_naming_the_key():
    with pytest.raises(ConfigError, match="'lora-layers'"):
        split_config({"lora-layers": "top"})


def test_a_block_past_the_model_fails_before_the_engine_starts_naming_the_key(tmp_path):
    """The depth comes from the model's config file: nothing starts, nothing is written."""
    from typer.testing import CliRunner

    from fedslim.cli import cli

    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli, ["simulate", "--set", "lora-layers=top:3", "--out", str(out), "--overwrite"]
    )
    assert result.exit_code == 2 and "'lora-layers'" in result.output
    assert "has 2 blocks" in " ".join(result.output.split())
    assert not out.exists()
    with pytest.raises(ValueError, match="'lora-layers'.*has 2 blocks"):
        build_model(dataclasses.replace(SPEC, lora_layers="top:3"))


def test_the_memory_estimate_keeps_activations_from_the_lowest_adapted_block_up():
    from fedslim.resources.memory import Setting, activation_bytes
    from fedslim.task.shape import shape

    every, top = (shape(dataclasses.replace(SPEC, lora_layers=s)) for s in ("", "top:1"))
    assert (every.adapted_from, top.adapted_from) == (0, 1)
    both = (activation_bytes(s, Setting(), batch=8, seq=32) for s in (every, top))
    assert next(both) == 2 * next(both)  # the tiny model's 2 blocks, 1 of them adapted


def test_top_blocks_send_fewer_values_and_train_with_fewer_flops():
    """The tiny model has 2 blocks: the top one alone carries half of LoRA's values, and
    backward stops above block 0, so a step costs fewer FLOPs."""
    task = load_task("template-cls", seed=0, num_examples=200, eval_fraction=0.2)
    results, sizes = [], []
    for spec in (SPEC, dataclasses.replace(SPEC, lora_layers="top:1")):
        model = build_model(spec)
        names = [n for n in get_adapter(model) if "lora_" in n]
        assert names and all(".layers.1." in n for n in names) == bool(spec.lora_layers)
        sizes.append(sum(get_adapter(model)[n].size for n in names))
        tok = build_tokenizer("tiny")
        results.append(train_local(model, task, task.train_idx, tok, steps=2, batch_size=8,
                                   lr=1e-2, max_length=32, seed=1))  # fmt: skip
    assert sizes[1] * 2 == sizes[0]
    assert results[1].flops < results[0].flops
    moved = get_adapter(model)
    assert flatten({n: moved[n] for n in moved if "lora_B" in n}).any()  # the top block learns
