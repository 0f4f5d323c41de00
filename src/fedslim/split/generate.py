"""Split generation: the device's head and the server's tail each keep a KV cache for a
session, so a decode step sends one token's activations up and one token id down instead
of the whole sequence again.

Two traps of transformers' per-layer caches are closed here, not left to chance:

- A cache is a list indexed by the *global* layer number. The tail's blocks keep their
  numbers (k..n-1), so its cache holds empty slots below k, and ``get_seq_length()`` and
  the causal-mask helpers read slot 0 by default: the tail would see no past and put the
  new token at position 0 (no exception, wrong logits). Each side's cache therefore has
  transformers' ``DummyLayer`` in the slots of the other side's blocks, which the mask
  helpers and ``get_seq_length`` skip.
- Positions are counted on the device and travel with each step; the tail keeps its own
  count and refuses a step that does not continue it (a lost or replayed step).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .partition import Head, Tail, hf_model, split


def _dummy_layer():
    try:
        from transformers.cache_utils import DummyLayer
    except ImportError:  # older transformers: no slot the mask helpers skip
        raise RuntimeError(
            "split generation needs a transformers version with cache_utils.DummyLayer "
            "(5.x); upgrade transformers"
        ) from None
    return DummyLayer


def session_cache(top: torch.nn.Module, blocks: range):
    """A cache for the model's layers in ``blocks`` (global numbers); the other slots are
    dummies, so sequence length and masks come from a layer this side runs. ``None`` when
    this side runs no block."""
    if len(blocks) == 0:
        return None
    from transformers.cache_utils import DynamicCache

    dummy = _dummy_layer()
    cache = DynamicCache(config=top.config)
    for i in range(len(cache.layers)):
        if i not in blocks:
            cache.layers[i] = dummy()
    return cache


def cache_bytes(cache) -> int:
    """Bytes the keys and values of a session's cache hold now."""
    if cache is None:
        return 0
    total = 0
    for layer in cache.layers:
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def kv_bytes_per_token(model, blocks: int) -> int:
    """Bytes one token adds to a cache of ``blocks`` layers: a key and a value per layer,
    ``num_key_value_heads x head_dim`` each, at the dtype the blocks compute in."""
    config = hf_model(model).config
    heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    width = hf_model(model).get_input_embeddings().weight.element_size()  # never quantized
    return 2 * blocks * heads * int(head_dim) * width


def _cache_kw(inner: torch.nn.Module) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache``."""
    params = inspect.signature(inner.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def check_causal_lm(top: torch.nn.Module) -> None:
    if not isinstance(getattr(top, "lm_head", None), torch.nn.Module):
        raise ValueError(
            f"split generation needs a causal LM (an lm_head); {type(top).__name__} has none"
        )


class HeadSession:
    """The device's side of a session: embeddings and blocks[:k] with their cache."""

    def __init__(self, head: Head, k: int) -> None:
        check_causal_lm(head.top)
        self.head, self.k, self.seen = head, k, 0
        self.cache = session_cache(head.top, range(k))
        self._kw = _cache_kw(head.inner)

    @torch.inference_mode()
    def step(self, ids: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(hidden states entering block k for ``ids`` [1, t], their first position)."""
        start, t = self.seen, ids.shape[1]
        positions = torch.arange(start, start + t).unsqueeze(0)
        out = self.head.inner(input_ids=ids, position_ids=positions, use_cache=self.k > 0,
                              **{self._kw: self.cache})  # fmt: skip
        self.seen += t
        return out.last_hidden_state, start

    @torch.inference_mode()
    def output(self, hidden: torch.Tensor) -> torch.Tensor:
        """The U-shape's output head on the device: logits of the tail's last hidden state
        ([1, 1, hidden], already final-normed)."""
        return self.head.top.lm_head(hidden.reshape(-1))

    def cache_bytes(self) -> int:
        return cache_bytes(self.cache)


class PositionError(ValueError):
    """A step that does not continue the session (lost, replayed or reordered)."""


class TailSession:
    """The server's side: blocks[k:], the final norm and the output head with their cache."""

    def __init__(self, tail: Tail, k: int) -> None:
        check_causal_lm(tail.top)
        n = int(tail.top.config.num_hidden_layers)
        self.tail, self.k, self.seen = tail, k, 0
        self.cache = session_cache(tail.top, range(k, n))
        self._kw = _cache_kw(tail.inner)

    @torch.inference_mode()
    def step(self, hidden: torch.Tensor, start: int) -> torch.Tensor:
        """Next-token logits [vocabulary] after the step's last token."""
        return self.tail.top.lm_head(self.last_hidden(hidden, start))

    @torch.inference_mode()
    def last_hidden(self, hidden: torch.Tensor, start: int) -> torch.Tensor:
        """The final-normed hidden state [hidden] after the step's last token: what the
        U-shape sends back for the device's own output head."""
        if start != self.seen:
            raise PositionError(f"step starts at position {start}; the session is at {self.seen}")
        t = hidden.shape[1]
        positions = torch.arange(start, start + t).unsqueeze(0)
        out = self.tail.inner(inputs_embeds=hidden, position_ids=positions,
                              use_cache=self.cache is not None,
                              **{self._kw: self.cache})  # fmt: skip
        self.seen += t
        return out.last_hidden_state[0, -1]

    def cache_bytes(self) -> int:
        return cache_bytes(self.cache)


@dataclass(frozen=True)
class Sampling:
    """Greedy at temperature 0; otherwise nucleus sampling from a seeded generator, so a
    (prompt, seed) pair gives the same text every time."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top-p must be in (0, 1], got {self.top_p}")

    def sampler(self):
        gen = torch.Generator().manual_seed(self.seed)

        def pick(logits: torch.Tensor) -> int:
            if self.temperature == 0:
                return int(torch.argmax(logits))
            probs = torch.softmax(logits.float() / self.temperature, dim=-1)
            ordered, index = torch.sort(probs, descending=True)
            keep = torch.cumsum(ordered, 0) - ordered < self.top_p  # the first always stays
            ordered = ordered * keep
            return int(index[torch.multinomial(ordered / ordered.sum(), 1, generator=gen)])

        return pick


GREEDY = Sampling()


def eos_ids(model) -> set[int]:
    eos = hf_model(model).config.eos_token_id
    return set(eos if isinstance(eos, list) else [] if eos is None else [eos])


def generate_local(model, k: int, prompt: torch.Tensor, max_new_tokens: int, *,
                   sampling: Sampling = GREEDY, transfer=None,
                   u_shape: bool = False) -> Iterator[int]:  # fmt: skip
    """Split generation in one process (tests, the planner's timing): head and tail
    sessions, each step's activations through ``transfer`` (e.g. a codec round trip);
    ``u_shape``: the tail's last hidden state comes back the same way and the device runs
    the output head."""
    head, tail = split(model, k)
    device, server = HeadSession(head, k), TailSession(tail, k)
    pick, stop = sampling.sampler(), eos_ids(model)
    move = transfer or (lambda h: h)
    ids = prompt
    for _ in range(max_new_tokens):
        hidden, start = device.step(ids)
        if u_shape:
            back = move(server.last_hidden(move(hidden), start).reshape(1, 1, -1))
            logits = device.output(back)
        else:
            logits = server.step(move(hidden), start)
        token = pick(logits)
        yield token
        if token in stop:
            return
        ids = torch.tensor([[token]])
