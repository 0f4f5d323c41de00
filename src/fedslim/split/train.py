"""Split fine-tuning (SplitFed-style): the device trains the LoRA of its first k blocks, the
server the LoRA of the rest and the output head; per step the activations go up and their
gradients come down, both through codec pipelines, every byte counted.

One process plays both ends, but only through the messages: the server sees the decoded
activations and the labels, the device the decoded gradient, exactly what a link would
carry. The gradient travels in an activation message (it has the activations' shape; the
mask and positions it repeats cost 5 bytes a token against ``hidden`` values a token).
Labels go up as 4 bytes each (the server computes the loss, as in SplitFed's label-sharing
setting). At k = 0 the device holds nothing trainable and no gradient comes down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..task.train import encode_batch
from .activations import pack, unpack
from .partition import Activations, parts, split

LABEL_BYTES = 4
_LIMIT = 1 << 31  # both ends are ours here; the service bounds what it takes


@dataclass
class SplitLog:
    """What a split fine-tuning run spent and reached, step by step."""

    steps: int = 0
    up_bytes: int = 0
    down_bytes: int = 0
    device_s: float = 0.0
    server_s: float = 0.0
    losses: list[float] = field(default_factory=list)

    @property
    def bytes_per_step(self) -> float:
        return (self.up_bytes + self.down_bytes) / max(self.steps, 1)


def _trainable(modules) -> list[torch.nn.Parameter]:
    return [p for m in modules for p in m.parameters() if p.requires_grad]


def halves(model, k: int) -> tuple[list, list]:
    """(device parameters: LoRA of blocks[:k], server parameters: every other trainable)."""
    _, blocks = parts(model)
    device = _trainable(blocks[:k])
    mine = {id(p) for p in device}
    server = [p for p in model.parameters() if p.requires_grad and id(p) not in mine]
    return device, server


class _Server:
    """The server's end of a step: decode the activations, run the tail, step its
    optimizer, encode the gradient for the device (when it has something to train)."""

    def __init__(self, tail, params, *, lr: float, codec: str, send_grad: bool) -> None:
        self.tail, self.codec, self.send_grad = tail, codec, send_grad
        self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0) if params else None

    def step(self, message: bytes, labels: torch.Tensor, seed: int) -> tuple[float, bytes]:
        got = unpack(message, max_elements=_LIMIT)
        hidden = got.hidden.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(
            self.tail(Activations(hidden, got.attention_mask, got.last)), labels
        )
        loss.backward()
        if self.opt is not None:
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        if not self.send_grad:
            return float(loss.detach()), b""
        grad = Activations(hidden.grad, got.attention_mask, got.last)
        return float(loss.detach()), pack(grad, self.codec, seed=seed)


def train_split(model, task, tok, *, k: int, steps: int, batch_size: int, lr: float,
                max_length: int, seed: int, up: str = "q8", down: str = "q8",
                on_step=None) -> SplitLog:  # fmt: skip
    """``steps`` AdamW steps of split fine-tuning on ``task``'s training split;
    ``on_step(step, log)`` reports progress."""
    if task.kind != "cls":
        raise ValueError("split fine-tuning supports classification tasks")
    head, tail = split(model, k)
    device_params, server_params = halves(model, k)
    device_opt = (
        torch.optim.AdamW(device_params, lr=lr, weight_decay=0.0) if device_params else None
    )
    server = _Server(tail, server_params, lr=lr, codec=down, send_grad=device_opt is not None)
    log, rng = SplitLog(), np.random.default_rng(seed)
    model.train()
    for step in range(steps):
        idx = rng.choice(task.train_idx, batch_size, replace=False)
        batch = encode_batch(task, idx, tok, max_length)
        t0 = time.perf_counter()
        act = head(batch["input_ids"], batch["attention_mask"])
        message = pack(act, up, seed=seed + step)
        t1 = time.perf_counter()
        loss, grad = server.step(message, batch["labels"], seed + step)
        t2 = time.perf_counter()
        if device_opt is not None:
            act.hidden.backward(unpack(grad, max_elements=_LIMIT).hidden)
            device_opt.step()
            device_opt.zero_grad(set_to_none=True)
        log.device_s += (t1 - t0) + (time.perf_counter() - t2)
        log.server_s += t2 - t1
        log.up_bytes += len(message) + LABEL_BYTES * batch_size
        log.down_bytes += len(grad)
        log.steps += 1
        log.losses.append(loss)
        if on_step is not None:
            on_step(step + 1, log)
    model.eval()
    return log
