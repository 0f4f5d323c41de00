"""Split fine-tuning: the same update as unsplit training when nothing is compressed, a
model that learns through q8 both ways, and bytes counted message by message."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fedslim.cli import cli
from fedslim.client.workload import run_model, run_task
from fedslim.config import RunConfig
from fedslim.split.activations import pack
from fedslim.split.train import LABEL_BYTES, halves, train_split
from fedslim.task.models import build_tokenizer
from fedslim.task.train import encode_batch, evaluate

CFG = RunConfig.of()


def _setup():
    task = run_task(CFG)
    return run_model(CFG, task), task, build_tokenizer("tiny")


def _batch(task, tok, seed=0, size=16):
    idx = np.random.default_rng(seed).choice(task.train_idx, size, replace=False)
    return encode_batch(task, idx, tok, 64)


def test_an_uncompressed_split_step_is_the_unsplit_step():
    model, task, tok = _setup()
    ref, _, _ = _setup()
    train_split(model, task, tok, k=1, steps=1, batch_size=16, lr=0.01, max_length=64, seed=0,
                up="none", down="none")  # fmt: skip
    params = [p for p in ref.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=0.01, weight_decay=0.0)
    ref.train()
    ref(**_batch(task, tok)).loss.backward()
    opt.step()
    got = dict(model.named_parameters())
    moved = 0
    for name, p in ref.named_parameters():
        if p.requires_grad:
            assert torch.allclose(got[name], p, atol=1e-6), name
            moved += int(not torch.equal(p, _setup()[0].get_parameter(name)))
    assert moved > 0  # both halves' LoRA moved, not only the head's


def test_it_learns_the_task_through_q8_both_ways():
    model, task, tok = _setup()
    before = evaluate(model, task, tok, max_length=64)["accuracy"]
    log = train_split(model, task, tok, k=1, steps=200, batch_size=16, lr=0.01, max_length=64,
                      seed=0)  # fmt: skip
    after = evaluate(model, task, tok, max_length=64)["accuracy"]
    assert before < 0.3 and after > 0.6, (before, after)
    assert log.down_bytes > 0 and np.mean(log.losses[-20:]) < np.mean(log.losses[:20])


def test_bytes_are_the_messages_and_k0_sends_no_gradient():
    model, task, tok = _setup()
    batch = _batch(task, tok)
    from fedslim.split.partition import split

    with torch.inference_mode():
        act = split(model, 0)[0](batch["input_ids"], batch["attention_mask"])
    log = train_split(model, task, tok, k=0, steps=1, batch_size=16, lr=0.01, max_length=64,
                      seed=0)  # fmt: skip
    assert log.up_bytes == len(pack(act, "q8", seed=0)) + LABEL_BYTES * 16
    assert log.down_bytes == 0 and halves(model, 0)[0] == []


def test_split_train_cli_saves_an_adapter_that_serve_can_load(tmp_path):
    out = tmp_path / "run"
    runner = CliRunner()
    done = runner.invoke(cli, ["split", "train", "--steps", "10", "--out", str(out),
                               "--set", "lora-r=4"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "per step" in done.output and "client-rounds" in done.output
    plan = ["split", "plan", "--adapter", str(out), "--device", "raspberry-pi-4"]
    planned = runner.invoke(cli, [*plan, "--timed", "--min-layer", "1"])
    assert planned.exit_code == 0 and "chosen: k=" in planned.output, planned.output
    assert "decision:" in planned.output and "stays on the device" in planned.output
    again = runner.invoke(cli, ["split", "train", "--layer", "7"])
    assert again.exit_code == 2 and "expected 0..2" in again.output


@pytest.mark.parametrize("k", [0, 2])
def test_every_trainable_parameter_belongs_to_exactly_one_end(k):
    model, _, _ = _setup()
    device, server = halves(model, k)
    ids = [id(p) for p in device + server]
    assert len(ids) == len(set(ids)) == sum(p.requires_grad for p in model.parameters())
