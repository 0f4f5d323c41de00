import json

import numpy as np
import pytest
import torch

from fedslim.task.adapters import base_fingerprint, get_adapter, set_adapter
from fedslim.task.data import load_task
from fedslim.task.models import ModelSpec, build_model, build_tokenizer
from fedslim.task.train import evaluate, train_local
from fedslim.vectors import layout


def _train(model, *, steps: int, seed: int, **kw):
    """Local training on the embedded task, as a client runs it (batch 8, lr 1e-2)."""
    task = load_task("template-cls", seed=0, num_examples=400, eval_fraction=0.2)
    return train_local(
        model,
        task,
        task.train_idx,
        build_tokenizer("tiny"),
        steps=steps,
        batch_size=8,
        lr=1e-2,
        max_length=32,
        seed=seed,
        **kw,
    )


SPEC = ModelSpec(
    model="tiny", kind="cls", num_labels=4, lora_r=4, lora_alpha=8, lora_targets="auto", seed=0
)


def test_nodes_build_bit_identical_models():
    a, b = build_model(SPEC), build_model(SPEC)
    assert base_fingerprint(a) == base_fingerprint(b)
    for (ka, va), (kb, vb) in zip(get_adapter(a).items(), get_adapter(b).items(), strict=True):
        assert ka == kb and np.array_equal(va, vb)


def test_adapter_holds_lora_and_head_only():
    names = list(get_adapter(build_model(SPEC)))
    assert names and all("lora_" in n or ".score." in n for n in names)
    assert any(".score." in n for n in names)  # the classification head travels too


def test_local_training_moves_the_adapter_and_never_the_base():
    task = load_task("template-cls", seed=0, num_examples=400, eval_fraction=0.2)
    model, tok = build_model(SPEC), build_tokenizer("tiny")
    base, before = base_fingerprint(model), get_adapter(model)
    res = train_local(
        model, task, task.train_idx, tok, steps=15, batch_size=16, lr=1e-2, max_length=32, seed=1
    )
    after = get_adapter(model)
    assert base_fingerprint(model) == base
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    assert res.flops > 0 and res.seconds > 0 and np.isfinite(res.loss)


def test_counted_flops_equal_counting_every_step():
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(SPEC)
    with FlopCounterMode(display=False) as outer:
        res = _train(model, steps=4, seed=2)
    assert res.flops == outer.get_total_flops() > 0


def test_training_is_reproducible_for_a_seed():
    runs = []
    for _ in range(2):
        model = build_model(SPEC)
        _train(model, steps=3, seed=5)
        runs.append(get_adapter(model))
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_set_adapter_refuses_a_foreign_layout():
    model = build_model(SPEC)
    arrays = get_adapter(model)
    name = next(iter(arrays))
    with pytest.raises(ValueError, match="layout"):
        set_adapter(model, {**arrays, name: np.zeros((1, 1), np.float32)})
    other = get_adapter(build_model(ModelSpec(**{**SPEC.__dict__, "lora_r": 2})))
    assert layout(other) != layout(arrays)


def test_sft_trains_on_response_tokens(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {"prompt": f"colour of item {i % 3}:", "response": ["red", "green", "blue"][i % 3]}
            )
            + "\n"
            for i in range(60)
        )
    )
    task = load_task(f"sft:{path}", seed=0, num_examples=60, eval_fraction=0.2)
    spec = ModelSpec(**{**SPEC.__dict__, "kind": "sft", "num_labels": 0})
    model, tok = build_model(spec), build_tokenizer("tiny")
    first = evaluate(model, task, tok, max_length=32)
    torch.manual_seed(0)
    train_local(
        model, task, task.train_idx, tok, steps=30, batch_size=8, lr=2e-2, max_length=32, seed=0
    )
    last = evaluate(model, task, tok, max_length=32)
    assert last["loss"] < first["loss"]


def test_ffa_freezes_a_and_sends_about_half():
    from fedslim.compression import encode
    from fedslim.vectors import flatten

    ffa = build_model(ModelSpec(**{**SPEC.__dict__, "freeze_a": True}))
    a_before = {n: p.detach().clone() for n, p in ffa.named_parameters() if "lora_A" in n}
    _train(ffa, steps=5, seed=0)
    assert all(torch.equal(p, a_before[n]) for n, p in ffa.named_parameters() if "lora_A" in n)
    sent = get_adapter(ffa)
    assert sent and not any("lora_A" in k for k in sent)
    full = len(encode("none", flatten(get_adapter(build_model(SPEC)))))
    assert 0.4 < len(encode("none", flatten(sent))) / full < 0.6


def test_proximal_term_keeps_the_adapter_closer_to_where_it_started():
    from fedslim.vectors import flatten

    drift = {}
    for mu in (0.0, 50.0):
        model = build_model(SPEC)
        start = flatten(get_adapter(model))
        _train(model, steps=10, seed=0, proximal_mu=mu)
        drift[mu] = np.linalg.norm(flatten(get_adapter(model)) - start)
    assert drift[50.0] < drift[0.0]
