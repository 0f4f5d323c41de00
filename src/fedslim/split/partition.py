"""Cut a transformers model with its LoRA adapter into a head (embeddings + blocks[:k])
and a tail (blocks[k:] + final norm + output head), for any k from 0 to the block count.

Each half runs the model's *own* forward over a shallow copy of its inner model whose
block list is a slice (parameters and adapter shared, nothing duplicated), so attention
masks, positions and rotary embeddings are computed exactly as in the unsplit model; the
tail enters through ``inputs_embeds`` with the embedding layer bypassed. Supported: the
embedded tiny Llama and Llama-like models (``model.layers``) with a classification or
causal LM head, and BERT-like encoders such as MiniLM (``bert.encoder.layer``) with a
classification head.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Activations:
    """What crosses the link: the hidden states entering block k, the attention mask, and
    for classification the position each sequence is read at (its last real token)."""

    hidden: torch.Tensor  # [batch, tokens, hidden], float32
    attention_mask: torch.Tensor  # [batch, tokens]
    last: torch.Tensor  # [batch], the pooled position (decoders) or zeros


class _Passthrough(nn.Module):
    """Stands in for BERT's embeddings on the tail: the activations are the input."""

    def forward(self, input_ids=None, inputs_embeds=None, **kwargs):
        return inputs_embeds


def hf_model(model) -> nn.Module:
    """The transformers model under a PEFT wrapper (a plain one is its own)."""
    base = getattr(model, "base_model", None)  # transformers' base_model is the inner model
    wrapped = hasattr(model, "peft_config") and isinstance(getattr(base, "model", None), nn.Module)
    return base.model if wrapped else model


def _inner(top: nn.Module) -> tuple[str, nn.Module]:
    for name in ("model", "bert", "transformer"):
        if isinstance(getattr(top, name, None), nn.Module):
            return name, getattr(top, name)
    raise ValueError(f"cannot split {type(top).__name__}: no inner model found")


def _blocks(inner: nn.Module) -> tuple[nn.Module, str]:
    """(the module holding the block list, its attribute name)."""
    if hasattr(inner, "layers"):
        return inner, "layers"
    if hasattr(inner, "encoder") and hasattr(inner.encoder, "layer"):
        return inner.encoder, "layer"
    raise ValueError(f"cannot split {type(inner).__name__}: no block list found")


def parts(model) -> tuple[nn.Module, list[nn.Module]]:
    """(the inner transformer, its blocks in order) of a model, PEFT-wrapped or not."""
    inner = _inner(hf_model(model))[1]
    holder, attr = _blocks(inner)
    return inner, list(getattr(holder, attr))


def num_blocks(model) -> int:
    return len(parts(model)[1])


def _view(inner: nn.Module, blocks: slice, *, head: bool) -> nn.Module:
    """A shallow copy of ``inner`` sharing every parameter, with a slice of its blocks; the
    head keeps the embeddings and drops the final norm / pooler, the tail the reverse."""
    view = copy.copy(inner)
    view._modules = dict(inner._modules)
    holder, attr = _blocks(inner)
    sliced = nn.ModuleList(list(getattr(holder, attr))[blocks])
    if holder is inner:
        view._modules[attr] = sliced
    else:  # BERT: the blocks live in the encoder
        encoder = copy.copy(holder)
        encoder._modules = dict(holder._modules)
        encoder._modules[attr] = sliced
        view._modules["encoder"] = encoder
    if head:
        for name in ("norm", "pooler"):
            if name in view._modules and view._modules[name] is not None:
                view._modules[name] = nn.Identity()
    elif "embeddings" in view._modules:
        view._modules["embeddings"] = _Passthrough()
    return view


_HEADS = ("score", "classifier", "lm_head")  # what the tail knows how to run


def split(model, k: int) -> tuple[Head, Tail]:
    n = num_blocks(model)
    if not 0 <= k <= n:
        raise ValueError(f"split point k={k}: expected 0..{n} (the model has {n} blocks)")
    top = hf_model(model)
    if not any(isinstance(getattr(top, h, None), nn.Module) for h in _HEADS):
        raise ValueError(
            f"cannot split {type(top).__name__}: its output head is none of {', '.join(_HEADS)}"
        )
    _, inner = _inner(top)
    return Head(top, _view(inner, slice(0, k), head=True)), Tail(
        top, _view(inner, slice(k, n), head=False)
    )


_OUTPUT_HEADS = (*_HEADS, "dropout")  # and what only they use


def device_head(model, k: int, *, keep_output: bool = False) -> Head:
    """The device's half alone: ``model`` (changed in place, unusable whole afterwards)
    drops blocks[k:], the final norm / pooler and the output head, so a weak device keeps
    only the weights it runs, as the planner prices it. Take the fingerprint before: it
    covers the whole model, as the server's does. ``keep_output`` keeps a causal LM's
    output head (the U-shape of split generation: the server sends back normed states).

    The kept weights are copied: weights loaded from safetensors share one file mapping,
    which one kept tensor would hold whole (and hashing touched every page of it)."""
    head, _ = split(model, k)
    top = hf_model(model)
    _, inner = _inner(top)
    holder, attr = _blocks(inner)
    setattr(holder, attr, nn.ModuleList(list(getattr(holder, attr))[:k]))
    outputs = tuple(h for h in _OUTPUT_HEADS if not (keep_output and h == "lm_head"))
    for owner, names in ((inner, ("norm", "pooler")), (top, outputs)):
        for name in names:
            if isinstance(getattr(owner, name, None), nn.Module):
                setattr(owner, name, nn.Identity())
    for p in top.parameters():
        p.data = p.data.clone()
    for module in top.modules():
        for name, buf in module.named_buffers(recurse=False):
            setattr(module, name, buf.clone())
    return head


class Head(nn.Module):
    """Embeddings and the first k blocks: what the device runs. Gradients flow through
    both halves (split fine-tuning); inference wraps calls in ``torch.inference_mode``."""

    def __init__(self, top: nn.Module, inner: nn.Module) -> None:
        super().__init__()
        self.top, self.inner = top, inner

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Activations:
        out = self.inner(input_ids=input_ids, attention_mask=attention_mask)
        pad = self.top.config.pad_token_id
        if pad is None:
            last = torch.full((input_ids.shape[0],), input_ids.shape[1] - 1)
        else:  # the rightmost token that is not padding, as the unsplit model reads it
            keep = (input_ids != pad).to(torch.int32)
            last = (torch.arange(input_ids.shape[1], dtype=torch.int32) * keep).argmax(-1)
        return Activations(out.last_hidden_state, attention_mask, last)


class Tail(nn.Module):
    """The remaining blocks, the final norm and the output head: what the server runs."""

    def __init__(self, top: nn.Module, inner: nn.Module) -> None:
        super().__init__()
        self.top, self.inner = top, inner

    def _blocks_out(self, act: Activations):
        return self.inner(
            inputs_embeds=act.hidden, attention_mask=act.attention_mask, use_cache=False
        )

    def forward(self, act: Activations) -> torch.Tensor:
        out = self._blocks_out(act)
        top = self.top
        if hasattr(top, "score"):  # decoder classification: read the last real token
            logits = top.score(out.last_hidden_state)
            return logits[torch.arange(logits.shape[0]), act.last]
        if hasattr(top, "classifier"):  # encoder classification: the pooled first token
            return top.classifier(top.dropout(out.pooler_output))
        return top.lm_head(out.last_hidden_state)

    def predict(self, act: Activations) -> torch.Tensor:
        """One row of logits per sequence: a causal LM's next-token logits after its last
        real token (the output head runs on that token only: batch x vocabulary, not
        batch x tokens x vocabulary), a classifier's class logits."""
        if not hasattr(self.top, "lm_head"):
            return self(act)
        hidden = self._blocks_out(act).last_hidden_state
        return self.top.lm_head(hidden[torch.arange(hidden.shape[0]), act.last])
