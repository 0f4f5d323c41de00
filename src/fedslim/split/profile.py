"""Measure a model for the planner: FLOPs per token of its embeddings, each block and its
output head (counted by torch on a real forward pass), the weights each part needs, and
the bytes per activation value a codec achieves on the model's own activations."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..compression import build
from .partition import num_blocks, parts, split
from .planner import Profile


def _flops(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def _bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


@torch.inference_mode()
def measure(model, *, tokens: int = 64) -> Profile:
    model.eval()
    ids = torch.randint(4, min(model.config.vocab_size, 1000), (1, tokens))
    mask = torch.ones_like(ids)
    n = num_blocks(model)
    head_flops = [_flops(lambda k=k: split(model, k)[0](ids, mask)) for k in range(n + 1)]
    out = {}
    # one counted pass gives the total and the result's size
    total = _flops(lambda: out.update(logits=model(input_ids=ids, attention_mask=mask).logits))
    inner, blocks = parts(model)
    embed = next(m for name, m in inner.named_children() if "embed" in name)
    logits = out["logits"]
    return Profile(
        embed_flops=head_flops[0] / tokens,
        block_flops=tuple(
            (b - a) / tokens for a, b in zip(head_flops, head_flops[1:], strict=False)
        ),
        out_flops=max(total - head_flops[-1], 0.0) / tokens,
        embed_bytes=_bytes(embed),
        block_bytes=tuple(_bytes(b) for b in blocks),
        hidden=int(model.config.hidden_size),
        result_bytes=int(logits[0].numel() * 4),
    )


@torch.inference_mode()
def bytes_per_value(model, spec: str, *, tokens: int = 64) -> float:
    """What the codec makes of this model's activations at the middle block."""
    ids = torch.randint(4, min(model.config.vocab_size, 1000), (1, tokens))
    act = split(model, num_blocks(model) // 2)[0](ids, torch.ones_like(ids))
    values = act.hidden.reshape(-1).numpy()
    return len(build(spec).encode(values)) / values.size
