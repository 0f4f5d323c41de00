"""Client settings on the tiny model: every precision x base-quant x checkpointing trains
and learns, checkpointing changes no gradient, a quantized base is the same bytes on
every node, and the memory model prices bitsandbytes' storage exactly."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from fedslim.resources import memory
from fedslim.resources.memory import SETTINGS, Setting
from fedslim.split.fingerprint import fingerprint
from fedslim.task.data import load_task
from fedslim.task.models import ModelSpec, build_model, build_tokenizer
from fedslim.task.shape import shape
from fedslim.task.train import encode_batch, evaluate, train_local

pytest.importorskip("bitsandbytes")
SPEC = ModelSpec(model="tiny", kind="cls", num_labels=4, lora_r=4, lora_alpha=8.0,
                 lora_targets="auto", seed=0)  # fmt: skip
TASK = load_task("template-cls", seed=0, num_examples=400, eval_fraction=0.25)
TOK = build_tokenizer("tiny")


def _spec(setting: Setting, **kw) -> ModelSpec:
    return ModelSpec(**{**SPEC.__dict__, "setting": setting, **kw})


@pytest.mark.parametrize("setting", SETTINGS, ids=str)
def test_every_setting_trains_and_learns_with_an_fp32_adapter(setting):
    model = build_model(_spec(setting))
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    seen = TASK.train_idx[:64]  # learning shows first on what it trained on
    before = evaluate(model, TASK, TOK, max_length=32, indices=seen)
    res = train_local(model, TASK, seen, TOK, steps=16, batch_size=16, lr=1e-2, max_length=32,
                      seed=1)  # fmt: skip
    after = evaluate(model, TASK, TOK, max_length=32, indices=seen)
    assert np.isfinite(res.loss) and res.flops > 0
    assert after["loss"] < before["loss"] - 0.05, (before, after)


@pytest.mark.parametrize(("kind", "labels", "ffa"), [("cls", 4, False), ("sft", 0, True)])
def test_every_setting_starts_from_the_fp32_clients_adapter(kind, labels, ffa):
    """One g0 for a federation of mixed settings: LoRA's A (FFA's frozen one too) and a
    trainable head do not depend on the base's precision."""
    fp32 = build_model(_spec(Setting(), kind=kind, num_labels=labels, freeze_a=ffa))
    want = {
        n: p.detach().clone() for n, p in fp32.named_parameters() if "lora_" in n or p.requires_grad
    }
    for setting in SETTINGS:
        model = build_model(_spec(setting, kind=kind, num_labels=labels, freeze_a=ffa))
        got = {n: p for n, p in model.named_parameters() if n in want}
        assert got.keys() == want.keys()
        for name, value in want.items():
            assert torch.equal(got[name].float(), value), (setting, name)


@pytest.mark.parametrize("setting", [Setting("fp32", "none"), Setting("bf16", "nf4")], ids=str)
def test_checkpointing_gives_the_same_gradients(setting):
    batch = encode_batch(TASK, TASK.train_idx[:8], TOK, 32)
    grads = []
    for ckpt in (False, True):
        s = Setting(setting.precision, setting.base_quant, ckpt)
        model = build_model(_spec(s))
        model.train()
        from fedslim.task.precision import compute

        with compute(model):
            model(**batch).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-5, atol=1e-7, msg=name)


BUILD = """
import json, sys
from fedslim.resources.memory import Setting
from fedslim.split.fingerprint import fingerprint
from fedslim.task.models import ModelSpec, build_model
out = []
for model, kind, setting in json.loads(sys.argv[1]):
    spec = ModelSpec(model=model, kind=kind, num_labels=4, lora_r=4, lora_alpha=8.0,
                     lora_targets="auto", seed=0, setting=Setting.parse(setting))
    out.append(fingerprint(build_model(spec)).base)
print(json.dumps(out))
"""


def test_a_quantized_base_is_the_same_bytes_on_another_node(tmp_path):
    """nf4 and int8 on tiny, and fp4 on a config-only model built block by block; one
    other process builds all three (a process start costs seconds)."""
    (tmp_path / "config.json").write_text(
        '{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, '
        '"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, '
        '"vocab_size": 4096, "tie_word_embeddings": true}'
    )
    cases = [("tiny", "cls", "bf16/nf4"), ("tiny", "cls", "fp32/int8"),
             (f"random:{tmp_path}", "sft", "fp16/fp4")]  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", BUILD, json.dumps(cases)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    there = json.loads(proc.stdout.strip().splitlines()[-1])
    for (model, kind, setting), theirs in zip(cases, there, strict=True):
        here = fingerprint(build_model(_spec(Setting.parse(setting), model=model, kind=kind)))
        assert here.base == theirs
        other = fingerprint(build_model(_spec(Setting(), model=model, kind=kind)))
        assert other.base != here.base  # the setting is part of what the fingerprint covers


@pytest.mark.parametrize("setting", [s for s in SETTINGS if not s.gradient_checkpointing], ids=str)
def test_the_memory_model_prices_the_base_as_stored(setting):
    """Weights as bitsandbytes stores them (packed values, absmax per block, int8 row
    scales), embeddings, norms and head at the precision: the estimate is exact."""
    model = build_model(_spec(setting))
    stored = 0
    for name, p in model.named_parameters():
        if "lora_" in name or "modules_to_save" in name:
            continue  # the adapter and the trained copy of the head
        stored += p.numel() * p.element_size()
        state, scb = getattr(p, "quant_state", None), getattr(p, "SCB", None)
        stored += state.absmax.numel() * state.absmax.element_size() if state else 0
        stored += scb.numel() * scb.element_size() if scb is not None else 0
    assert stored == pytest.approx(memory.weight_bytes(shape(SPEC), setting), rel=0.01)
