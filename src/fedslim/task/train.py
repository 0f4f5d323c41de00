"""Local training and evaluation loops; FLOPs are counted on what actually ran."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from .data import TaskData
from .precision import compute, compute_of

IGNORE = -100


@dataclass(frozen=True)
class TrainResult:
    loss: float  # mean training loss over the local steps
    seconds: float  # wall time of the steps (forward, backward, optimizer)
    flops: int  # counted by torch's FlopCounterMode on the steps that ran
    steps: int


def _tokenize(task: TaskData, idx: np.ndarray, tok, max_length: int) -> tuple[list, list]:
    rows, labels = [], []
    for i in idx:
        if task.kind == "cls":
            rows.append(tok.encode(task.inputs[i])[:max_length])
            labels.append(task.targets[i])
        else:
            prompt = tok.encode(task.inputs[i])
            answer = tok.encode(task.targets[i], special=False) + [tok.eos_token_id]
            rows.append((prompt + answer)[:max_length])
            labels.append(([IGNORE] * len(prompt) + answer)[:max_length])
    return rows, labels


def _pad(task: TaskData, rows: list, labels: list, tok, width: int) -> dict:
    ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(rows):
        ids[j, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[j, : len(r)] = 1
    if task.kind == "cls":
        target = torch.tensor(labels, dtype=torch.long)
    else:
        target = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        for j, lab in enumerate(labels):
            target[j, : len(lab)] = torch.tensor(lab, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": target}


def encode_batch(task: TaskData, idx: np.ndarray, tok, max_length: int) -> dict:
    """Tokenise examples ``idx`` into right-padded tensors (labels included)."""
    rows, labels = _tokenize(task, idx, tok, max_length)
    return _pad(task, rows, labels, tok, max(len(r) for r in rows))


def _batches(indices: np.ndarray, batch_size: int, steps: int, rng: np.random.Generator):
    """``steps`` batches drawn epoch by epoch (every example once before repeats)."""
    order: list[int] = []
    for _ in range(steps):
        while len(order) < batch_size:
            order.extend(rng.permutation(indices).tolist())
        yield np.asarray(order[:batch_size])
        order = order[batch_size:]


def train_local(
    model,
    task: TaskData,
    indices: np.ndarray,
    tok,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    max_length: int,
    seed: int,
    proximal_mu: float = 0.0,
) -> TrainResult:
    """Run ``steps`` AdamW steps on the trainable (adapter) parameters only.

    ``proximal_mu > 0`` adds FedProx's ``mu/2 * ||w - w_start||^2``, which keeps a
    client's adapter near the one it received when local data is skewed.
    """
    if len(indices) == 0:
        raise ValueError("this node's partition is empty; use fewer nodes or partition=iid")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    raw = [_tokenize(task, b, tok, max_length) for b in _batches(indices, batch_size, steps, rng)]
    # One width for the whole round: every step has the same shapes, hence the same FLOPs,
    # so counting the first step exactly (FlopCounterMode costs ~4x a step) counts them all.
    width = max(len(r) for rows, _ in raw for r in rows)
    batches = [_pad(task, rows, labels, tok, width) for rows, labels in raw]
    anchor = [p.detach().clone() for p in params] if proximal_mu > 0 else None
    device, precision = compute_of(model)
    # fp16 gradients underflow without loss scaling; bf16 and fp32 need none
    scaler = torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")
    model.train()
    total = 0.0
    counter = FlopCounterMode(display=False)
    start = time.perf_counter()
    for step, batch in enumerate(batches):
        batch = {k: v.to(device) for k, v in batch.items()}
        with counter if step == 0 else contextlib.nullcontext():
            with compute(model):
                out = model(**batch)
            loss = out.loss.float()
            if anchor is not None:
                drift = sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))
                loss = loss + 0.5 * proximal_mu * drift
            scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        total += float(out.loss.detach())
    seconds = time.perf_counter() - start
    model.eval()
    return TrainResult(
        loss=total / steps,
        seconds=seconds,
        flops=int(counter.get_total_flops()) * steps,
        steps=steps,
    )


def round_flops(
    model, task: TaskData, tok, *, steps: int, batch_size: int, max_length: int, seed: int
) -> int:
    """FLOPs of one client's local round, counted on one step of this model as
    :func:`train_local` runs it (batches padded to the round's longest example), for
    planning before any client has trained. The model's weights are left as they were."""
    rng = np.random.default_rng(seed)
    rows, labels = _tokenize(task, rng.choice(task.train_idx, steps * batch_size), tok, max_length)
    width = max(len(r) for r in rows)
    batch = _pad(task, rows[:batch_size], labels[:batch_size], tok, width)
    device, _ = compute_of(model)
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.train()
    with counter:
        with compute(model):
            out = model(**{k: v.to(device) for k, v in batch.items()})
        out.loss.float().backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return int(counter.get_total_flops()) * steps


@torch.no_grad()
def evaluate(
    model,
    task: TaskData,
    tok,
    *,
    max_length: int,
    batch_size: int = 64,
    indices: np.ndarray | None = None,
) -> dict[str, float]:
    """Accuracy and mean loss on the held-out split (token accuracy for sft)."""
    idx = task.eval_idx if indices is None else indices
    model.eval()
    correct = count = 0
    loss_sum = 0.0
    for s in range(0, len(idx), batch_size):
        batch = encode_batch(task, idx[s : s + batch_size], tok, max_length)
        batch = {k: v.to(compute_of(model)[0]) for k, v in batch.items()}
        with compute(model):
            out = model(**batch)
        if task.kind == "cls":
            n = len(batch["labels"])
            correct += int((out.logits.argmax(-1) == batch["labels"]).sum().cpu())
            loss_sum += float(out.loss) * n
        else:
            pred = out.logits[:, :-1].argmax(-1)
            gold = batch["labels"][:, 1:]
            keep = gold != IGNORE
            n = int(keep.sum())
            correct += int((pred[keep] == gold[keep]).sum())
            loss_sum += float(out.loss) * n
        count += n
    loss = loss_sum / max(count, 1)
    return {"accuracy": correct / max(count, 1), "loss": loss if math.isfinite(loss) else 1e9}
