"""Populations and the simulator's clock: seeded, and behaving as specified in a round."""

import numpy as np
import pytest
from flwr.supercore.task_identity import TaskIdentity

from fedslim.adapter import Adapter
from fedslim.compression import encode
from fedslim.config import RunConfig
from fedslim.errors import ConfigError
from fedslim.resources import profiles
from fedslim.simulations.population import Member
from fedslim.simulations.pricing import Plan, SimClock, population

from ..fakes import Grid, fedavg, train_reply

N = 6


@pytest.fixture(autouse=True)
def _identity():
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1


def test_a_mix_is_dealt_in_its_proportions_seeded():
    cfg = RunConfig.of(devices="mix:phone-mid=0.6,raspberry-pi-4=0.4", links="mix:lte=1,3g=1")
    members = population(cfg, list(range(10)))
    names = [m.device.name for m in members.values()]
    assert names.count("phone-mid") == 6 and names.count("raspberry-pi-4") == 4
    assert [m.link.name for m in members.values()].count("lte") == 5
    assert population(cfg, list(range(10))) == members  # the same seed, the same clients
    other = population(cfg.replace(seed=1), list(range(10)))
    assert [m.device.name for m in other.values()] != names


def test_a_population_file_lists_every_client(tmp_path):
    path = tmp_path / "pop.csv"
    path.write_text("partition,device,link,availability\n0,laptop,wifi,1\n1,phone-low,3g,0.5\n")
    members = population(RunConfig.of(population=str(path)), [0, 1])
    assert members[1].device.name == "phone-low" and members[1].availability == 0.5
    with pytest.raises(ConfigError, match="no row for partition 2"):
        population(RunConfig.of(population=str(path)), [0, 1, 2])
    path.write_text("partition,device,link\n0,toaster,wifi\n")
    with pytest.raises(ConfigError, match="line 2"):
        population(RunConfig.of(population=str(path)), [0])


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"devices": "pager"}, "'devices': unknown profile 'pager'"),
        ({"links": "mix:lte=0,wifi=1"}, "'links': weight of 'lte'"),
    ],
)
def test_a_bad_population_names_the_key(values, says):
    with pytest.raises(ConfigError, match=says):
        population(RunConfig.of(**values), [0, 1])


def _clock(flops_per_s=(1e9,) * N, **kw) -> SimClock:
    link, rate = profiles.LINKS["wifi"], kw.pop("rate", 1.0)
    members = {
        p: Member(profiles.Device(f"dev{p}", f, 1.0, 0.1, 4096), link, rate)
        for p, f in enumerate(flops_per_s)
    }
    memory_mb = kw.pop("memory_mb", 500.0)
    fits = memory_mb <= 4096
    plans = {p: Plan("fp32/none" if fits else "", memory_mb if fits else 0.0,
                     refusal=None if fits else f"does not fit: needs {memory_mb:g} MB")
             for p in members}  # fmt: skip
    opts = {"deadline_s": 0.0, "over_select": 0.0, "plans": plans} | kw
    return SimClock(members, profiles.PRICES, seed=0, **opts)


def _round(clock: SimClock, fraction: float = 1.0, flops: int = 10**9):
    parts = {100 + p: p for p in range(N)}
    strategy = fedavg(parts, (("w", (4,)),), fraction=fraction, clock=clock)
    msgs = strategy.configure(1, Adapter.of({"w": np.zeros(4, np.float32)}), Grid(parts))
    replies = []
    for msg in msgs:
        part = parts[msg.metadata.dst_node_id]
        blob = encode("none", np.full(4, float(part), np.float32))
        replies.append(train_reply(strategy, msg, part, blob, flops=flops))
    return strategy.aggregate(1, replies)


def test_a_reply_past_the_deadline_is_dropped_but_its_energy_counts():
    clock = _clock(flops_per_s=(1e9, 1e9, 1e9, 1e9, 1e9, 1e8), deadline_s=5.0)  # 1 s vs 10 s
    new, rows = _round(clock)
    late = next(r for r in rows if r.client == 5)
    assert late.status.startswith("deadline") and late.energy_j > 0 and late.sim_compute_s == 10
    assert np.allclose(new.arrays()["w"], np.mean([0, 1, 2, 3, 4]))  # the five on time
    assert clock.totals(rows)["sim_round_s"] == 5.0  # the server waited for the deadline


def test_over_selection_aggregates_the_first_to_finish():
    speeds = (1e9, 2e9, 4e9, 8e9, 16e9, 32e9)  # client p finishes in 1 / 2**p seconds
    new, rows = _round(_clock(flops_per_s=speeds, over_select=1.0), fraction=0.5)
    assert len(rows) == 6  # 3 wanted, 6 sampled
    assert sorted(r.client for r in rows if r.ok) == [3, 4, 5]
    assert all("over-selected" in r.status for r in rows if r.client < 3)
    assert np.allclose(new.arrays()["w"], 4.0)


def test_availability_and_memory_decide_who_trains_seeded():
    clock = _clock(rate=0.5)
    assert [clock.available(1, p) for p in range(N)] == [clock.available(1, p) for p in range(N)]
    draws = [clock.available(r, p) for r in range(200) for p in range(N)]
    assert 0.4 < np.mean(draws) < 0.6
    _, rows = _round(_clock(memory_mb=10_000.0))
    assert all(r.status.startswith("does not fit") for r in rows)


def test_a_deployment_transport_overhead_prices_more_bytes_and_seconds():
    from fedslim.resources.cost import transfer_s

    plain, framed = _clock(), _clock(transport_overhead=0.25, round_overhead_s=0.5)
    _, rows = _round(plain)
    _, framed_rows = _round(framed)
    link = profiles.LINKS["wifi"]
    for r, f in zip(rows, framed_rows, strict=True):
        assert f.sim_up_s == pytest.approx(
            transfer_s(round(r.uplink_bytes * 1.25), link.up_mbps, link.rtt_s)
        )
        assert f.sim_down_s > r.sim_down_s and f.energy_j > r.energy_j
    grow = framed.totals(framed_rows)["sim_round_s"] - plain.totals(rows)["sim_round_s"]
    assert 0.5 < grow < 0.6  # the round overhead plus the framed bytes' extra time
    with pytest.raises(ConfigError, match="transport-overhead"):
        RunConfig.of(transport_overhead=-0.1)
