"""Run configuration: one frozen dataclass per concern, one flat kebab-case mapping outside.

Flower hands every app a flat ``{kebab-key: value}`` mapping and the CLI takes
``--set KEY=VALUE``; inside, a :class:`RunConfig` holds one section per concern (task,
adapter, codecs, rounds, strategy), each validating its own keys. Strategy tuning keys
are declared by the strategy files that own them (``strategies/catalog.py`` lists them)
and only the chosen strategy's are read. ``RunConfig.from_mapping`` fails naming the key
and what is accepted, before anything starts.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..strategies import catalog
from .client import FULL_PRECISION, ComputeConfig
from .privacy import PrivacyConfig
from .sections import (
    AdapterConfig,
    CodecConfig,
    PricingConfig,
    RoundsConfig,
    StrategyConfig,
    TaskConfig,
    _check,
    _kebab,
    _key,
)

__all__ = [
    "AdapterConfig",
    "CodecConfig",
    "ComputeConfig",
    "ConfigError",
    "RoundsConfig",
    "RunConfig",
    "EngineConfig",
    "PricingConfig",
    "PrivacyConfig",
    "StrategyConfig",
    "TaskConfig",
    "load_toml",
    "split_config",
]


TRACKERS = {"none": "", "tensorboard": "tensorboard", "mlflow": "mlflow"}  # name -> package
SECTIONS = {
    "task": TaskConfig,
    "adapter": AdapterConfig,
    "codecs": CodecConfig,
    "rounds": RoundsConfig,
    "sim": PricingConfig,
    "client": ComputeConfig,
    "privacy": PrivacyConfig,
}


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """What the ServerApp and every ClientApp of one run agree on."""

    task: TaskConfig = field(default_factory=TaskConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    codecs: CodecConfig = field(default_factory=CodecConfig)
    rounds: RoundsConfig = field(default_factory=RoundsConfig)
    sim: PricingConfig = field(default_factory=PricingConfig)
    client: ComputeConfig = field(default_factory=ComputeConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    seed: int = _key("seeds data, base weights, sampling and training", 0)
    train_seed: int = _key("seeds the clients' batches and dropout alone; -1: seed", -1)
    out: str = _key('results directory; "" means runs/<timestamp>-<id>', "")
    resume: bool = _key("continue the run in `out` from its last checkpoint", False)
    overwrite: bool = _key("replace a finished or partial run already in `out`", False)
    tracker: str = _key("none, tensorboard or mlflow: where each round's ledger is logged", "none")

    def __post_init__(self) -> None:
        _check(0 <= self.seed < 2**32, "seed", "an integer in 0..2^32-1", self.seed)
        _check(-1 <= self.train_seed < 2**32, "train-seed", "-1 or 0..2^32-1", self.train_seed)
        _check(self.tracker in TRACKERS, "tracker", " or ".join(TRACKERS), self.tracker)
        package = TRACKERS[self.tracker]
        missing = package and importlib.util.find_spec(package) is None
        _check(not missing, "tracker", f"{package} installed (pip install 'fedslim[tracking]')")
        _check(not (self.resume and self.overwrite), "overwrite", "false with resume", True)
        refusal = catalog.mixed_ranks_refusal(self.strategy.name)
        _check(
            not (self.adapter.heterogeneous and refusal),
            "lora-ranks",
            f"uniform ranks: {refusal}",
            self.adapter.lora_ranks,
        )
        self.strategy.spec.validate(self.to_mapping())
        self._lora_only()
        if self.strategy.spec.base_residual:  # exact aggregation folds fp32 residuals in
            self._full_precision_base()
        if self.privacy.on:
            self._private("dp=central")
        if self.privacy.secagg:
            self._private("secagg=true")
            self._secure()

    @property
    def training_seed(self) -> int:
        """The clients' SGD draws: ``train-seed`` apart from ``seed`` separates the noise
        of training from that of the data, population and start (HF's ``data_seed``
        splits the other way). It is absolute: the same value gives every ``seed`` the
        same stream; sampling, availability, codec and DP draws stay with ``seed``."""
        return self.seed if self.train_seed < 0 else self.train_seed

    def _private(self, what: str) -> None:
        """DP-FedAvg bounds one client's effect on a mean of clipped updates, and secure
        aggregation reveals only a sum: a strategy that aggregates otherwise, or weights
        ranks apart, has another sensitivity and needs more than the sum."""
        refusal = self.strategy.spec.dp_refusal
        _check(not refusal, "strategy", f"a mean of updates with {what} ({refusal})",
               self.strategy.name)  # fmt: skip
        _check(
            not self.adapter.heterogeneous,
            "lora-ranks",
            f'"" with {what} (rank-aware weighting gives each rank its own sensitivity)',
            self.adapter.lora_ranks,
        )

    def _secure(self) -> None:
        """Secure aggregation sends its own masked integer codes, and the server never sees
        one update to measure or decode with a client's own pipeline."""
        _check(self.codecs.uplink == "none", "uplink-codec",
               '"none" with secagg=true (clients send masked integer codes of secagg-bits; '
               "a client's own scales, indices or entropy coding cannot be summed under masks)",
               self.codecs.uplink)  # fmt: skip
        _check(self.rounds.max_update_norm == 0, "max-update-norm",
               "0 with secagg=true (the server sees no single update; clients clip to dp-clip)",
               self.rounds.max_update_norm)  # fmt: skip

    def _lora_only(self) -> None:
        """FFA-LoRA freezes LoRA's A, exact aggregation folds B A into the base and
        heterogeneous ranks slice LoRA's factors: none has a meaning for another method."""
        if self.adapter.adapter_method.strip() == "lora":
            return
        spec = self.strategy.spec
        _check(
            not (spec.freezes_a or spec.base_residual),
            "strategy",
            f"a strategy for any adapter with adapter-method={self.adapter.adapter_method} "
            f"({self.strategy.name} works on LoRA's factors)",
            self.strategy.name,
        )
        _check(
            not self.adapter.heterogeneous,
            "lora-ranks",
            f'"" with adapter-method={self.adapter.adapter_method} (ranks are LoRA\'s)',
            self.adapter.lora_ranks,
        )

    def _full_precision_base(self) -> None:
        """Exact aggregation folds a dense fp32 residual into the base weights: a bf16/fp16
        base rounds it away, a quantized one cannot hold it (memory-plan=auto then chooses
        among fp32 settings only)."""
        narrow = [s for s in self.client.settings() if not FULL_PRECISION(s)]
        if not narrow or self.client.memory_plan == "auto":
            return
        key = "base-quant" if narrow[0].base_quant != "none" else "precision"
        _check(
            False,
            "client-settings" if self.client.client_settings else key,
            f"fp32 and base-quant=none with strategy {self.strategy.name} (it folds a dense "
            "fp32 residual into the base weights: a bf16/fp16 base rounds it away, a "
            f"quantized one cannot hold it; ffa averages exactly without one), not {narrow[0]}",
        )

    # ---- the flat mapping ---------------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RunConfig:
        """Build from Flower's flat kebab-case run config, rejecting unknown keys."""
        keys = flat_keys()
        unknown = [k for k in values if k not in keys]
        if unknown:
            raise ConfigError(
                f"unknown config key '{unknown[0]}'; accepted keys: {', '.join(sorted(keys))}"
            )
        parts: dict[str, dict[str, Any]] = {name: {} for name in (*SECTIONS, "run", "options")}
        for key, raw in values.items():
            section, name, kind = keys[key]
            parts[section][name] = _typed(key, kind, raw)
        sections = {name: kind(**parts[name]) for name, kind in SECTIONS.items()}
        options = {k: o.default for k, o in catalog.OPTIONS.items()} | parts["options"]
        strategy_name = parts["run"].pop("strategy", "fedavg")
        strategy = StrategyConfig(name=strategy_name, options=options)
        return cls(**sections, strategy=strategy, **parts["run"])

    @classmethod
    def of(cls, **values: Any) -> RunConfig:
        """``RunConfig.of(lora_r=4, strategy="ffa")``: flat keys with underscores."""
        return cls.from_mapping({_kebab(k): v for k, v in values.items()})

    def to_mapping(self) -> dict[str, Any]:
        """Every key, flat: what Flower's run config holds."""
        out: dict[str, Any] = {}
        for section in SECTIONS:
            obj = getattr(self, section)
            for f in dataclasses.fields(obj):
                out[f.metadata["key"] or _kebab(f.name)] = getattr(obj, f.name)
        out["strategy"] = self.strategy.name
        out |= dict(self.strategy.options)
        return out | {
            "seed": self.seed, "train-seed": self.train_seed, "out": self.out,
            "resume": self.resume, "overwrite": self.overwrite, "tracker": self.tracker,
        }  # fmt: skip

    def record(self) -> dict[str, Any]:
        """The keys that define the experiment, for results and resume checks: every key
        except the tuning keys the chosen strategy does not read, ``uplink-gains`` under
        one pipeline for all, ``overwrite`` and ``tracker`` (how the run was started and
        watched, not what it is)."""
        spec = self.strategy.spec
        unread = {"overwrite", "tracker"} | (
            set() if self.codecs.policy.per_client else {"uplink-gains"}  # one pipeline
        )
        kept = {k: v for k, v in self.to_mapping().items() if k not in unread}
        return {k: v for k, v in kept.items() if k not in catalog.OPTIONS or spec.reads(k)}

    def differences(self, saved: Mapping[str, Any]) -> list[str]:
        """Keys whose value differs from a recorded config (``summary.json``, a checkpoint);
        a key added since it was recorded counts as its default, which keeps the old
        behaviour, and a file named by another spelling of its path is the same file."""
        default = RunConfig().to_mapping()
        return [k for k, v in self.record().items()
                if not _same(saved.get(k, default[k]), v)]  # fmt: skip

    def changed(self, section: str) -> list[str]:
        """Flat keys of ``section`` whose value is not the default."""
        now, default = self.to_mapping(), RunConfig().to_mapping()
        keys = [k for k, (sec, _, _) in flat_keys().items() if sec == section]
        return [k for k in keys if now[k] != default[k]]

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with flat keys (underscores) changed, validated again."""
        return RunConfig.from_mapping(
            self.to_mapping() | {_kebab(k): v for k, v in changes.items()}
        )


def _same(saved: Any, now: Any) -> bool:
    if saved == now:
        return True
    if not (isinstance(saved, str) and isinstance(now, str) and Path(now).is_file()):
        return False
    return Path(saved).is_file() and Path(saved).resolve() == Path(now).resolve()


def flat_keys() -> dict[str, tuple[str, str, type]]:
    """Flat key -> (section, field name, declared type) for every run-config key."""
    keys: dict[str, tuple[str, str, type]] = {}
    for section, kind in SECTIONS.items():
        for f in dataclasses.fields(kind):
            keys[f.metadata["key"] or _kebab(f.name)] = (section, f.name, _TYPES[f.type])
    keys["strategy"] = ("run", "strategy", str)
    for f in dataclasses.fields(RunConfig):
        if f.name not in (*SECTIONS, "strategy"):
            keys[_kebab(f.name)] = ("run", f.name, _TYPES[f.type])
    for key, option in catalog.OPTIONS.items():
        keys[key] = ("options", key, type(option.default))
    return keys


_TYPES = {"int": int, "float": float, "str": str, "bool": bool}  # annotations are strings


def help_texts() -> dict[str, str]:
    """Flat key -> help, for the CLI and the README's table."""
    texts = {}
    for kind in (*SECTIONS.values(), StrategyConfig, RunConfig):
        for f in dataclasses.fields(kind):
            if "help" in f.metadata:
                texts[f.metadata["key"] or _kebab(f.name)] = f.metadata["help"]
    return texts | {k: o.help for k, o in catalog.OPTIONS.items()}


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """How `fedslim simulate` sizes Flower's Simulation Engine (Ray backend)."""

    num_supernodes: int = _key("virtual clients (one data partition each)", 5)
    cpus_per_client: float = _key("Ray CPUs per client; 1 runs two at a time on 2 cores", 1.0)
    gpus_per_client: float = _key(
        "Ray GPUs per client, fractional: 0.25 runs four clients on one GPU (0 = CPU only)", 0.0
    )
    num_cpus: int = _key("CPUs Ray may use (0 = all)", 0)
    ray_address: str = _key('an existing Ray cluster ("HOST:PORT"); "" starts a local one', "")

    def __post_init__(self) -> None:
        _check(self.num_supernodes >= 1, "num-supernodes", "an integer >= 1")
        _check(self.cpus_per_client > 0, "cpus-per-client", "a float > 0")
        _check(0 <= self.gpus_per_client <= 64, "gpus-per-client", "a float in [0, 64]")
        _check(self.num_cpus >= 0, "num-cpus", "an integer >= 0")
        host, _, port = self.ray_address.rpartition(":")
        ok = not self.ray_address or (bool(host) and port.isdigit())
        _check(ok, "ray-address", '"HOST:PORT" of a running Ray head', self.ray_address)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> EngineConfig:
        known = {_kebab(f.name): f for f in dataclasses.fields(cls)}
        out = {}
        for key, raw in values.items():
            if key not in known:
                raise ConfigError(
                    f"unknown config key '{key}'; accepted keys: {', '.join(sorted(known))}"
                )
            out[known[key].name] = _typed(key, _TYPES[known[key].type], raw)
        return cls(**out)

    def to_mapping(self) -> dict[str, Any]:
        return {_kebab(f.name): getattr(self, f.name) for f in dataclasses.fields(self)}


def _typed(key: str, kind: type, raw: Any) -> Any:
    """Coerce a value (TOML-typed or a CLI string) to the key's declared type; a float
    must be finite (inf and nan are never a sensible setting)."""
    try:
        if kind is bool:
            if isinstance(raw, str):
                low = raw.strip().lower()
                if low in ("true", "1", "yes"):
                    return True
                if low in ("false", "0", "no"):
                    return False
                raise ValueError(raw)
            if isinstance(raw, bool | int):
                return bool(raw)
            raise ValueError(raw)
        if kind is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError(raw)
            return int(raw)
        if kind is float:
            if isinstance(raw, bool) or not math.isfinite(float(raw)):
                raise ValueError(raw)
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{key}': expected {kind.__name__}, got {raw!r}") from None


def assignment(pair: str, flag: str = "--set") -> tuple[str, str]:
    """``KEY=VALUE`` from the command line, stripped; ConfigError naming ``flag`` else."""
    key, sep, value = pair.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} expects KEY=VALUE, got {pair!r}")
    return key.strip(), value.strip()


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """Parse CLI ``KEY=VALUE`` strings (values stay strings; types come from the schema)."""
    return dict(assignment(pair) for pair in pairs)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a config file: top-level keys, or the ``[tool.flwr.app.config]`` table."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    return data.get("tool", {}).get("flwr", {}).get("app", {}).get("config", data)


def split_config(values: Mapping[str, Any]) -> tuple[RunConfig, EngineConfig]:
    """Route one flat mapping to the run and simulation schemas; unknown keys fail."""
    run_keys = flat_keys()
    sim_keys = {_kebab(f.name) for f in dataclasses.fields(EngineConfig)}
    unknown = [k for k in values if k not in run_keys and k not in sim_keys]
    if unknown:
        accepted = ", ".join(sorted({*run_keys, *sim_keys}))
        raise ConfigError(f"unknown config key '{unknown[0]}'; accepted keys: {accepted}")
    run = RunConfig.from_mapping({k: v for k, v in values.items() if k in run_keys})
    sim = EngineConfig.from_mapping({k: v for k, v in values.items() if k in sim_keys})
    return run, sim
