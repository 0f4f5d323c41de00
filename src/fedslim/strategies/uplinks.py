"""Each client's uplink pipeline under ``uplink-codec`` (``resources/uplink.py``), chosen
once per client from what the round's clock knows of it: its link and how long its
device takes for a round's FLOPs. A client that joins late is planned when first asked."""

from __future__ import annotations

from logging import INFO

from flwr.common.logger import log

from ..resources import uplink
from .clock import Clock


class UplinkPlan:
    def __init__(
        self,
        policy: uplink.Policy,
        *,
        clock: Clock,
        round_flops: float = 0.0,
        partitions: list[int] = (),
        share: float = 0.1,
        deadline_s: float = 0.0,
        framing: float = 1.0,
        match_gains: bool = False,  # uplink-gains=match
    ) -> None:
        self.policy, self.clock = policy, clock
        self.match_gains = match_gains  # lossless replies at the lossy ones' step (gains.py)
        self.round_flops, self.share = round_flops, share
        self.deadline_s, self.framing = deadline_s, framing
        self.chosen: dict[int, str] = {}
        # the round's floor: its slowest client's compute (late joiners do not move it)
        known = [clock.compute_s(p, round_flops) for p in partitions] if round_flops else []
        self.slowest_s = max((s for s in known if s), default=0.0)

    @property
    def per_client(self) -> bool:
        return self.policy.per_client

    def __call__(self, partition: int, values: int) -> str:
        """The pipeline of ``partition``, whose update has ``values`` values."""
        if not self.policy.per_client:
            return self.policy.fixed
        if partition not in self.chosen:
            compute = self.clock.compute_s(partition, self.round_flops)
            choice = uplink.choose(
                self.policy,
                self.clock.link(partition),
                values=values,
                compute_s=compute,
                slowest_s=self.slowest_s,
                share=self.share,
                deadline_s=self.deadline_s,
                framing=self.framing,
            )
            log(INFO, "client %d uplink: %s (%s)", partition, choice.spec, choice.why)
            self.chosen[partition] = choice.spec
        return self.chosen[partition]
