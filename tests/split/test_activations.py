"""Activations cross the link through the codec pipelines: exact, compressed, or refused."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedslim.compression import WireFormatError
from fedslim.split.activations import pack, unpack
from fedslim.split.partition import Activations, split
from fedslim.task.models import ModelSpec, build_model

SPEC = ModelSpec(model="tiny", kind="cls", num_labels=4, lora_r=4, lora_alpha=8,
                 lora_targets="auto", seed=0)  # fmt: skip


def _act() -> Activations:
    torch.manual_seed(0)
    mask = torch.ones(2, 5, dtype=torch.int64)
    mask[1, 3:] = 0
    return Activations(torch.randn(2, 5, 8), mask, torch.tensor([4, 2]))


def test_activations_round_trip_exactly_uncompressed():
    act = _act()
    back = unpack(pack(act, "none"), max_elements=80)
    assert torch.equal(back.hidden, act.hidden) and torch.equal(
        back.attention_mask, act.attention_mask
    )
    assert torch.equal(back.last, act.last)


def test_q8_activations_shrink_and_keep_the_prediction():
    model = build_model(SPEC).eval()
    torch.manual_seed(2)
    ids = torch.randint(4, 4096, (64, 16))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
    for k in range(3):  # every split point of the tiny model
        head, tail = split(model, k)
        with torch.no_grad():
            act = head(ids, mask)
            raw, q8 = pack(act, "none"), pack(act, "q8")
            assert len(raw) / len(q8) >= 3.5
            got = tail(unpack(q8, max_elements=act.hidden.numel()))
        # the stated tolerance: logits within 2% of their range (an untrained head's
        # near-ties may still swap places: agreement is a trained model's measurement)
        assert (got - full).abs().max() <= 0.02 * (full.max() - full.min()), k


@pytest.mark.parametrize(
    ("mutate", "says"),
    [
        (lambda b: b[:10], "truncated"),
        (lambda b: b"XXXX" + b[4:], "not an activation"),
        (lambda b: b[:5] + (10**6).to_bytes(4, "little") + b[9:], "allowed"),
        (lambda b: b[:-5] + bytes([b[-5] ^ 1]) + b[-4:], "CRC"),
    ],
)
def test_malformed_activations_are_refused(mutate, says):
    with pytest.raises(WireFormatError, match=says):
        unpack(mutate(pack(_act(), "q8")), max_elements=80)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_only_ever_raise_wire_errors(data):
    with pytest.raises(WireFormatError):
        unpack(b"FSAC\x01" + data, max_elements=80)
