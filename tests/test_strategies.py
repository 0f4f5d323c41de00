"""Fedslim's strategy catalog on Flower's real strategy classes (no simulation needed)."""

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message
from flwr.supercore.task_identity import TaskIdentity

from fedslim import protocol
from fedslim.adapter import Adapter
from fedslim.adapter import arrays_record as arrays_to_record
from fedslim.adapter import record_arrays as record_to_arrays
from fedslim.compression import ErrorFeedback, build, encode
from fedslim.config import RunConfig
from fedslim.strategies.catalog import STRATEGIES, make
from fedslim.strategies.compressed import Compressed
from fedslim.strategies.ranks import RankMap
from fedslim.strategies.state import export_state, import_state
from fedslim.vectors import digest

from .fakes import Grid

LAYOUT = (("a", (4, 3)), ("b", (5,)))
N = 17
PARTS = {101: 0, 202: 1, 303: 2}


@pytest.fixture(autouse=True)
def _identity():
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1


def _compressed(name, parts, views, options=None, **kw):
    cfg = RunConfig.of(strategy=name, **(options or {}))
    inner = make(
        name,
        partitions=parts,
        seed=0,
        fraction_train=1.0,
        min_train_nodes=1,
        options=cfg.to_mapping(),
    )
    return inner, Compressed(
        inner,
        client_options=cfg.strategy.client_options(),
        uplink=kw.pop("uplink", "none"),
        downlink=kw.pop("downlink", "none"),
        views=views,
        partitions=parts,
        seed=0,
        **kw,
    )


def _strategy(name="fedavg", parts=PARTS, **kw):
    views = RankMap(
        layout=LAYOUT,
        up_keys={k for k, _ in LAYOUT},
        rank=8,
        ranks={},
        initials={8: np.zeros(N, np.float32)},
    )
    return _compressed(name, parts, views, **kw)[1]


def _play(strategy, glob, updates, weights=None, parts=PARTS, metrics=None, twice=()):
    """Configure a round from ``glob``, answer it as clients would, aggregate.

    ``updates[node]`` is a delta (encoded with the uplink codec and error feedback) or
    raw bytes (a hostile client's blob); ``metrics[node]`` overrides reply metrics, and
    nodes in ``twice`` reply twice.
    """
    msgs = {
        m.metadata.dst_node_id: m
        for m in strategy.configure_train(1, arrays_to_record(glob), ConfigRecord(), Grid(parts))
    }
    replies = []
    for node, delta in updates.items():
        held = strategy.pending[parts[node]]
        blob = (
            delta
            if isinstance(delta, bytes)
            else ErrorFeedback(build(strategy.uplink)).encode(delta, None, seed=1)[0]
        )
        res = protocol.TrainRes(blob, digest(held), (weights or {}).get(node, 10), 1.0, 0.1, 1)
        content = protocol.train_res_content(res)
        for key, value in (metrics or {}).get(node, {}).items():  # hostile metrics, raw
            content["config"][key] = value
        replies += [Message(content, reply_to=msgs[node])] * (2 if node in twice else 1)
    return strategy.aggregate_train(1, replies)


def _dropped(strategy, node):
    """Every reason a round's ledger gives for the node's replies."""
    return " | ".join(r.status for r in strategy.rows if r.client == PARTS[node])


def _round(strategy, updates, examples=None):
    glob = {"a": np.zeros((4, 3), np.float32), "b": np.zeros(5, np.float32)}
    return _play(strategy, glob, updates, examples)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_aggregates_decoded_updates(name):
    rng = np.random.default_rng(1)
    updates = {n: rng.normal(scale=0.1, size=N).astype(np.float32) for n in PARTS}
    arrays, _ = _round(_strategy(name), updates)
    got = record_to_arrays(arrays)
    assert [(k, v.shape) for k, v in got.items()] == list(LAYOUT)
    assert all(np.isfinite(v).all() for v in got.values())


def test_fedavg_is_the_weighted_mean_of_client_updates():
    updates = {101: np.ones(N, np.float32), 202: 3 * np.ones(N, np.float32)}
    arrays, _ = _round(_strategy(), updates, examples={101: 30, 202: 10})
    flat = np.concatenate([v.ravel() for v in record_to_arrays(arrays).values()])
    assert np.allclose(flat, (30 * 1 + 10 * 3) / 40)


def test_dp_clips_each_decoded_update_and_noises_the_mean_over_the_sampled():
    """A huge update moves the aggregate by at most dp-clip / sampled clients; unweighted
    (30 and 10 examples count alike)."""
    from fedslim.privacy.dpfedavg import CentralDP

    honest = 0.01 * np.ones(N, np.float32)
    updates = {101: honest, 202: honest, 303: np.full(N, 1e4, np.float32)}
    examples = {101: 30, 202: 10, 303: 10}

    def flat(dp, sent):
        strategy = _strategy("fedavg", dp=dp)
        arrays, _ = _round(strategy, {n: updates[n] for n in sent}, examples=examples)
        norms = [r.update_norm for r in strategy.rows]
        return np.concatenate([v.ravel() for v in record_to_arrays(arrays).values()]), norms

    clean, _ = flat(CentralDP(clip=0.1, noise=0.0), [101, 202])
    attacked, norms = flat(CentralDP(clip=0.1, noise=0.0), [101, 202, 303])
    assert np.allclose(clean, 2 * honest / 3)  # clipped updates summed over the 3 asked
    assert np.linalg.norm(attacked - clean) == pytest.approx(0.1 / 3, rel=1e-5)
    assert norms[2] == pytest.approx(1e4 * np.sqrt(N), rel=1e-5)
    noised, _ = flat(CentralDP(clip=0.1, noise=1.0, seed=5), [101, 202])
    again, _ = flat(CentralDP(clip=0.1, noise=1.0, seed=5), [101, 202])
    assert np.array_equal(noised, again) and not np.allclose(noised, clean)


FIVE = {101: 0, 202: 1, 303: 2, 404: 3, 505: 4}


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("fedmedian", {}, 3.0),  # the middle of 1, 2, 3, 5, 100
        ("fedtrimmedavg", {"trim_beta": 0.2}, (2 + 3 + 5) / 3),  # one cut at each end
        ("fedtrimmedavg", {"trim_beta": 0.0}, (1 + 2 + 3 + 5 + 100) / 5),  # nothing cut
        # Krum, f = 1: each update's squared distances to its n - f - 2 = 2 nearest, in
        # units of N: 1 -> 1 + 4, 2 -> 1 + 1, 3 -> 1 + 4, 5 -> 4 + 9; the 2 wins
        ("krum", {"byzantine_clients": 1, "min_train_clients": 5}, 2.0),
    ],
)
def test_robust_aggregators_follow_their_definitions(name, options, expected):
    """Hand-computed cases, weights ignored as the definitions say: five clients send
    c * ones with c = 1, 2, 3, 5, 100 (the last an outlier)."""
    strategy = _strategy(name, parts=FIVE, options=options)
    scale = zip(FIVE, (1, 2, 3, 5, 100), strict=True)
    updates = {n: c * np.ones(N, np.float32) for n, c in scale}
    glob = {"a": np.zeros((4, 3), np.float32), "b": np.zeros(5, np.float32)}
    weights = dict(zip(FIVE, (50, 1, 1, 1, 1000), strict=True))
    arrays, _ = _play(strategy, glob, updates, weights, parts=FIVE)
    flat = np.concatenate([v.ravel() for v in record_to_arrays(arrays).values()])
    assert np.allclose(flat, expected)


def test_sampling_is_seeded_and_by_partition():
    """The same seed picks the same partitions, whatever node ids they have this time (a
    restarted SuperNode gets a new one); another seed picks others."""

    def picked(parts, seed):
        s = make("fedavg", partitions=parts, seed=seed, fraction_train=0.4, min_train_nodes=1,
                 options=RunConfig.of().to_mapping())  # fmt: skip
        return [sorted(parts[n] for n in s.sample(r)) for r in range(1, 9)]

    parts = {100 + p: p for p in range(5)}
    renamed = {900 - 7 * p: p for p in range(5)}  # other ids, in another order
    assert picked(parts, 5) == picked(renamed, 5)
    assert all(len(p) == 2 for p in picked(parts, 5))
    assert picked(parts, 5) != picked(parts, 6)


HOSTILE = [  # (what the client sends, words the drop reason contains)
    (np.full(N, np.nan, np.float32), "finite"),
    (np.full(N, 1e6, np.float32), "max-update-norm"),
    (np.zeros(N + 3, np.float32), "allowed 1..17"),
]


@pytest.mark.parametrize(("delta", "reason"), HOSTILE)
def test_hostile_updates_are_dropped_and_the_round_goes_on(delta, reason):
    strategy = _strategy(max_norm=100.0)
    arrays, _ = _round(strategy, {101: np.ones(N, np.float32), 202: encode("none", delta)})
    assert arrays is not None
    assert np.allclose(np.concatenate([v.ravel() for v in record_to_arrays(arrays).values()]), 1)
    assert reason.lower() in _dropped(strategy, 202).lower()


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        ({"train-loss": True}, "numbers"),  # a bool passes isinstance(int) yet breaks records
        ({"num-examples": True}, "numbers"),
        ({"num-examples": 2.5}, "positive integer"),
        ({"train-loss": float("nan")}, "finite"),
    ],
)
def test_hostile_metrics_are_dropped_and_the_round_goes_on(metrics, reason):
    strategy = _strategy()
    updates = {101: np.ones(N, np.float32), 202: 5 * np.ones(N, np.float32)}
    arrays, _ = _play(strategy, _glob(), updates, metrics={202: metrics})
    assert np.allclose(np.concatenate([v.ravel() for v in record_to_arrays(arrays).values()]), 1)
    assert reason in _dropped(strategy, 202)
    assert 1 in strategy.held  # it provably holds what was sent: no resync next round


def test_a_second_reply_from_one_node_is_dropped():
    strategy = _strategy()
    updates = {101: np.ones(N, np.float32), 202: 4 * np.ones(N, np.float32)}
    arrays, _ = _play(strategy, _glob(), updates, twice={202})
    assert np.allclose(np.concatenate([v.ravel() for v in record_to_arrays(arrays).values()]), 2.5)
    assert "second reply" in _dropped(strategy, 202)
    statuses = sorted(r.status for r in strategy.rows if r.client == PARTS[202])
    assert statuses[1] == "ok"  # the first was aggregated, and its row says so


@pytest.mark.parametrize("name", ["fedavg", "fedadam", "exact"])
def test_lossy_downlink_error_stays_in_the_global_adapter(name):
    """Clients that change nothing leave the global as it was, whatever the downlink lost:
    updates apply to the global sent, not to the clients' lossy copies of it."""
    rng = np.random.default_rng(6)
    glob = {"a": rng.normal(size=(4, 3)).astype(np.float32), "b": np.zeros(5, np.float32)}
    strategy = _strategy(name, downlink="topk:0.2")
    zeros = {n: np.zeros(N, np.float32) for n in PARTS}
    new = record_to_arrays(_play(strategy, glob, zeros)[0])
    held = strategy.pending[0]
    assert np.count_nonzero(held) < 12  # the clients really got a lossy copy
    assert all(np.allclose(new[k], glob[k], atol=1e-6) for k in glob)


def _glob():
    return {"a": np.zeros((4, 3), np.float32), "b": np.zeros(5, np.float32)}


def test_round_skipped_below_min_train_clients():
    strategy = _strategy(min_replies=2)
    arrays, _ = _round(strategy, {101: np.ones(N, np.float32)})
    assert arrays is None


def test_fedprox_asks_clients_for_a_proximal_term():
    strategy = _strategy("fedprox")
    arrays = arrays_to_record({"a": np.zeros((4, 3), np.float32), "b": np.zeros(5, np.float32)})
    msgs = strategy.configure_train(1, arrays, ConfigRecord(), Grid(PARTS))
    assert all(protocol.train_ins_from(m.content).options["proximal-mu"] > 0 for m in msgs)


def test_exact_applies_the_weighted_mean_of_client_products():
    """W0 + R + s B A after a round == before + weighted mean of s (B_i A_i - B0 A0)."""
    rng = np.random.default_rng(3)
    s = 2.0
    a0 = rng.normal(size=(2, 3)).astype(np.float32)
    glob = {
        "m.lora_A.weight": a0,
        "m.lora_B.weight": np.zeros((4, 2), np.float32),
        "head": np.zeros(5, np.float32),
        "residual:m": np.zeros((4, 3), np.float32),
    }
    layout = tuple((k, v.shape) for k, v in glob.items())
    up = layout[:3]
    parts = {101: 0, 202: 1}
    flat0 = np.concatenate([v.ravel() for v in glob.values()])
    views = RankMap(
        layout=layout, up_keys={k for k, _ in up}, rank=2, ranks={}, initials={2: flat0}
    )
    inner, strategy = _compressed("exact", parts, views)
    inner.modules = (("residual:m", "m.lora_A.weight", "m.lora_B.weight", s),)
    locals_, weights, deltas = {}, {101: 30, 202: 10}, {}
    for node in parts:
        a = a0 + rng.normal(scale=0.5, size=a0.shape).astype(np.float32)
        b = rng.normal(size=(4, 2)).astype(np.float32)
        head = rng.normal(size=5).astype(np.float32)
        locals_[node] = (a, b)
        deltas[node] = np.concatenate([a.ravel(), b.ravel(), head]) - flat0[:19]
    new = record_to_arrays(_play(strategy, glob, deltas, weights, parts)[0])
    applied = new["residual:m"] + s * new["m.lora_B.weight"] @ new["m.lora_A.weight"]
    mean = sum(weights[n] * s * (b @ a) for n, (a, b) in locals_.items()) / 40
    assert np.allclose(applied, mean, atol=1e-5)
    naive = s * new["m.lora_B.weight"] @ new["m.lora_A.weight"]
    assert not np.allclose(naive, mean, atol=1e-3)  # plain FedAvg of A and B is not exact


def test_heterogeneous_ranks_round_trip_with_rank_aware_weights():
    """Rank-2 and rank-4 clients: shared slices average over both, the rest over rank-4."""
    rng = np.random.default_rng(4)
    glob = {
        "m.lora_A.weight": rng.normal(size=(4, 3)).astype(np.float32),
        "m.lora_B.weight": rng.normal(size=(5, 4)).astype(np.float32),
        "head": rng.normal(size=2).astype(np.float32),
    }
    layout = tuple((k, v.shape) for k, v in glob.items())
    flat = np.concatenate([v.ravel() for v in glob.values()])
    parts = {101: 0, 202: 1}
    views = RankMap(
        layout=layout,
        up_keys=set(glob),
        rank=4,
        ranks={0: 2, 1: 4},
        initials={2: views_init(glob, 2), 4: flat},
    )
    assert views.client_layout(2) == (
        ("m.lora_A.weight", (2, 3)),
        ("m.lora_B.weight", (5, 2)),
        ("head", (2,)),
    )
    small = views.project(flat, 2)
    assert np.array_equal(small[:6], glob["m.lora_A.weight"][:2].ravel())
    _, strategy = _compressed("fedavg", parts, views)
    deltas = {101: np.ones(small.size, np.float32), 202: 3 * np.ones(flat.size, np.float32)}
    new = record_to_arrays(_play(strategy, glob, deltas, {101: 10, 202: 30}, parts)[0])
    sent = {node: strategy.pending[parts[node]].size for node in deltas}
    assert sent == {node: d.size for node, d in deltas.items()}  # each got its own view
    a = new["m.lora_A.weight"] - glob["m.lora_A.weight"]
    b = new["m.lora_B.weight"] - glob["m.lora_B.weight"]
    assert np.allclose(a[:2], (10 * 1 + 30 * 3) / 40) and np.allclose(a[2:], 3)
    assert np.allclose(b[:, :2], (10 * 1 + 30 * 3) / 40) and np.allclose(b[:, 2:], 3)
    assert np.allclose(new["head"] - glob["head"], (10 * 1 + 30 * 3) / 40)


def views_init(glob, r):
    """A rank-r client's initial vector: here simply the global slice."""
    return np.concatenate(
        [glob["m.lora_A.weight"][:r].ravel(), glob["m.lora_B.weight"][:, :r].ravel(), glob["head"]]
    )


def test_a_client_that_lost_sync_is_reset_to_the_initial_adapter():
    from flwr.app import Error

    from fedslim.transport import RESYNC

    strategy = _strategy(uplink="none")
    _round(strategy, {101: np.ones(N, np.float32), 202: np.ones(N, np.float32)})
    assert 0 in strategy.held and 1 in strategy.held  # the server tracks both new copies
    glob = {"a": np.zeros((4, 3), np.float32), "b": np.zeros(5, np.float32)}
    msgs = {m.metadata.dst_node_id: m for m in strategy.configure(2, Adapter.of(glob), Grid(PARTS))}
    resync = Message(protocol.resync_content("my copy differs"), reply_to=msgs[101])
    # an error whose text names the marker is only an error: no client text resets a copy
    spoof = Message(Error(code=0, reason=f"RuntimeError: {RESYNC}: spoofed"), reply_to=msgs[202])
    _, rows = strategy.aggregate(2, [resync, spoof])
    assert 0 not in strategy.held  # both ends restart from the seeded initial adapter
    assert 1 in strategy.held
    assert RESYNC in next(r.status for r in rows if r.client == 0)


@pytest.mark.parametrize("name", ["fedadam", "fedyogi", "fedavgm", "fedavg"])
def test_server_state_export_import_continues_identically(name):
    rng = np.random.default_rng(5)
    rounds = [{n: rng.normal(scale=0.1, size=N).astype(np.float32) for n in PARTS}] * 2
    straight = _strategy(name)
    _round(straight, rounds[0])
    saved = export_state(straight.inner)
    assert bool(saved) == (name != "fedavg")
    resumed = _strategy(name)
    import_state(resumed.inner, saved)
    a, b = (record_to_arrays(_round(s, rounds[1])[0]) for s in (straight, resumed))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    if name != "fedavg":  # without the state the second round differs
        c = record_to_arrays(_round(_strategy(name), rounds[1])[0])
        assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_server_state_for_another_strategy_is_refused():
    with pytest.raises(ValueError, match="m_t"):
        import_state(_strategy("fedavg").inner, {"m_t/a": np.zeros(3, np.float32)})


def test_a_reply_of_wrong_types_leaves_only_typed_values_in_the_ledger():
    import json

    from fedslim.ledger import to_dict

    strategy = _strategy()
    updates = {101: np.ones(N, np.float32), 202: np.ones(N, np.float32)}
    _play(strategy, _glob(), updates, metrics={202: {"train-loss": b"\x00", "flops": "many"}})
    row = next(r for r in strategy.rows if r.client == PARTS[202])
    assert not row.ok and np.isnan(row.train_loss) and row.flops == 0
    json.dumps([to_dict(r) for r in strategy.rows])  # what a checkpoint writes


@pytest.mark.parametrize("name", ["fedavg", "fedavgm", "fedadam", "fedyogi"])
def test_huge_finite_updates_never_make_the_global_non_finite(name):
    """With no norm bound at all, honest weights and finite but huge values: every
    aggregate either stays finite or its round is skipped and the server state undone."""
    strategy = _strategy(name)  # max-update-ratio off
    glob = _glob()
    for rnd in range(1, 5):
        before = export_state(strategy.inner)
        updates = {n: np.full(N, 0.1, np.float32) for n in PARTS}
        updates[202] = np.full(N, 3e38, np.float32)
        arrays, _ = _play(strategy, glob, updates)
        if arrays is None:
            assert all(r.status.startswith("round skipped") or not r.ok for r in strategy.rows)
            after = export_state(strategy.inner)
            assert all(np.array_equal(before[k], after[k]) for k in before), rnd
            continue
        glob = record_to_arrays(arrays)
        assert all(np.isfinite(v).all() for v in glob.values()), rnd


def test_an_aggregate_that_overflows_is_refused_and_the_global_kept():
    """Exact aggregation multiplies B A: finite factors of 1e20 give an infinite residual."""
    glob = {
        "m.lora_A.weight": np.zeros((2, 3), np.float32),
        "m.lora_B.weight": np.zeros((4, 2), np.float32),
        "residual:m": np.zeros((4, 3), np.float32),
    }
    layout = tuple((k, v.shape) for k, v in glob.items())
    views = RankMap(
        layout=layout,
        up_keys={"m.lora_A.weight", "m.lora_B.weight"},
        rank=2,
        ranks={},
        initials={2: np.zeros(26, np.float32)},
    )
    parts = {101: 0, 202: 1}
    inner, strategy = _compressed("exact", parts, views)
    inner.modules = (("residual:m", "m.lora_A.weight", "m.lora_B.weight", 1.0),)
    deltas = {101: np.full(14, 1e20, np.float32), 202: np.full(14, -1e20, np.float32)}
    arrays, _ = _play(strategy, glob, deltas, parts=parts)
    assert arrays is None
    assert all(r.status == "round skipped: the aggregate is not finite" for r in strategy.rows)


def test_updates_and_aggregates_far_larger_than_the_adapter_are_refused():
    strategy = _strategy(max_ratio=100.0)
    updates = {101: np.ones(N, np.float32), 202: np.full(N, 1e6, np.float32)}
    arrays, _ = _round(strategy, updates)
    assert np.allclose(np.concatenate([v.ravel() for v in record_to_arrays(arrays).values()]), 1)
    assert "max-update-ratio" in _dropped(strategy, 202)


def test_a_blob_in_another_codec_than_the_run_configured_is_refused():
    strategy = _strategy(uplink="q8")
    updates = {101: np.ones(N, np.float32), 202: encode("none", np.ones(N, np.float32))}
    _round(strategy, updates)
    assert "spec" in _dropped(strategy, 202)
