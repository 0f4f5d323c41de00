"""Decode steps of concurrent sessions at one split point, run as one forward.

Each session keeps its own cache (sessions start, stop and expire independently); a batch
left-pads their keys and values to the longest, masks the padding, runs the tail once
with each session's own position, and appends each session's new key and value to its own
cache. No waiting window: a step waits only while a batch is running, and the steps that
queued meanwhile form the next one, so a lone session pays one thread hand-off, and many
share the per-call cost of every layer, which dominates small models and short contexts.
Full-attention caches only (a sliding-window layer is stepped alone).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

import torch
import torch.nn.functional as F

from .generate import TailSession, session_cache


def batchable(session: TailSession) -> bool:
    from transformers.cache_utils import DynamicLayer

    cache = session.cache
    return cache is not None and all(
        type(layer) is DynamicLayer for i, layer in enumerate(cache.layers) if i >= session.k
    )


@torch.inference_mode()
def batched_step(sessions: list[TailSession], hidden: list[torch.Tensor]) -> torch.Tensor:
    """One decode token for each session ([1, 1, hidden] each); logits [sessions, vocab].
    Every session must be at the same k, past its prefill, with a full-attention cache."""
    first = sessions[0]
    tail, k = first.tail, first.k
    n = int(tail.top.config.num_hidden_layers)
    lengths = [s.seen for s in sessions]
    longest = max(lengths)
    batch = session_cache(tail.top, range(k, n))
    for i in range(k, n):
        for attr in ("keys", "values"):
            parts = [F.pad(getattr(s.cache.layers[i], attr), (0, 0, longest - length, 0))
                     for s, length in zip(sessions, lengths, strict=True)]  # fmt: skip
            setattr(batch.layers[i], attr, torch.cat(parts, 0))
        batch.layers[i].is_initialized = True
        batch.layers[i].dtype, batch.layers[i].device = parts[0].dtype, parts[0].device
    mask = torch.zeros(len(sessions), longest + 1, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, longest - length :] = 1
    positions = torch.tensor([[length] for length in lengths])
    out = tail.inner(inputs_embeds=torch.cat(hidden, 0), attention_mask=mask,
                     position_ids=positions, use_cache=True,
                     **{first._kw: batch})  # fmt: skip
    for row, s in enumerate(sessions):
        for i in range(k, n):
            new = batch.layers[i]
            s.cache.layers[i].update(
                new.keys[row : row + 1, :, -1:], new.values[row : row + 1, :, -1:]
            )
        s.seen += 1
    return tail.top.lm_head(out.last_hidden_state[:, -1])


class StepBatcher:
    """One thread per split point that runs whatever decode steps are queued, together."""

    def __init__(self, max_batch: int = 64) -> None:
        self.max_batch = max_batch
        self.steps = self.batches = 0  # how much batching happened
        self._inbox: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="split-batch")
        self._thread.start()

    def step(self, session: TailSession, hidden: torch.Tensor, start: int) -> torch.Tensor:
        """Like ``session.step`` for one token; runs in a batch with other sessions'."""
        if start != session.seen:  # the same refusal as an unbatched step
            return session.step(hidden, start)
        done: Future = Future()
        self._inbox.put((session, hidden, done))
        return done.result()

    def _loop(self) -> None:
        while True:
            batch = [self._inbox.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            self.steps, self.batches = self.steps + len(batch), self.batches + 1
            try:
                logits = batched_step([b[0] for b in batch], [b[1] for b in batch])
            except Exception as exc:  # noqa: BLE001  every waiting step hears of it
                for _, _, done in batch:
                    done.set_exception(exc)
                continue
            for row, (_, _, done) in enumerate(batch):
                done.set_result(logits[row])
