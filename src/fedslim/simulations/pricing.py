"""The simulator's clock: prices every client-round on its device and link, and decides
who is available, who cannot train, and whose reply comes too late.

The round loop calls it through ``fedslim.strategies.clock.Clock``: replies that miss
``deadline-s`` (or finish after the first ones when over-selecting) are dropped from
aggregation, so they change convergence as they would in a deployment, and the energy
they spent is still counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..client.memory import choose, run_shape
from ..config import RunConfig
from ..errors import ConfigError
from ..ledger import ClientRow
from ..resources import cost, memory, profiles
from ..strategies.secure import check_clients
from ..task.models import ModelSpec, adapted_blocks
from .population import Member, assign, is_available


@dataclass(frozen=True)
class Plan:
    """A client's setting on its device: what it trains with, its estimated peak, its
    throughput relative to fp32 there, or why it cannot train."""

    setting: str
    peak_mb: float
    throughput: float = 1.0
    refusal: str | None = None


class SimClock:
    def __init__(
        self,
        members: dict[int, Member],
        prices: profiles.Prices,
        *,
        deadline_s: float,
        over_select: float,
        plans: dict[int, Plan],
        seed: int,
        transport_overhead: float = 0.0,
        round_overhead_s: float = 0.0,
    ) -> None:
        self.members, self.prices, self.seed, self.plans = members, prices, seed, plans
        self.deadline_s, self.over_select = deadline_s, over_select
        self.framing, self.round_overhead_s = 1.0 + transport_overhead, round_overhead_s

    def available(self, server_round: int, partition: int) -> bool:
        return is_available(self.members[partition], self.seed, server_round, partition)

    def refuse(self, partition: int) -> str | None:
        plan = self.plans.get(partition)
        return plan.refusal if plan else None

    def setting(self, partition: int) -> str:
        plan = self.plans.get(partition)
        return plan.setting if plan else ""

    def link(self, partition: int) -> profiles.Link | None:
        member = self.members.get(partition)
        return member.link if member else None

    def compute_s(self, partition: int, flops: float) -> float | None:
        member, plan = self.members.get(partition), self.plans.get(partition)
        if member is None or plan is None or plan.refusal:
            return None
        factor = memory.Setting.parse(plan.setting).flops_factor if plan.setting else 1.0
        return flops * factor / plan.throughput / member.device.flops

    def price(self, row: ClientRow) -> None:
        member, plan = self.members.get(row.client), self.plans.get(row.client)
        if member is None or plan is None:
            return
        c = cost.client_cost(
            member.device,
            member.link,
            self.prices,
            bytes_down=round(row.downlink_bytes * self.framing),  # what the link carries
            bytes_up=round(row.uplink_bytes * self.framing),
            flops=row.flops / plan.throughput,  # fp32-equivalent FLOPs at its precision
            exchanges=row.exchanges,
        )
        row.device, row.link = member.device.name, member.link.name
        row.sim_down_s, row.sim_compute_s, row.sim_up_s = c.down_s, c.compute_s, c.up_s
        row.energy_j, row.cost_usd, row.peak_mem_mb = c.energy_j, c.usd, plan.peak_mb
        row.setting = row.setting or plan.setting

    def admit(self, rows: list[ClientRow], wanted: int) -> None:
        if self.deadline_s:
            for row in rows:
                if row.sim_s > self.deadline_s:
                    row.status = (
                        f"deadline: simulated {row.sim_s:.1f} s > deadline-s {self.deadline_s:g}"
                    )
        if self.over_select and wanted:
            on_time = sorted((r for r in rows if r.ok), key=lambda r: (r.sim_s, r.client))
            for row in on_time[wanted:]:
                row.status = f"over-selected: finished after the first {wanted}"

    def totals(self, rows: list[ClientRow]) -> dict[str, float]:
        """The round lasts until its slowest aggregated client, or until the deadline when
        someone missed it (the server waited that long)."""
        seconds = max((r.sim_s for r in rows if r.ok), default=0.0)
        if any(r.status.startswith("deadline") for r in rows):
            seconds = self.deadline_s
        if seconds:
            seconds += self.round_overhead_s
        return {"sim_round_s": seconds, "server_usd": cost.server_usd(self.prices, seconds)}


def load_profiles(cfg: RunConfig) -> tuple[dict, dict]:
    if cfg.sim.profiles:
        return profiles.load(cfg.sim.profiles)
    return dict(profiles.DEVICES), dict(profiles.LINKS)


def population(cfg: RunConfig, partitions: list[int]) -> dict[int, Member]:
    """Every partition's member; a bad name, weight or file is a ConfigError."""
    return assign(
        partitions,
        devices=cfg.sim.devices,
        links=cfg.sim.links,
        availability=cfg.sim.availability,
        population=cfg.sim.population,
        profiles=load_profiles(cfg),
        seed=cfg.seed,
    )


def plans(cfg: RunConfig, members: dict[int, Member]) -> dict[int, Plan]:
    """Every client's setting on its device: the fixed one, or memory-plan=auto's choice."""
    shape = run_shape(cfg)
    out = {}
    for partition, member in members.items():
        chosen, reason = choose(cfg, shape, member.device, partition)
        if chosen is None:
            out[partition] = Plan("", 0.0, refusal=reason)
        else:
            speed = memory.throughput(member.device, chosen.setting)
            out[partition] = Plan(str(chosen.setting), chosen.peak_mb, speed)
    return out


def make_clock(cfg: RunConfig, model, partitions: dict[int, int]) -> SimClock:
    """The clock the server's round loop uses (``run_server(..., clock=make_clock)``)."""
    members = population(cfg, sorted(partitions.values()))
    return SimClock(
        members,
        profiles.PRICES,
        deadline_s=cfg.sim.deadline_s,
        over_select=cfg.sim.over_select,
        plans=plans(cfg, members),
        seed=cfg.seed,
        transport_overhead=cfg.sim.transport_overhead,
        round_overhead_s=cfg.sim.round_overhead_s,
    )


def check(cfg: RunConfig, num_partitions: int) -> None:
    """Fail before the engine starts on a profile, mix or population the run cannot use."""
    try:
        population(cfg, list(range(num_partitions)))
    except ConfigError:
        raise
    except (OSError, ValueError) as exc:
        raise ConfigError(f"simulator configuration: {exc}") from None
    if cfg.privacy.secagg:
        r = cfg.rounds
        check_clients(num_partitions, r.fraction_train, r.min_train_clients)
    try:  # the model's depth is known from its config file alone
        adapted_blocks(ModelSpec.from_config(cfg.adapter, seed=0, num_labels=2, kind="cls"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    links = load_profiles(cfg)[1]
    unknown = sorted(cfg.codecs.policy.by_link.keys() - {"*"} - links.keys())
    if unknown:
        raise ConfigError(
            f"config key 'uplink-codec': by-link names link {unknown[0]!r}, which is not a "
            f"link profile; known: {', '.join(links)}"
        )
