"""Per-client uplink pipelines: ``uplink-codec = auto | by-link:...``."""

import numpy as np
import pytest
from flwr.app import ConfigRecord
from flwr.supercore.task_identity import TaskIdentity

from fedslim import protocol
from fedslim.adapter import arrays_record
from fedslim.compression import ErrorFeedback, build, decode
from fedslim.config import RunConfig
from fedslim.errors import ConfigError
from fedslim.resources import uplink
from fedslim.resources.profiles import DEVICES, LINKS
from fedslim.strategies import gains
from fedslim.strategies.clock import Unmetered
from fedslim.strategies.uplinks import UplinkPlan

from .fakes import Grid, fedavg, train_reply

MINILM_UPDATE = 76_808  # values of WordNet's MiniLM adapter (r=8 on query/value + head)


@pytest.mark.parametrize(
    ("link", "compute_s", "slowest_s", "expected"),
    [  # a MiniLM update (307 KB raw); uploads may end by 1.1 x the slowest compute
        ("wifi", 19.0, 19.0, "none"),  # 0.06 s
        ("3g", 74.0, 74.0, "none"),  # the slowest phone: 2.5 s of 7.4 s
        ("3g", 19.0, 74.0, "none"),  # a fast phone waits for the slowest anyway
        ("3g", 19.0, 19.0, "q8|zstd:3"),  # fp32 takes 2.5 s of 1.9 s; q8 0.6 s
        ("3g", 2.0, 2.0, "sign|zstd:3"),  # 0.2 s: q4 takes 0.27 s, sign 0.09 s
        ("geo-satellite", 1.5, 74.0, "none"),  # a laptop behind a dish, among phones
        ("geo-satellite", 1.5, 1.5, "q4|zstd:3"),  # ... among laptops
        ("geo-satellite", 0.2, 0.2, "topk:0.05|q4|zstd:3"),  # sign 0.03 s, top-5% 0.01 s
        ("3g", 0.05, 0.05, "topk:0.01|q4|zstd:3"),  # nothing fits: the last rung
    ],
)
def test_auto_picks_the_least_lossy_pipeline_that_ends_with_the_round(
    link, compute_s, slowest_s, expected
):
    got = uplink.choose(uplink.Policy(auto=True), LINKS[link], values=MINILM_UPDATE,
                        compute_s=compute_s, slowest_s=slowest_s, share=0.1)  # fmt: skip
    assert got.spec == expected, got.why


def test_auto_measures_against_the_deadline_and_sends_losslessly_when_it_cannot_tell():
    policy, kw = uplink.Policy(auto=True), dict(values=MINILM_UPDATE, share=0.1)
    assert uplink.choose(policy, None, compute_s=1.0, **kw).spec == "none"  # link unknown
    assert uplink.choose(policy, LINKS["3g"], compute_s=None, **kw).spec == "none"  # device
    # 3G, 19 s of compute: fp32 (2.5 s) ends within 0.9 x a 30 s deadline, not a 22 s one
    pick = lambda d: uplink.choose(policy, LINKS["3g"], compute_s=19.0, deadline_s=d, **kw).spec  # noqa: E731
    assert (pick(30.0), pick(22.0)) == ("none", "q8|zstd:3")


def test_by_link_maps_link_names_and_the_star_takes_the_rest():
    policy = RunConfig.of(uplink_codec="by-link:3g=q4|zstd:3, lte=sign|zstd:3").codecs.policy
    pick = lambda link: uplink.choose(policy, link, values=10, compute_s=1.0, share=0.1).spec  # noqa: E731
    assert (pick(LINKS["3g"]), pick(LINKS["lte"]), pick(LINKS["wifi"]), pick(None)) == (
        "q4|zstd:3", "sign|zstd:3", "none", "none"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("by-link:3g=q9|zstd:3,*=none", "link '3g': stage 1 'q9'"),
        ("by-link:3g", "entry '3g'"),
        ("by-link:3g=q8,3g=q4", "link '3g' is given twice"),
        ("by-link:", "expected by-link:LINK=SPEC"),
        ("by-link:3 g=q8", "entry '3 g=q8'"),
    ],
)
def test_a_malformed_by_link_spec_fails_naming_the_link(spec, named):
    with pytest.raises(ConfigError, match="config key 'uplink-codec'") as err:
        RunConfig.of(uplink_codec=spec)
    assert named in str(err.value)


def test_a_by_link_name_that_is_no_profile_fails_before_the_run():
    from fedslim.simulations.pricing import check

    with pytest.raises(ConfigError, match="by-link names link 'LTE'"):
        check(RunConfig.of(uplink_codec="by-link:LTE=q8,*=none"), 2)


# ---- one round, three pipelines -------------------------------------------------------
LAYOUT = (("a", (40, 30)), ("b", (50,)))
N = 1250
PARTS = {101: 0, 202: 1, 303: 2}  # node -> partition: on 3G, on LTE, unknown link


def _round(updates, *, cheat=(), gains="own"):
    """A fedavg round under by-link pipelines; clients in ``cheat`` send raw fp32."""
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    cfg = RunConfig.of(uplink_codec="by-link:3g=q4|zstd:3,lte=sign|zstd:3,*=none",
                       uplink_gains=gains)  # fmt: skip
    clock = Unmetered({0: (DEVICES["phone-low"], LINKS["3g"]), 1: (None, LINKS["lte"])})
    plan = UplinkPlan(cfg.codecs.policy, clock=clock, match_gains=gains == "match")
    strategy = fedavg(PARTS, LAYOUT, cfg=cfg, uplink=cfg.codecs.uplink, clock=clock, uplinks=plan)
    glob = {"a": np.zeros((40, 30), np.float32), "b": np.zeros(50, np.float32)}
    msgs = strategy.configure_train(1, arrays_record(glob), ConfigRecord(), Grid(PARTS))
    replies, blobs = [], {}
    for msg in msgs:
        node = msg.metadata.dst_node_id
        ins = protocol.train_ins_from(msg.content)
        spec = "none" if node in cheat else ins.uplink
        blobs[node] = ErrorFeedback(build(spec)).encode(updates[node], None, seed=node)[0]
        replies.append(train_reply(strategy, msg, PARTS[node], blobs[node], 10 * PARTS[node] + 10))
    record, _ = strategy.aggregate_train(1, replies)
    return strategy, record, blobs


def test_replies_of_different_pipelines_aggregate_like_decoding_each_by_hand():
    rng = np.random.default_rng(0)
    updates = {n: rng.normal(scale=0.1, size=N).astype(np.float32) for n in PARTS}
    strategy, record, blobs = _round(updates)
    rows = {r.client: r for r in strategy.rows}
    assert [rows[p].uplink_codec for p in (0, 1, 2)] == ["q4|zstd:3", "sign|zstd:3", "none"]
    assert all(r.ok for r in rows.values())
    sizes = [len(blobs[n]) for n in PARTS]
    assert sizes[1] < sizes[0] < sizes[2]  # sign < q4 < fp32
    by_hand = sum(w * decode(blobs[n]) for n, w in zip(PARTS, (10, 20, 30), strict=True)) / 60
    got = np.concatenate([a.numpy().ravel() for a in record.values()])
    np.testing.assert_allclose(got, by_hand, rtol=1e-6, atol=1e-7)
    assert not np.allclose(got, sum(updates.values()) / 3, atol=1e-3)  # lossy: not the raw


def test_matched_gains_put_the_lossless_reply_at_the_lossy_pipelines_step():
    """q4 keeps ~all of an update's projection, sign ~2/pi of a Gaussian one: the fp32
    reply enters at sign's gain on it; the lossy replies as they were decoded."""
    rng = np.random.default_rng(0)
    updates = {n: rng.normal(scale=0.1, size=N).astype(np.float32) for n in PARTS}
    strategy, record, blobs = _round(updates, gains="match")
    raw = updates[303]
    signed = decode(build("sign|zstd:3").encode(raw))
    scale = float(np.dot(signed, raw) / np.dot(raw, raw))
    assert 0.55 < scale < 0.75
    decoded = {101: decode(blobs[101]), 202: decode(blobs[202]), 303: scale * raw}
    by_hand = sum(w * decoded[n] for n, w in zip(PARTS, (10, 20, 30), strict=True)) / 60
    got = np.concatenate([a.numpy().ravel() for a in record.values()])
    np.testing.assert_allclose(got, by_hand, rtol=1e-5, atol=1e-6)
    scales = {r.client: r.update_scale for r in strategy.rows}
    assert scales[0] == scales[1] == 1.0 and scales[2] == pytest.approx(scale, rel=1e-5)


@pytest.mark.parametrize(
    ("specs", "scaled_by"),
    [(["none", "sign|zstd:3", "topk:0.01|q4|zstd:3"], "sign|zstd:3"),  # sign sets the step
     (["none", "topk:0.01|q4|zstd:3"], None),  # a sparsifier's gain is no step
     (["none", "q8|zstd:3"], None),  # q8 keeps the step: 0.9999 counts as 1
     (["none", "zstd:3"], None)],  # lossless both
)  # fmt: skip
def test_only_dense_lossy_pipelines_set_a_rounds_step(specs, scaled_by):
    rng = np.random.default_rng(2)
    starts = [rng.normal(size=N).astype(np.float32) for _ in specs]
    updates = [rng.normal(scale=0.1, size=N).astype(np.float32) for _ in specs]
    locals_, scales = gains.match([s + u for s, u in zip(starts, updates, strict=True)],
                                  starts, specs)  # fmt: skip
    expected = gains.gain(scaled_by, updates[0]) if scaled_by else 1.0
    assert scales == [pytest.approx(expected, rel=1e-5)] + [1.0] * (len(specs) - 1)
    np.testing.assert_allclose(locals_[0], starts[0] + expected * updates[0], rtol=1e-5, atol=1e-6)


def test_a_client_that_ignores_its_pipeline_is_dropped_and_the_round_goes_on():
    rng = np.random.default_rng(1)
    updates = {n: rng.normal(scale=0.1, size=N).astype(np.float32) for n in PARTS}
    strategy, record, _ = _round(updates, cheat={101})
    rows = {r.client: r for r in strategy.rows}
    assert not rows[0].ok and "q4" in rows[0].status, rows[0].status
    assert rows[1].ok and rows[2].ok and record is not None


# ---- a simulation -------------------------------------------------------------------------
def test_auto_in_a_simulation_gives_the_slow_link_fewer_bits_and_resume_keeps_them(tmp_path):
    import csv

    from fedslim.config import EngineConfig
    from fedslim.simulations.run import simulate

    population = tmp_path / "population.csv"
    population.write_text("partition,device,link\n0,phone-low,3g\n1,phone-low,wifi\n")
    out = tmp_path / "run"
    cfg = RunConfig.of(out=str(out), num_server_rounds=2, num_examples=400, local_steps=5,
                       uplink_codec="auto", population=str(population),
                       target_accuracy=0.01, stop_at_target=False)  # fmt: skip
    sim = EngineConfig(num_supernodes=2, num_cpus=2)
    first = simulate(cfg, sim, report=lambda e, p: None)
    assert first["rounds"] == 2 and first["to_target"]["round"] == 1  # ran on past the target
    simulate(cfg.replace(num_server_rounds=3, resume=True), sim, report=lambda e, p: None)
    with (out / "clients.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    chosen = {(r["round"], r["client"]): r["uplink_codec"] for r in rows if r["status"] == "ok"}
    assert sorted(chosen) == [(str(t), str(c)) for t in (1, 2, 3) for c in (0, 1)]
    slow, fast = chosen["1", "0"], chosen["1", "1"]
    assert uplink.LADDER.index(slow) > uplink.LADDER.index(fast), (slow, fast)
    assert all(chosen[str(t), "0"] == slow and chosen[str(t), "1"] == fast for t in (2, 3))
    up = {c: int(next(r for r in rows if r["client"] == c)["uplink_payload_bytes"]) for c in "01"}
    assert up["0"] < up["1"]
