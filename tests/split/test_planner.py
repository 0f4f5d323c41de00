"""The planner's choice equals brute force over every split point, for random profiles."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedslim.resources.cost import radio_j, transfer_s
from fedslim.resources.profiles import DEVICES, LINKS, Device, Link
from fedslim.split.planner import Profile, best, choose, costs, extremes

positive = st.floats(min_value=1e3, max_value=1e12, allow_nan=False)


@st.composite
def profiles(draw):
    n = draw(st.integers(min_value=1, max_value=12))
    return Profile(
        embed_flops=draw(positive),
        block_flops=tuple(draw(st.lists(positive, min_size=n, max_size=n))),
        out_flops=draw(positive),
        embed_bytes=draw(st.integers(0, 10**9)),
        block_bytes=tuple(draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n))),
        hidden=draw(st.integers(8, 4096)),
        result_bytes=draw(st.integers(1, 10**5)),
    )


def _brute(profile, device, link, server_flops, tokens, bpv, runtime_mb, objective, min_k=0):
    """Every k from scratch: no prefix sums, no shared terms."""
    best = None
    for k in range(min_k, len(profile.block_flops) + 1):
        head = profile.embed_flops + sum(profile.block_flops[:k])
        tail = sum(profile.block_flops[k:]) + profile.out_flops
        up = int(tokens * profile.hidden * bpv) + 5 * tokens + 64
        device_s = head * tokens / device.flops
        latency = (device_s + transfer_s(up, link.up_mbps, link.rtt_s)
                   + tail * tokens / server_flops
                   + transfer_s(profile.result_bytes, link.down_mbps, link.rtt_s))  # fmt: skip
        energy = (device.active_w * device_s
                  + radio_j(up, link.up_mbps, link.a_up_mw, link.base_mw, link.tail_j)
                  + radio_j(profile.result_bytes, link.down_mbps, link.a_down_mw, link.base_mw,
                            link.tail_j))  # fmt: skip
        memory = (runtime_mb + (profile.embed_bytes + sum(profile.block_bytes[:k])) / 1e6
                  + 16 * tokens * profile.hidden / 1e6)  # fmt: skip
        if memory > device.memory_mb:
            continue
        score = latency if objective == "latency" else energy
        if best is None or score < best[0] * (1 - 1e-12):
            best = (score, k)
    return None if best is None else best[1]


@settings(max_examples=300, deadline=None)
@given(
    profiles(),
    st.sampled_from(sorted(DEVICES)),
    st.sampled_from(sorted(LINKS)),
    st.floats(1e9, 1e14),
    st.integers(1, 2048),
    st.sampled_from([4.0, 2.0, 1.0, 0.5]),
    st.sampled_from(["latency", "energy"]),
    st.integers(0, 3),
)
def test_the_choice_equals_brute_force(profile, dev, lnk, server, tokens, bpv, objective, min_k):
    device, link = DEVICES[dev], LINKS[lnk]
    kw = dict(server_flops=server, tokens=tokens, bytes_per_value=bpv, runtime_mb=300.0)
    expected = _brute(profile, device, link, server, tokens, bpv, 300.0, objective, min_k)
    all_k = costs(profile, device, link, **kw)
    if expected is None:
        why = "fits" if min_k < len(all_k) else "--min-layer"  # k > n: no such split point
        with pytest.raises(ValueError, match=why):
            choose(all_k, objective, min_k=min_k)
        return
    got = choose(all_k, objective, min_k=min_k)
    score = (lambda c: c.latency_s) if objective == "latency" else (lambda c: c.device_j)
    assert score(got) == pytest.approx(score(all_k[expected]), rel=1e-9)


def test_the_faster_side_runs_the_blocks_and_memory_bounds_the_head():
    profile = Profile(1e6, (1e9,) * 6, 1e6, 10**6, (10**8,) * 6, 384, 64)
    link = Link("lan", 100.0, 100.0, 0.001, 1, 1, 1, 0.0, 0.0)
    weak = Device("weak", 1e9, 2.0, 0.5, 4096)
    strong = Device("strong", 1e13, 50.0, 5.0, 16384)
    kw = dict(tokens=64, bytes_per_value=1.0, runtime_mb=300.0)
    assert choose(costs(profile, weak, link, server_flops=1e13, **kw)).k == 0
    assert choose(costs(profile, strong, link, server_flops=1e9, **kw)).k == 6
    small = Device("small", 1e13, 5.0, 0.5, 650)  # room for the embeddings and 3 blocks
    assert choose(costs(profile, small, link, server_flops=1e9, **kw)).k == 3


def test_split_plan_prints_every_k_and_the_choice():
    from typer.testing import CliRunner

    from fedslim.cli import cli

    result = CliRunner().invoke(cli, ["split", "plan", "--device", "phone-low", "--link", "3g",
                                      "--objective", "energy"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "chosen: k=" in result.output and "device J" in result.output
    bad = CliRunner().invoke(cli, ["split", "plan", "--device", "pager"])
    assert bad.exit_code == 2 and "pager" in bad.output


def test_the_extremes_are_the_split_points_less_what_they_do_not_do():
    profile = Profile(1e6, (1e9,) * 6, 1e6, 10**6, (10**8,) * 6, 384, 64)
    device, link = DEVICES["phone-mid"], LINKS["lte"]
    kw = dict(server_flops=1e13, tokens=64, runtime_mb=300.0)
    local, remote = extremes(profile, device, link, **kw)
    all_k = costs(profile, device, link, bytes_per_value=1.0, **kw)
    n = len(all_k) - 1
    # all on the device: the last split point's device time plus the output head, no radio
    assert local.device_s == pytest.approx(all_k[n].device_s + 1e6 * 64 / device.flops)
    assert (local.up_s, local.down_s, local.server_s) == (0.0, 0.0, 0.0)
    assert local.device_j == pytest.approx(device.active_w * local.device_s)
    # all on the server: token ids are smaller than the hidden states k=0 sends
    assert remote.device_s == 0.0 and remote.up_s < all_k[0].up_s
    assert remote.server_s == pytest.approx(all_k[0].server_s + 1e6 * 64 / 1e13)


def test_a_timed_profile_prices_parts_by_this_hosts_seconds():
    from fedslim.split.profile import measure, timed
    from fedslim.task.models import ModelSpec, build_model

    spec = ModelSpec(model="tiny", kind="cls", num_labels=4, lora_r=4, lora_alpha=8,
                     lora_targets="auto", seed=0)  # fmt: skip
    model = build_model(spec).eval()
    profile = timed(model, measure(model, tokens=16), tokens=16, reps=3)
    assert len(profile.head_s) == len(profile.tail_s) == len(profile.block_flops) + 1
    assert profile.head_s[-1] > profile.head_s[0] and profile.tail_s[0] > profile.tail_s[-1]
    device = DEVICES["phone-mid"]
    all_k = costs(profile, device, LINKS["wifi"], server_flops=1e11, tokens=16,
                  bytes_per_value=1.0, runtime_mb=300.0, codec_s=(1e-3, 2e-3))  # fmt: skip
    for c, head, tail in zip(all_k, profile.head_s, profile.tail_s, strict=True):
        assert c.device_s == pytest.approx((head + 1e-3) * profile.host_flops / device.flops)
        assert c.server_s == pytest.approx((tail + 2e-3) * profile.host_flops / 1e11)


@settings(max_examples=200, deadline=None)
@given(profiles(), st.sampled_from(sorted(DEVICES)), st.sampled_from(sorted(LINKS)),
       st.sampled_from(["latency", "energy"]), st.integers(0, 2))  # fmt: skip
def test_the_decision_is_the_cheapest_allowed_option(profile, dev, lnk, objective, min_k):
    device, link = DEVICES[dev], LINKS[lnk]
    kw = dict(server_flops=1e11, tokens=64, runtime_mb=300.0)
    all_k = costs(profile, device, link, bytes_per_value=1.0, **kw)
    local, remote = extremes(profile, device, link, **kw)
    allowed = [c for c in all_k if c.fits and c.k >= min_k] + [local] * local.fits
    allowed += [remote] if min_k == 0 else []
    if not allowed:
        return
    score = (lambda c: c.latency_s) if objective == "latency" else (lambda c: c.device_j)
    got = best(all_k, (local, remote), objective, min_k=min_k)
    assert score(got) == min(score(c) for c in allowed)
    assert min_k == 0 or got.k != -1  # a private input never goes to the server whole
