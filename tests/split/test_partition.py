"""Head + tail equal the unsplit model, for every split point (tiny Llama and a BERT)."""

import pytest
import torch
from peft import LoraConfig, TaskType, get_peft_model

from fedslim.split.partition import device_head, num_blocks, parts, split
from fedslim.task.models import ModelSpec, build_model


def _llama(kind: str = "cls"):
    spec = ModelSpec(model="tiny", kind=kind, num_labels=4 if kind == "cls" else 0, lora_r=4,
                     lora_alpha=8, lora_targets="auto", seed=0)  # fmt: skip
    return build_model(spec)


def _bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=3)  # fmt: skip
    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, target_modules=["query", "value"]
    )
    return get_peft_model(BertForSequenceClassification(config), lora).eval()


def _inputs(vocab: int, pad: int = 0):
    torch.manual_seed(1)
    ids = torch.randint(4, vocab, (3, 9))
    mask = torch.ones_like(ids)
    ids[1, 6:], mask[1, 6:] = pad, 0  # a padded sequence
    return ids, mask


@pytest.mark.parametrize(
    "make", [_llama, _bert, lambda: _llama("sft")], ids=["llama", "bert", "lm"]
)
def test_head_plus_tail_equals_the_unsplit_model_for_every_k(make):
    model = make().eval()
    for p in model.parameters():  # a trained-looking adapter, not LoRA's zero B
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    ids, mask = _inputs(model.config.vocab_size if hasattr(model, "config") else 100)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
    n = num_blocks(model)
    assert n >= 2
    for k in range(n + 1):
        head, tail = split(model, k)
        act = head(ids, mask)
        assert torch.equal(tail(act), full), k  # exactly: the same operations, in order
        if k > 0:  # and not by accident: the wrong half does not
            _, other = split(model, k - 1)
            assert not torch.allclose(other(act), full), k


def test_a_split_point_outside_the_model_is_refused():
    with pytest.raises(ValueError, match="0..2"):
        split(_llama(), 3)


@pytest.mark.parametrize(
    "make", [_llama, _bert, lambda: _llama("sft")], ids=["llama", "bert", "lm"]
)
def test_the_device_head_keeps_only_the_weights_it_runs(make):
    """The device's half alone: the same activations as ``split``'s head, and the tail's
    weights released (nothing on the device still refers to them)."""
    import gc
    import weakref

    server = make().eval()
    ids, mask = _inputs(server.config.vocab_size)
    with torch.no_grad():
        full = server(input_ids=ids, attention_mask=mask).logits
    n, sizes = num_blocks(server), []
    for k in range(n + 1):
        device = make().eval()
        last_block = weakref.ref(parts(device)[1][-1])
        head = device_head(device, k)
        gc.collect()
        assert (last_block() is None) == (k < n), k  # freed unless the head runs it
        sizes.append(sum(p.numel() for p in head.parameters()))
        with torch.no_grad():
            act = head(ids, mask)
            assert torch.equal(split(server, k)[1](act), full), k
    assert sizes == sorted(set(sizes)) and sizes[-1] < sum(p.numel() for p in server.parameters())


def test_an_lm_tail_predicts_the_next_token_after_each_sequence():
    """``predict`` runs the output head on each sequence's last real token only."""
    model = _llama("sft").eval()
    ids, mask = _inputs(model.config.vocab_size)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        for k in range(num_blocks(model) + 1):
            head, tail = split(model, k)
            act = head(ids, mask)
            rows = tail.predict(act)
            assert rows.shape == (3, model.config.vocab_size)
            assert torch.allclose(rows, full[torch.arange(3), act.last], atol=1e-5), k


def test_a_model_whose_output_head_the_tail_cannot_run_is_refused():
    from transformers import BertConfig, BertLMHeadModel

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, is_decoder=True)  # fmt: skip
    with pytest.raises(ValueError, match="output head is none of score, classifier, lm_head"):
        split(BertLMHeadModel(config), 1)


def test_a_folded_residual_counts_as_adapter_in_the_fingerprint():
    """Exact aggregation folds a residual into base weights: the base fingerprint stays
    the built one (the untouched weights are kept aside), the adapter's changes."""
    import numpy as np

    from fedslim.split.fingerprint import fingerprint
    from fedslim.task.residual import global_state, load_global

    spec = ModelSpec(model="tiny", kind="cls", num_labels=4, lora_r=4, lora_alpha=8.0,
                     lora_targets="auto", seed=0)  # fmt: skip
    model, fresh = build_model(spec), build_model(spec)
    arrays = global_state(model, exact=True)
    residual = next(k for k in arrays if k.startswith("residual:"))
    arrays[residual] = np.full(arrays[residual].shape, 0.5, np.float32)
    for _ in range(2):  # idempotent: folded onto the kept original, not onto the last fold
        load_global(model, arrays)
    before, after = fingerprint(fresh), fingerprint(model)
    assert after.base == before.base and after.adapter != before.adapter
