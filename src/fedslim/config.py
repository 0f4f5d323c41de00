"""Run configuration: one frozen dataclass per concern, built from Flower's run config.

Defaults live here once. Flower hands every app a flat ``{kebab-key: value}`` mapping;
``RunConfig.from_mapping`` validates it (unknown keys, types, ranges) and fails naming
the key and what is accepted, before anything starts.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration key holds a value fedslim cannot run with."""


def _help(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


_PARTITION = re.compile(r"^(iid|dirichlet:(\d+(\.\d*)?|\.\d+)|shards:\d+)$")
_TASK = re.compile(r"^(template-cls|wordnet|(text-cls|sft):.+)$")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """What the ServerApp and every ClientApp of one run agree on."""

    num_server_rounds: int = _help("federated rounds to run", default=5)
    fraction_train: float = _help("fraction of nodes sampled for training each round", default=1.0)
    local_steps: int = _help("optimizer steps each client takes per round", default=20)
    batch_size: int = _help("examples per local step", default=16)
    lr: float = _help("client AdamW learning rate", default=1e-2)
    model: str = _help(
        '"tiny" (embedded, seeded) or a Hugging Face model directory', default="tiny"
    )
    task: str = _help(
        '"template-cls", "wordnet", "text-cls:FILE" (csv/jsonl text,label) or '
        '"sft:FILE" (jsonl prompt,response)',
        default="template-cls",
    )
    partition: str = _help('"iid", "dirichlet:ALPHA" or "shards:N" (label skew)', default="iid")
    lora_r: int = _help("LoRA rank", default=8)
    lora_alpha: float = _help("LoRA scaling numerator (scale = alpha / r)", default=16)
    lora_targets: str = _help(
        'comma-separated module names, "all-linear", or "auto" (PEFT default for the architecture)',
        default="auto",
    )
    lora_ranks: str = _help(
        'heterogeneous ranks, e.g. "4,8": partition p trains ranks[p % len] (<= lora-r); '
        '"" = everyone at lora-r',
        default="",
    )
    max_length: int = _help("tokens per example after truncation", default=64)
    eval_fraction: float = _help(
        "held-out share, fixed by seed, never seen by clients", default=0.2
    )
    num_examples: int = _help("size of the generated template-cls task", default=2000)
    uplink_codec: str = _help(
        'codec pipeline for client updates, e.g. "topk:0.01|q4|zstd:3"; "none" = raw fp32',
        default="none",
    )
    downlink_codec: str = _help("codec pipeline for the broadcast adapter", default="none")
    error_feedback: bool = _help(
        "keep what the uplink codec dropped for the next round", default=True
    )
    strategy: str = _help(
        "fedavg, ffa, exact, fedavgm, fedadam, fedyogi, fedprox, fedmedian, fedtrimmedavg, krum",
        default="fedavg",
    )
    server_lr: float = _help("server learning rate (0 = the strategy's default)", default=0.0)
    server_momentum: float = _help("fedavgm server momentum", default=0.9)
    proximal_mu: float = _help("fedprox proximal term weight on the clients", default=0.01)
    trim_beta: float = _help("fedtrimmedavg: fraction cut at each end", default=0.2)
    byzantine_clients: int = _help("krum: clients assumed malicious", default=0)
    min_train_clients: int = _help("valid replies a round needs, else it is skipped", default=1)
    round_timeout_s: float = _help(
        "seconds to wait for replies; late ones are dropped", default=600.0
    )
    max_update_norm: float = _help(
        "drop an update whose L2 norm exceeds this (0 = off)", default=0.0
    )
    target_accuracy: float = _help(
        "stop after the first round whose held-out accuracy reaches this (0 = run all rounds)",
        default=0.0,
    )
    seed: int = _help("seeds data, base weights, sampling and training", default=0)
    out: str = _help('results directory; "" means runs/<timestamp>', default="")
    resume: bool = _help("continue the run in `out` from its last checkpoint", default=False)

    def __post_init__(self) -> None:
        _check(self.num_server_rounds >= 1, "num-server-rounds", "an integer >= 1")
        _check(0.0 < self.fraction_train <= 1.0, "fraction-train", "a float in (0, 1]")
        _check(self.local_steps >= 1, "local-steps", "an integer >= 1")
        _check(self.batch_size >= 1, "batch-size", "an integer >= 1")
        _check(self.lr > 0, "lr", "a float > 0")
        _check(self.lora_r >= 1, "lora-r", "an integer >= 1")
        _check(self.lora_alpha > 0, "lora-alpha", "a float > 0")
        _check(self.max_length >= 4, "max-length", "an integer >= 4")
        _check(0.0 < self.eval_fraction < 1.0, "eval-fraction", "a float in (0, 1)")
        _check(self.num_examples >= 20, "num-examples", "an integer >= 20")
        _check(
            bool(_PARTITION.match(self.partition)),
            "partition",
            '"iid", "dirichlet:ALPHA" (ALPHA > 0) or "shards:N"',
            self.partition,
        )
        if self.partition.startswith("dirichlet:"):
            _check(
                float(self.partition.split(":")[1]) > 0, "partition", "ALPHA > 0", self.partition
            )
        _check(
            bool(_TASK.match(self.task)),
            "task",
            '"template-cls", "wordnet", "text-cls:FILE" or "sft:FILE"',
            self.task,
        )
        _check(bool(self.model), "model", '"tiny" or a model directory')
        if self.model != "tiny":
            _check(
                Path(self.model).is_dir(),
                "model",
                '"tiny" or an existing model directory',
                self.model,
            )
        for prefix in ("text-cls:", "sft:"):
            if self.task.startswith(prefix):
                path = self.task[len(prefix) :]
                _check(Path(path).is_file(), "task", f'"{prefix}FILE" with an existing file', path)

        from .strategies.catalog import OPTIONS, STRATEGIES, mixed_ranks_refusal

        _check(self.strategy in STRATEGIES, "strategy", ", ".join(STRATEGIES), self.strategy)
        fields = keys_of(RunConfig)
        for key, users in OPTIONS.items():  # a tuning key the strategy ignores is a mistake
            f = fields[key]
            value = getattr(self, f.name)
            _check(
                value == f.default or self.strategy in users,
                key,
                f"its default with strategy {self.strategy} (only {', '.join(users)} read it)",
                value,
            )
        if self.strategy == "krum" and self.byzantine_clients:
            _check(
                self.min_train_clients >= 2 * self.byzantine_clients + 3,
                "min-train-clients",
                f"at least 2 * byzantine-clients + 3 = {2 * self.byzantine_clients + 3} "
                "(Krum needs that many replies to outvote the malicious ones)",
                self.min_train_clients,
            )
        _check(self.server_lr >= 0, "server-lr", "a float >= 0")
        _check(0 <= self.server_momentum < 1, "server-momentum", "a float in [0, 1)")
        _check(self.proximal_mu >= 0, "proximal-mu", "a float >= 0")
        _check(0 <= self.trim_beta < 0.5, "trim-beta", "a float in [0, 0.5)")
        _check(self.byzantine_clients >= 0, "byzantine-clients", "an integer >= 0")
        _check(self.min_train_clients >= 1, "min-train-clients", "an integer >= 1")
        _check(self.round_timeout_s > 0, "round-timeout-s", "a float > 0")
        _check(self.max_update_norm >= 0, "max-update-norm", "a float >= 0 (0 = off)")
        from .strategies.ranks import parse_ranks

        try:
            hetero = parse_ranks(self.lora_ranks, self.lora_r) != [self.lora_r]
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        refusal = mixed_ranks_refusal(self.strategy)
        _check(not (hetero and refusal), "lora-ranks", f"uniform ranks: {refusal}", self.lora_ranks)
        _check(0.0 <= self.target_accuracy <= 1.0, "target-accuracy", "a float in [0, 1]")
        for key, spec in (
            ("uplink-codec", self.uplink_codec),
            ("downlink-codec", self.downlink_codec),
        ):
            _check_codec(key, spec)

    def rank_of(self, partition: int) -> int:
        from .strategies.ranks import parse_ranks

        ranks = parse_ranks(self.lora_ranks, self.lora_r)
        return ranks[partition % len(ranks)]

    # ---- conversions ------------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RunConfig:
        """Build from Flower's flat kebab-case run config, rejecting unknown keys."""
        return cls(**_coerce(cls, values))

    def to_mapping(self) -> dict[str, Any]:
        return {_kebab(f.name): getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, kw_only=True)
class SimulationConfig:
    """How `fedslim simulate` sizes Flower's Simulation Engine (Ray backend)."""

    num_supernodes: int = _help("virtual clients (one data partition each)", default=5)
    cpus_per_client: float = _help(
        "Ray CPUs per client; 1 runs two at a time on 2 cores", default=1.0
    )
    num_cpus: int = _help("CPUs Ray may use (0 = all)", default=0)

    def __post_init__(self) -> None:
        _check(self.num_supernodes >= 1, "num-supernodes", "an integer >= 1")
        _check(self.cpus_per_client > 0, "cpus-per-client", "a float > 0")
        _check(self.num_cpus >= 0, "num-cpus", "an integer >= 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SimulationConfig:
        return cls(**_coerce(cls, values))

    def to_mapping(self) -> dict[str, Any]:
        return {_kebab(f.name): getattr(self, f.name) for f in dataclasses.fields(self)}


def _check_codec(key: str, spec: str) -> None:
    from .compression import build

    try:
        build(spec)
    except ValueError as exc:
        raise ConfigError(f"config key '{key}': {exc}") from None


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def _check(ok: bool, key: str, accepted: str, got: Any = None) -> None:
    if not ok:
        shown = f" (got {got!r})" if got is not None else ""
        raise ConfigError(f"config key '{key}': expected {accepted}{shown}")


def keys_of(cls: type) -> dict[str, dataclasses.Field]:
    return {_kebab(f.name): f for f in dataclasses.fields(cls)}


def _coerce(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    known = keys_of(cls)
    out: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in known:
            raise ConfigError(
                f"unknown config key '{key}'; accepted keys: {', '.join(sorted(known))}"
            )
        f = known[key]
        out[f.name] = _typed(key, f.default, raw)
    return out


def _typed(key: str, default: Any, raw: Any) -> Any:
    """Coerce a value (TOML-typed or a CLI string) to the type of the key's default."""
    kind = type(default)
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
            if isinstance(raw, bool):
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
    run_keys, sim_keys = keys_of(RunConfig), keys_of(SimulationConfig)
    unknown = [k for k in values if k not in run_keys and k not in sim_keys]
    if unknown:
        accepted = ", ".join(sorted({*run_keys, *sim_keys}))
        raise ConfigError(f"unknown config key '{unknown[0]}'; accepted keys: {accepted}")
    run = RunConfig.from_mapping({k: v for k, v in values.items() if k in run_keys})
    sim = SimulationConfig.from_mapping({k: v for k, v in values.items() if k in sim_keys})
    return run, sim
