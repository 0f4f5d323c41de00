"""How much memory LoRA training takes at a precision, a quantized base and with or
without gradient checkpointing, and which setting a device should pick.

Pure functions of a model's shape (parameter counts from a model built on the meta
device, ``task/shape.py``), so ``fedslim memory`` can answer for an 8B model from its
``config.json`` alone, and the simulator, the client's memory plan and the split planner
share one formula:

    peak = runtime + max(loading, training)
    training = base weights at their storage + 16 B per trainable parameter (fp32 weight,
               gradient, AdamW's two moments) + activations kept for backward
               (every layer's, or one input per layer plus one layer's with
               checkpointing) + the logits of a language-model head

bitsandbytes' storage: int8 keeps one int8 per weight plus an fp32 scale per output row;
nf4/fp4 pack two weights a byte plus an fp32 absmax per block of 64 (transformers'
default, no double quantization). Embeddings, norms, biases and the output head stay at
the compute precision.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

MB = 1e6
PRECISIONS = ("fp32", "bf16", "fp16")
QUANTS = ("none", "int8", "nf4", "fp4")
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
QUANT_BYTES = {"int8": 1.0, "nf4": 0.5, "fp4": 0.5}  # per weight, before scales
BLOCK = 64  # bitsandbytes' 4-bit block size (transformers' default)
CHECKPOINT_FLOPS = 4 / 3  # a second forward pass during backward: 1 + 1/3 of a step's FLOPs

# Fitted on this host's measured peak RSS (benchmarks/memory.py: tiny, MiniLM and models
# of the shape of Qwen2.5-0.5B and Llama-3.2-1B at fp32, bf16 and nf4, with and without
# checkpointing). Values saved for backward per layer and token, in units of hidden and
# ffn width, and the fp32 copies of the logits a language-model loss keeps.
ACT_HIDDEN, ACT_FFN, LOGIT_COPIES = 14, 4, 5
# what a CUDA context and its kernels take on the accelerator before any tensor [u]
ACCEL_CONTEXT_MB = 500.0


@dataclass(frozen=True, order=True)
class Setting:
    """How a client holds and runs the frozen base; the adapter is always fp32."""

    precision: str = "fp32"
    base_quant: str = "none"
    gradient_checkpointing: bool = False

    def __str__(self) -> str:  # "bf16/nf4/ckpt": the form clients.csv and --set take
        return f"{self.precision}/{self.base_quant}" + (
            "/ckpt" if self.gradient_checkpointing else ""
        )

    @classmethod
    def parse(cls, text: str) -> Setting:
        parts = text.strip().split("/")
        ckpt = len(parts) == 3 and parts[2] == "ckpt"
        if len(parts) not in (2, 3) or (len(parts) == 3 and not ckpt):
            raise ValueError(f"expected PRECISION/QUANT[/ckpt], e.g. bf16/nf4/ckpt, got {text!r}")
        if parts[0] not in PRECISIONS or parts[1] not in QUANTS:
            raise ValueError(
                f"{text!r}: precision is one of {', '.join(PRECISIONS)}, quant one of "
                f"{', '.join(QUANTS)}"
            )
        return cls(parts[0], parts[1], ckpt)

    @property
    def flops_factor(self) -> float:
        return CHECKPOINT_FLOPS if self.gradient_checkpointing else 1.0


SETTINGS = tuple(
    Setting(p, q, c) for p, q, c in itertools.product(PRECISIONS, QUANTS, (False, True))
)


@dataclass(frozen=True)
class Shape:
    """What memory depends on, counted on the model (``task/shape.py``)."""

    linear_params: int  # weights of the base's linear layers: what bitsandbytes quantizes
    linear_rows: int  # their output features (int8 keeps a scale per row)
    other_params: int  # embeddings, norms, biases, output head (tied weights once)
    trainable_params: int  # LoRA factors and a trainable head
    largest_layer_params: int  # the biggest block: converted or quantized one at a time
    hidden: int
    layers: int
    ffn: int
    vocab: int
    lm_head: bool  # logits over the vocabulary at every position (a causal LM's loss)
    adapted_from: int = 0  # the lowest adapted block: the blocks below save nothing


@dataclass(frozen=True)
class Estimate:
    setting: Setting
    weights_mb: float
    trainable_mb: float
    activations_mb: float
    loading_mb: float
    runtime_mb: float

    @property
    def peak_mb(self) -> float:
        training = self.weights_mb + self.trainable_mb + self.activations_mb
        return self.runtime_mb + max(training, self.loading_mb)


def weight_bytes(shape: Shape, setting: Setting) -> float:
    """The frozen base as stored: quantized linear layers with their scales, the rest at
    the compute precision."""
    other = shape.other_params * BYTES[setting.precision]
    q = setting.base_quant
    if q == "none":
        return shape.linear_params * BYTES[setting.precision] + other
    if q == "int8":
        return shape.linear_params + 4 * shape.linear_rows + other
    return shape.linear_params * (QUANT_BYTES[q] + 4 / BLOCK) + other


def activation_bytes(shape: Shape, setting: Setting, *, batch: int, seq: int) -> float:
    """Saved for backward: per layer and token ``ACT_HIDDEN`` hidden-wide and ``ACT_FFN``
    ffn-wide values at the compute width; checkpointing keeps each layer's input and one
    layer's worth during recomputation; a language model's loss keeps its logits in fp32."""
    width = BYTES[setting.precision]
    tokens = batch * seq
    per_layer = tokens * (ACT_HIDDEN * shape.hidden + ACT_FFN * shape.ffn) * width
    layers = shape.layers - shape.adapted_from  # backward stops at the lowest adapted block
    if setting.gradient_checkpointing:
        kept = layers * tokens * shape.hidden * width + per_layer
    else:
        kept = layers * per_layer
    logits = LOGIT_COPIES * tokens * shape.vocab * 4 if shape.lm_head else 0
    return kept + logits


def estimate(
    shape: Shape, setting: Setting, *, batch: int, seq: int, runtime_mb: float
) -> Estimate:
    weights = weight_bytes(shape, setting)
    # loading: the finished weights plus one block at the precision before quantization
    loading = weights + BYTES[setting.precision] * shape.largest_layer_params
    return Estimate(
        setting=setting,
        weights_mb=weights / MB,
        trainable_mb=16 * shape.trainable_params / MB,
        activations_mb=activation_bytes(shape, setting, batch=batch, seq=seq) / MB,
        loading_mb=loading / MB,
        runtime_mb=runtime_mb,
    )


def throughput(device, setting: Setting) -> float:
    """FLOP/s relative to fp32 on ``device`` (its profile's factors): compute time is
    FLOPs / (device FLOP/s x throughput), the FLOPs those counted on what ran."""
    factor = {"fp32": 1.0, "bf16": device.bf16_speed, "fp16": device.fp16_speed}[setting.precision]
    if setting.base_quant == "int8":
        factor *= device.int8_speed
    elif setting.base_quant in ("nf4", "fp4"):
        factor *= device.nf4_speed
    return factor


def relative_time(device, setting: Setting) -> float:
    """A step's time relative to fp32 without checkpointing (its extra forward included)."""
    return setting.flops_factor / throughput(device, setting)


def plan(
    estimates: list[Estimate], device, *, accepted: tuple[Setting, ...] = SETTINGS
) -> Estimate | None:
    """``memory-plan = auto``: of the settings that fit ``device``'s memory, the fastest
    (FLOPs at the device's speed for that precision), then the most precise (order of
    ``PRECISIONS`` and ``QUANTS``, no checkpointing first). None when nothing fits."""
    fitting = [e for e in estimates if e.setting in accepted and fits(e, device)]
    if not fitting:
        return None
    return min(
        fitting, key=lambda e: (relative_time(device, e.setting), _precision_rank(e.setting))
    )


def fits(e: Estimate, device) -> bool:
    """Whether the setting fits: in host memory, or, on a device with an accelerator of
    its own memory, the training state there and the runtime and loading in host memory."""
    if device.accel_memory_mb:
        on_accel = e.weights_mb + e.trainable_mb + e.activations_mb + ACCEL_CONTEXT_MB
        return (
            on_accel <= device.accel_memory_mb and e.runtime_mb + e.loading_mb <= device.memory_mb
        )
    return e.peak_mb <= device.memory_mb


def _precision_rank(s: Setting) -> tuple[int, int, bool]:
    return PRECISIONS.index(s.precision), QUANTS.index(s.base_quant), s.gradient_checkpointing
