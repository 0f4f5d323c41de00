"""Device, link and price profiles for the simulator: every constant with its source.

[d] derived here from the cited inputs; [u] seen only in a secondary source or assumed,
to be replaced by a primary one. Compute is effective training FLOP/s, not peak: for
CPUs the sustained HPL figure (dense algebra, an optimistic bound for training). Measure
this host with ``fedslim calibrate`` and add your own profiles in a TOML file
(``profiles = FILE``, see :func:`load`).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError


@dataclass(frozen=True)
class Device:
    name: str
    flops: float  # effective training FLOP/s
    active_w: float  # whole-device power while training
    idle_w: float  # ... while waiting for the network
    memory_mb: float  # host memory training may use (unified memory included)
    # an accelerator with memory of its own (a discrete GPU); 0: none or unified memory
    accel_memory_mb: float = 0.0
    # training throughput relative to fp32 with a bf16 / fp16 base and compute, and the
    # extra factor of an int8 or 4-bit base (dequantized on the fly): resources/memory.py
    bf16_speed: float = 1.0
    fp16_speed: float = 1.0
    int8_speed: float = 1.0
    nf4_speed: float = 1.0


@dataclass(frozen=True)
class Link:
    name: str
    down_mbps: float
    up_mbps: float
    rtt_s: float
    # radio power while transferring, Huang et al. (MobiSys 2012): P = a_u r_u + a_d r_d + b
    # with r in Mbit/s and a in mW per Mbit/s (= nJ/bit), b in mW
    a_up_mw: float
    a_down_mw: float
    base_mw: float
    tail_j: float  # promotion + tail energy paid once per transfer
    usd_per_gb: float  # price of mobile data (0 for flat-rate links)


@dataclass(frozen=True)
class Prices:
    usd_per_kwh: float  # electricity
    server_usd_per_h: float  # the aggregation server
    server_flops: float  # its effective FLOP/s (central evaluation, aggregation)


# Per-precision throughput (Device.bf16_speed ...). A CPU dequantizes an int8 or 4-bit
# base on every forward and backward: bitsandbytes 0.50 on this host's CPU trained the
# tiny model with an nf4 base at 0.42x the FLOP/s of bf16 (`fedslim calibrate --set
# precision=bf16 --set base-quant=nf4`) [d]; int8 assumed alike [u]; other CPUs assumed
# alike [u]. GPUs: QLoRA's dequantization costs ~25% [u].
HOST_INT8, HOST_NF4 = 0.42, 0.42
CPU_QUANT = dict(int8_speed=HOST_INT8, nf4_speed=HOST_NF4)
GPU_QUANT = (0.75, 0.75)
# ARMv8.2 cores (A55, A76): FEAT_FP16 doubles the lanes per vector for fp16 [d], half
# of it sustained [u]; no bf16 arithmetic (FEAT_BF16 is v8.6): converted to fp32 [u]
ARM_V82 = dict(bf16_speed=0.5, fp16_speed=1.5, **CPU_QUANT)
ARM_V80 = dict(bf16_speed=0.5, fp16_speed=0.5, **CPU_QUANT)
CPU_HALF = dict(bf16_speed=1.0, fp16_speed=1.0, **CPU_QUANT)

DEVICES = {
    d.name: d
    for d in (
        # J. Geerling, top500-benchmark / sbc-reviews: HPL 11.9 GFLOP/s at 7.2 W (wall),
        # 1.6 W idle; the 4 GB model
        # A72 is ARMv8.0: no fp16/bf16 arithmetic (FEAT_FP16 is v8.2, FEAT_BF16 v8.6), half
        # precision is storage converted to fp32 [u]; 4-bit/int8: this host's ratio (CPU) [d]
        Device("raspberry-pi-4", 11.9e9, 7.2, 1.6, 4096, **ARM_V80),
        # Geerling: HPL 30.2 GFLOP/s; 0.36 nJ/FLOP at the wall -> 10.9 W [d]; idle 2.4-3.1 W
        Device("raspberry-pi-5", 30.2e9, 10.9, 2.7, 8192, **ARM_V82),
        # NVIDIA Jetson Orin Nano 8 GB datasheet: 1.28 TFLOP/s FP32 GPU peak, 15 W mode;
        # a third of peak sustained in training [u]; idle 5 W [u]
        # fp16/bf16 tensor cores: 40 INT8 TOPS sparse -> ~10 TFLOP/s fp16 dense, 7.8x the
        # fp32 peak [d]; half of that ratio sustained [u]; unified memory (no accel_memory)
        Device("jetson-orin-nano", 0.43e12, 15.0, 5.0, 8192, 0.0, 3.9, 3.9, *GPU_QUANT),
        # low-end phone, proxy RK3566 (4x A55), Geerling: HPL 5.6 GFLOP/s at 4.0 W; idle
        # 0.3 W [u]; 3 GB [u]
        Device("phone-low", 5.6e9, 4.0, 0.3, 3072, **ARM_V82),
        # mid-range phone: two A76-class big cores, between RK3566 and Pi 5 [d]; ~3.4 W
        # (mllm-NPU, arXiv 2407.05858) [u]; 6 GB [u]
        Device("phone-mid", 20e9, 3.4, 0.3, 6144, **ARM_V82),
        # laptop CPU, Apple M4: HPL 283-300 GFLOP/s at 39.6-42 W, 4-6 W idle (Geerling;
        # ServeTheHome M4 review); 16 GB
        # ARMv9.2 with FEAT_FP16 and FEAT_BF16: 2x the fp32 lanes per vector [d]; a
        # sustained gain is not measured [u]: 1.0
        Device("laptop", 283e9, 40.0, 5.0, 16384, **CPU_HALF),
        # desktop GPU, RTX 4090: 82.6 TFLOP/s FP32 peak, 450 W TGP (vendor); 40% of peak
        # sustained in training [u]; idle 30 W [u]; 24 GB on the GPU, 32 GB host [u];
        # fp16/bf16 tensor cores with fp32 accumulate 165.2 TFLOP/s, 2.0x fp32 (NVIDIA
        # Ada whitepaper) [d]
        Device("desktop-gpu", 33e12, 450.0, 30.0, 32768, 24576, 2.0, 2.0, *GPU_QUANT),
    )
}

LINKS = {
    lnk.name: lnk
    for lnk in (
        # 3G/HSPA: 3-4.6 Mbit/s down (OpenSignal 2016-17), 1 Mbit/s up and 150 ms [u];
        # Huang et al. Table 3 3G 868.98 / 122.12 mW per Mbit/s, b 817.88 mW [u]; AT&T ARO
        # defaults: promotion 2 s at 0.53 W + DCH tail 5 s at 0.70 W + FACH 12 s at 0.35 W
        # = 8.8 J [d]; mobile data a few USD per GB (cable.co.uk survey) [u]
        Link("3g", 3.8, 1.0, 0.150, 868.98, 122.12, 817.88, 8.8, 2.5),
        # LTE, Huang et al. (MobiSys 2012): 13 Mbit/s down, 6 up (medians), a_u 438.39,
        # a_d 51.97 mW per Mbit/s, b 1288.04 mW; promotion 0.31 J + tail 12.3 J; RTT
        # 57-65 ms [u]
        Link("lte", 13.0, 6.0, 0.060, 438.39, 51.97, 1288.04, 12.6, 2.5),
        # 5G NR sub-6: 203 Mbit/s down (Ookla Q3 2023), 21 up (Q3 2021); ~60 ms [d];
        # low-band refit of Narayanan et al. SIGCOMM 2021: a_u 29.1, a_d 13.5, b 3.0 W
        # (whole phone, screen on) [d]; ~10 s tail at 1 W [u]
        Link("5g", 203.0, 21.0, 0.060, 29.1, 13.5, 3000.0, 10.0, 2.5),
        # home WiFi / fixed: 84 Mbit/s down, 38 up (Ookla Q3 2023 global medians); 20 ms
        # [u]; Huang et al. WiFi 283.17 / 137.01, b 132.86 mW [u]; ~0.04 J per isolated
        # transfer (Huang); flat rate
        Link("wifi", 84.0, 38.0, 0.020, 283.17, 137.01, 132.86, 0.04, 0.0),
        # Starlink (LEO): ~105 down, ~15 up, 44-50 ms median RTT (Michel et al. IMC 2022;
        # Ookla); the device reaches the dish over WiFi (the dish's 50-75 W is the
        # household's, not the device's); flat rate
        Link("starlink", 105.0, 15.0, 0.047, 283.17, 137.01, 132.86, 0.04, 0.0),
        # GEO satellite: ~19 Mbit/s down (Ookla Q3 2021), 3 up [u], 629-744 ms RTT
        # (Michel et al.); device on WiFi; metered at ~10 USD per GB [u]
        Link("geo-satellite", 19.0, 3.0, 0.680, 283.17, 137.01, 132.86, 0.04, 10.0),
    )
}

# electricity: US average retail price, residential, 2023 (EIA Electric Power Monthly)
# ~0.16 USD/kWh [u]; server: one cloud vCPU pair (AWS c7i.large on-demand, us-east-1,
# 2024 price list) ~0.09 USD/h [u], ~100 GFLOP/s effective [u]
PRICES = Prices(usd_per_kwh=0.16, server_usd_per_h=0.09, server_flops=100e9)


def load(path: str | Path) -> tuple[dict[str, Device], dict[str, Link]]:
    """The catalogue plus a user's TOML file of ``[device.NAME]`` and ``[link.NAME]``
    tables (every field of :class:`Device` / :class:`Link` but the name); an entry may
    replace a catalogue one. A malformed file fails naming the entry and field."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config key 'profiles': cannot read {path}: {exc}") from None
    unknown = set(data) - {"device", "link"}
    if unknown:
        raise ConfigError(f"profiles {path}: unknown table {sorted(unknown)[0]!r}")
    devices = dict(DEVICES) | _entries(path, data.get("device", {}), Device)
    links = dict(LINKS) | _entries(path, data.get("link", {}), Link)
    return devices, links


def _entries(path, table: dict, cls: type) -> dict:
    kind = cls.__name__.lower()
    fields = [f.name for f in dataclasses.fields(cls) if f.name != "name"]
    optional = {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    out = {}
    for name, entry in table.items():
        where = f"profiles {path}: [{kind}.{name}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table")
        missing = [f for f in fields if f not in entry and f not in optional]
        extra = [k for k in entry if k not in fields]
        if missing or extra:
            bad = missing[0] if missing else extra[0]
            say = "lacks" if missing else "has unknown field"
            raise ConfigError(f"{where} {say} {bad!r}; fields: {', '.join(fields)}")
        for key in (f for f in fields if f in entry):
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where} field {key!r}: expected a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{where} field {key!r}: expected a finite number >= 0")
        out[name] = cls(name, **{k: float(entry[k]) for k in fields if k in entry})
    return out
