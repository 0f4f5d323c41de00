"""A client's compute setting applied to a model: the base at a precision or quantized by
bitsandbytes, gradient checkpointing, a device, autocast; the adapter stays fp32.

As in QLoRA, only the frozen base is stored narrow: LoRA factors, a trainable head and
AdamW's state are fp32 (an fp16 Adam step on fp16 weights underflows to NaN), so the
adapter crosses the network exactly as it does from an fp32 client and clients of
different settings join one federation.
"""

from __future__ import annotations

import contextlib
import hashlib
import os

import torch

from ..resources.memory import BLOCK, Setting

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# heads stay at the compute precision, never quantized (transformers does the same for
# lm_head); a classification head is trained
HEADS = ("score", "classifier", "lm_head", "pooler")


def bnb():
    """bitsandbytes, or a clear error: it is an optional extra (``pip install
    'fedslim[quant]'``)."""
    os.environ.setdefault("BITSANDBYTES_NOWELCOME", "1")
    try:
        import bitsandbytes
    except ImportError:
        raise ImportError(
            "config key 'base-quant': bitsandbytes is not installed "
            "(pip install 'fedslim[quant]' or pip install bitsandbytes)"
        ) from None
    return bitsandbytes


# a classification head stays fp32 in the base: its trained copy starts from it, and g0
# must not depend on the precision (the frozen lm_head of a causal LM is narrowed)
CLS_HEADS = ("score", "classifier")


def cast_base(model: torch.nn.Module, setting: Setting) -> None:
    """Narrow an fp32-built base to the setting: the classification head stays fp32, the
    linear layers are quantized."""
    for name, child in model.named_children():
        if name not in CLS_HEADS:
            child.to(DTYPES[setting.precision])
    quantize_linears(model, setting)


def load_options(setting: Setting, skip: tuple[str, ...] = HEADS) -> dict:
    """``from_pretrained`` arguments that load at the precision and quantize while loading
    (bitsandbytes through transformers), never after a full fp32 copy."""
    from transformers import BitsAndBytesConfig

    dtype = DTYPES[setting.precision]
    out: dict = {"dtype": dtype}
    if setting.base_quant == "int8":
        bnb()
        out["quantization_config"] = BitsAndBytesConfig(
            load_in_8bit=True, llm_int8_skip_modules=list(skip)
        )
    elif setting.base_quant in ("nf4", "fp4"):
        bnb()
        out["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=setting.base_quant,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=False,
            llm_int8_skip_modules=list(skip),
        )
    return out


def quantize_linears(module: torch.nn.Module, setting: Setting, skip=HEADS) -> None:
    """Replace every ``nn.Linear`` under ``module`` (but the heads) by bitsandbytes' layer
    of the setting, quantized now, on the CPU: deterministic (round to nearest per block),
    so every node quantizing the same weights holds the same bytes."""
    if setting.base_quant == "none":
        return
    lib = bnb()
    for name, child in list(module.named_children()):
        if any(name == s for s in skip):
            continue
        if type(child) is torch.nn.Linear:
            setattr(module, name, _quantized(lib, child, setting))
        else:
            quantize_linears(child, setting, skip)


def _quantized(lib, linear: torch.nn.Linear, setting: Setting) -> torch.nn.Module:
    dtype, bias = DTYPES[setting.precision], linear.bias is not None
    weight = linear.weight.data.to(dtype)
    with torch.device("meta"):  # the layer's own fp32 weight would be allocated and drawn
        new = _layer(lib, linear, setting)
    if setting.base_quant == "int8":
        new.weight = lib.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    else:
        new.weight = lib.nn.Params4bit(
            weight,
            requires_grad=False,
            blocksize=BLOCK,
            compress_statistics=False,
            quant_type=setting.base_quant,
        )
    if bias:
        new.bias = torch.nn.Parameter(linear.bias.data.to(dtype), requires_grad=False)
    return new.to("cpu")  # bitsandbytes quantizes on the move to a device


def _layer(lib, linear: torch.nn.Linear, setting: Setting) -> torch.nn.Module:
    dtype, bias = DTYPES[setting.precision], linear.bias is not None
    if setting.base_quant == "int8":
        return lib.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=bias,
                                  has_fp16_weights=False)  # fmt: skip
    return lib.nn.Linear4bit(linear.in_features, linear.out_features, bias=bias,
                             compute_dtype=dtype, quant_type=setting.base_quant)  # fmt: skip


def prepare(model: torch.nn.Module, setting: Setting, device: str) -> torch.nn.Module:
    """After PEFT wrapped the base: trainable parameters in fp32, checkpointing on or off,
    the model on its device, and what :func:`compute` needs remembered on it."""
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    if setting.gradient_checkpointing:
        # non-reentrant: works with a frozen embedding (no input that requires grad)
        model.base_model.model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    model.to(device)
    model.fedslim_compute = (device, setting.precision)
    return model


def compute(model):
    """Autocast at the model's precision on its device (a no-op for fp32)."""
    device, precision = compute_of(model)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[precision])


def compute_of(model) -> tuple[str, str]:
    """(device, precision) the model was prepared for."""
    return getattr(model, "fedslim_compute", ("cpu", "fp32"))


def resolve_device(name: str) -> str:
    """``auto``: the accelerator when there is one (CUDA, then Apple's MPS), else the CPU;
    a named device that is not there is a clear error."""
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if name.startswith("cuda"):
        index = int(name.partition(":")[2] or 0)
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ValueError(f"config key 'device': {name} requested, but torch sees "
                             f"{torch.cuda.device_count()} CUDA device(s)")  # fmt: skip
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("config key 'device': mps requested, but torch has no MPS device")
    return name


def base_tensors(model):
    """(name, tensor) of everything that defines the frozen base, quantization state
    included (bitsandbytes keeps scales beside the packed weights)."""
    for name, p in sorted(model.named_parameters()):
        yield name, p
        state = getattr(p, "quant_state", None)
        if state is not None:
            for key, value in sorted(state.as_dict(packed=True).items()):
                if isinstance(value, torch.Tensor):
                    yield f"{name}.{key}", value
        scb = getattr(p, "SCB", None)
        if isinstance(scb, torch.Tensor):
            yield f"{name}.SCB", scb


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """Raw bytes of any dtype (numpy has no bfloat16)."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def update_hash(h: hashlib._Hash, name: str, tensor: torch.Tensor) -> None:
    h.update(name.encode())
    h.update(str((tuple(tensor.shape), str(tensor.dtype))).encode())
    h.update(tensor_bytes(tensor))
