"""The run's strategy assembled from its config: the catalog's inner strategy with its
server state, inside ``Compressed`` with each client's rank view and pipeline, and secure
aggregation's stages. Everything here is decided once, before the first round."""

from __future__ import annotations

from flwr.serverapp import Grid

from ..client.workload import run_model
from ..config import RunConfig
from ..privacy.dpfedavg import CentralDP
from ..strategies import catalog
from ..strategies.clock import Clock, Unmetered
from ..strategies.compressed import Compressed
from ..strategies.ranks import RankMap
from ..strategies.secure import SecureRounds
from ..strategies.state import import_state
from ..strategies.uplinks import UplinkPlan
from ..task.adapters import get_adapter
from ..task.models import build_tokenizer
from ..task.residual import lora_modules
from ..task.train import round_flops
from ..vectors import flatten, layout
from .exchange import exchange
from .privacy import resumed_clip


def strategy(
    cfg: RunConfig, model, initial: dict, task, nodes, server_state, clock: Clock | None
) -> Compressed:
    """The run's strategy inside ``Compressed``, with its server state restored."""
    spec = cfg.strategy.spec
    inner = catalog.make(
        spec.name,
        partitions=nodes.partitions,
        seed=cfg.seed,
        fraction_train=cfg.rounds.fraction_train,
        min_train_nodes=cfg.rounds.min_train_clients,
        options=cfg.to_mapping(),
    )
    if spec.base_residual:
        inner.modules = lora_modules(model)
    import_state(inner, server_state)
    clock = clock or Unmetered(nodes.profiles)
    return Compressed(
        inner,
        uplink=cfg.codecs.uplink,
        downlink=cfg.codecs.downlink,
        views=_views(cfg, model, initial, task, nodes.ranks),
        partitions=nodes.partitions,
        seed=cfg.seed,
        client_options=cfg.strategy.client_options(),
        min_replies=cfg.rounds.min_train_clients,
        max_norm=cfg.rounds.max_update_norm,
        max_ratio=cfg.rounds.max_update_ratio,
        clock=clock,
        uplinks=_uplinks(cfg, model, task, clock, sorted(nodes.ranks)),
    )


def secure(grid: Grid, cfg: RunConfig, dp: CentralDP | None, rounds) -> SecureRounds:
    """Secure aggregation's stages, clipping as DP does (without DP: no noise; an
    adaptive clip resumes where ``dp_clip`` left it, as under DP)."""
    p = cfg.privacy
    dp = dp or CentralDP(resumed_clip(rounds, p.dp_clip), 0.0, adaptive=p.dp_adaptive_clip)
    timeout = cfg.rounds.round_timeout_s
    return SecureRounds(
        lambda messages: exchange(grid, messages, timeout=timeout),
        bits=p.secagg_bits,
        neighbors=p.secagg_neighbors,
        seed=cfg.seed,
        dp=dp,
    )


def _uplinks(cfg: RunConfig, model, task, clock: Clock, partitions: list[int]) -> UplinkPlan:
    """Each client's pipeline; ``auto`` weighs uploads against a round's compute, counted
    once here on one step of the server's model."""
    policy, flops = cfg.codecs.policy, 0.0
    if policy.auto:
        t = cfg.task
        tok = build_tokenizer(cfg.adapter.model)
        kw = dict(steps=t.local_steps, batch_size=t.batch_size, max_length=t.max_length)
        flops = round_flops(model, task, tok, **kw, seed=cfg.seed)
    return UplinkPlan(
        policy,
        clock=clock,
        round_flops=flops,
        partitions=partitions,
        share=cfg.codecs.auto_uplink_share,
        deadline_s=cfg.sim.deadline_s,
        framing=1.0 + cfg.sim.transport_overhead,
        match_gains=cfg.codecs.uplink_gains == "match",
    )


def _views(cfg: RunConfig, model, initial: dict, task, ranks: dict[int, int]) -> RankMap:
    """Each client's view of the global adapter: all of it, or its rank slice."""
    lora_r = cfg.adapter.lora_r
    initials = {lora_r: flatten(initial)}
    for r in sorted(set(ranks.values()) - {lora_r}):  # a node's own seeded init at rank r
        initials[r] = flatten(get_adapter(run_model(cfg, task, r)))
    return RankMap(
        layout=layout(initial),
        up_keys=set(get_adapter(model)),
        rank=lora_r,
        ranks=ranks,
        initials=initials,
    )
