"""Base models (embedded tiny default, a Hugging Face directory, or a seeded random model
of a config's shape) wrapped with LoRA.

Every node builds the same base weights: the tiny model from a seeded config, a model
directory from its files, ``random:DIR`` from DIR/config.json and a seed, a fresh
classification head from the same seed; at the client's precision or quantized
(``precision.py``), deterministically. Only the adapter (and the head, when present) is
trained and exchanged.
"""

from __future__ import annotations

import math
import re
import warnings
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from peft import (
    FourierFTConfig,
    LoraConfig,
    TaskType,
    TinyLoraConfig,
    VeraConfig,
    get_peft_model,
)

from .. import seeds
from ..resources.memory import Setting
from . import layers, methods, precision
from .lora_names import LORA_A
from .methods import Method

TINY = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=512,
)


class HashTokenizer:
    """Words hashed into a fixed vocabulary: no vocabulary file, any text, one token a word.

    Why not bytes: a frozen random base cannot compose bytes into words within a few
    federated rounds, but it can carry a random embedding per word to the last position,
    which LoRA and the head then learn to read.
    """

    pad_token_id, bos_token_id, eos_token_id, unk_token_id = 0, 1, 2, 3
    vocab_size = 4096
    _WORD = re.compile(r"\w+|[^\w\s]")

    def encode(self, text: str, special: bool = True) -> list[int]:
        return [
            4 + zlib.crc32(w.encode("utf-8")) % (self.vocab_size - 4)
            for w in self._WORD.findall(text.lower())
        ]


class HFTokenizer:
    """A Hugging Face tokenizer behind the same surface as HashTokenizer."""

    def __init__(self, path: str) -> None:
        from transformers import AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(path)
        if self._tok.pad_token_id is None:
            self._tok.pad_token = self._tok.eos_token or self._tok.unk_token
        self.pad_token_id = self._tok.pad_token_id
        self.bos_token_id = self._tok.bos_token_id
        self.eos_token_id = self._tok.eos_token_id or self._tok.sep_token_id
        self.cls_token_id = self._tok.cls_token_id
        self.sep_token_id = self._tok.sep_token_id

    def encode(self, text: str, special: bool = True) -> list[int]:
        return self._tok(text, add_special_tokens=special)["input_ids"]


@dataclass(frozen=True)
class ModelSpec:
    model: str  # "tiny" or a directory
    kind: str  # "cls" or "sft"
    num_labels: int
    lora_r: int
    lora_alpha: float
    lora_targets: str
    seed: int
    freeze_a: bool = False  # FFA-LoRA: A stays at its seeded init and is not exchanged
    method: Method = Method()  # LoRA, or a PEFT method with seeded frozen factors
    setting: Setting = Setting()  # the base's precision / quantization, checkpointing
    device: str = "cpu"
    lora_layers: str = ""  # the adapted blocks (``layers.py``): "" every block

    @classmethod
    def from_config(
        cls,
        adapter,
        *,
        seed: int,
        num_labels: int,
        kind: str,
        rank: int | None = None,
        freeze_a: bool = False,
        setting: Setting | None = None,
        device: str = "cpu",
    ) -> ModelSpec:
        """The spec a node derives from the run's adapter section (``config.AdapterConfig``).

        ``rank`` below ``lora-r`` (heterogeneous ranks) scales alpha by ``rank / lora-r``
        so LoRA's scaling, alpha / r, is the same on every node.
        """
        r = rank or adapter.lora_r
        return cls(
            model=adapter.model,
            kind=kind,
            num_labels=num_labels,
            lora_r=r,
            lora_alpha=adapter.lora_alpha * r / adapter.lora_r,
            lora_targets=adapter.lora_targets,
            seed=seed,
            freeze_a=freeze_a,
            method=methods.parse(adapter.adapter_method),
            setting=setting or Setting(),
            device=device,
            lora_layers=adapter.lora_layers,
        )


RANDOM = "random:"  # "random:DIR": DIR/config.json's shape, seeded random weights


def model_dir(model: str) -> str:
    """The directory of a model named by path or as ``package:NAME`` (an installed package
    with ``get_model_path()``): results record the name, which travels; the path does not."""
    if model.startswith(RANDOM):
        return model[len(RANDOM) :]
    if not model.startswith("package:"):
        return model
    import importlib

    return str(importlib.import_module(model[len("package:") :]).get_model_path())


@lru_cache(maxsize=4)  # a pure function of the path; HF tokenizers are slow to load
def build_tokenizer(model: str) -> HashTokenizer | HFTokenizer:
    if model == "tiny" or model.startswith(RANDOM):  # a random base has no vocabulary file
        return HashTokenizer()
    return HFTokenizer(model_dir(model))


def model_config(spec: ModelSpec):
    """The Hugging Face config of the base (no weights read)."""
    from transformers import AutoConfig, LlamaConfig

    if spec.model != "tiny":
        config = AutoConfig.from_pretrained(model_dir(spec.model), num_labels=spec.num_labels or 2)
    else:
        tok = HashTokenizer()
        config = LlamaConfig(
            vocab_size=tok.vocab_size,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            num_labels=spec.num_labels,
            tie_word_embeddings=False,
            **TINY,
        )
    if config.pad_token_id is None:
        try:
            config.pad_token_id = build_tokenizer(spec.model).pad_token_id
        except (OSError, ValueError):  # a config-only directory: sizing needs no tokenizer
            config.pad_token_id = 0
    config.use_cache = False  # training only; checkpointing refuses a cache
    return config


def model_class(spec: ModelSpec):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return AutoModelForSequenceClassification if spec.kind == "cls" else AutoModelForCausalLM


def build_base(spec: ModelSpec) -> torch.nn.Module:
    """The frozen base model, bit-identical on every node for the same spec."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "newly initialized head" is expected here
    hf_logging.disable_progress_bar()
    torch.manual_seed(seeds.base_weights(spec.seed))
    setting, config = spec.setting, model_config(spec)
    if spec.model == "tiny":  # small: built in fp32 (the weights every run had), then cast
        model = model_class(spec).from_config(config)
        precision.cast_base(model, setting)
        precision.quantize_linears(model, setting)
    elif spec.model.startswith(RANDOM):
        from .random_base import random_base

        model = random_base(model_class(spec), config, setting, seed=spec.seed)
    else:
        model = model_class(spec).from_pretrained(
            model_dir(spec.model), config=config, **precision.load_options(setting)
        )
    return model.eval()


def adapter_config(spec: ModelSpec):
    """The PEFT config of the spec's method (``task/methods.py``)."""
    targets: Any
    if spec.lora_targets == "auto":
        targets = None  # PEFT's per-architecture default (q/v projections)
    elif spec.lora_targets == "all-linear":
        targets = "all-linear"
    else:
        targets = [t.strip() for t in spec.lora_targets.split(",") if t.strip()]
    task_type = TaskType.SEQ_CLS if spec.kind == "cls" else TaskType.CAUSAL_LM
    common = dict(task_type=task_type, target_modules=targets)
    if spec.lora_layers:
        common["layers_to_transform"] = adapted_blocks(spec)
    method, seed = spec.method, seeds.adapter_init(spec.seed)  # the frozen factors' seed
    if method.name == "vera":
        return VeraConfig(**common, r=method.size, projection_prng_key=seed, save_projection=False)
    if method.name == "fourierft":
        return FourierFTConfig(**common, n_frequency=method.size, random_loc_seed=seed)
    if method.name == "tinylora":
        return TinyLoraConfig(**common, r=method.rank, u=method.size, projection_seed=seed,
                              save_projection=False)  # fmt: skip
    return LoraConfig(**common, r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=0.0)


def adapted_blocks(spec: ModelSpec) -> list[int] | None:
    """The blocks ``lora-layers`` names in this base (its config only, no weights);
    ValueError naming the key for a block the base does not have."""
    if not spec.lora_layers:
        return None
    text = model_config(spec)
    try:
        return layers.blocks(spec.lora_layers, getattr(text, "text_config", text).num_hidden_layers)
    except ValueError as exc:
        raise ValueError(f"config key 'lora-layers': {exc}") from None


def build_model(spec: ModelSpec) -> torch.nn.Module:
    """Base model + adapter (LoRA or another method) and a trainable head for classification."""
    base = build_base(spec)
    config = adapter_config(spec)
    torch.manual_seed(seeds.adapter_init(spec.seed))  # identical g0 on every node
    try:
        with warnings.catch_warnings():  # PEFT probes a deprecated transformers attribute
            warnings.simplefilter("ignore", FutureWarning)
            model = get_peft_model(base, config)
    except ValueError as exc:  # e.g. target modules not found
        keys = f"config key 'lora-targets' ({spec.lora_targets!r})"
        if spec.lora_layers:  # or no module of the chosen blocks matched
            keys = f"{keys} with 'lora-layers' ({spec.lora_layers!r})"
        raise ValueError(f"{keys}: {exc}") from exc
    if spec.freeze_a:
        for name, param in model.named_parameters():
            if LORA_A in name:
                param.requires_grad = False
        model.exchange_excludes = (LORA_A,)  # read by task.adapters.get_adapter
    if spec.method.name in methods.DERIVED:  # every node derives these from the base
        model.exchange_excludes = methods.DERIVED[spec.method.name]
    model = precision.prepare(model, spec.setting, spec.device)  # the adapter in fp32 first
    if spec.method.is_lora:
        _replay_fp32_draw(model, spec.seed)
    return model


def _replay_fp32_draw(model, seed: int) -> None:
    """Set LoRA's A to PEFT's fp32 draw, whatever the base's dtype. PEFT draws A in fp32
    and then casts it to the base layer's dtype, so a bf16 client's g0 would be the fp32
    client's rounded and clients of mixed settings could not share one global adapter.
    The draws are replayed in fp32 with the same seed, order and calls (an ``nn.Linear``
    for A and for B, then kaiming-uniform on A); tests/task/test_precision.py checks the
    result equals an fp32 build's, so a PEFT release that draws otherwise fails there."""
    from peft.tuners.lora import LoraLayer

    torch.manual_seed(seeds.adapter_init(seed))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoraLayer) and "default" in module.lora_A:
                r, bias = module.r["default"], bool(module.lora_bias["default"])
                a = torch.nn.Linear(module.in_features, r, bias=False)
                torch.nn.Linear(r, module.out_features, bias=bias)  # B's draw, zeroed by PEFT
                torch.nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
                module.lora_A["default"].weight.copy_(a.weight)
