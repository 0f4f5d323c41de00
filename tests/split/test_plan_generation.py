"""The generation planner: prefill and decode priced apart, every placement written out
from scratch for one k, and the choices that follow from a device, a link and a server."""

import dataclasses

import pytest

from fedslim.resources.cost import radio_j, transfer_s
from fedslim.resources.profiles import Device, Link
from fedslim.split.plan_generation import (
    TOKEN_MESSAGE,
    Decode,
    choose_generation,
    generation_costs,
)
from fedslim.split.planner import MB, Profile

PROFILE = Profile(embed_flops=1e6, block_flops=(4e8, 4e8, 4e8, 4e8), out_flops=2e8,
                  embed_bytes=40_000_000, block_bytes=(50_000_000,) * 4, hidden=512,
                  result_bytes=0)  # fmt: skip
DECODE = Decode(head=(1e6, 4.01e8, 8.01e8, 12.01e8, 16.01e8),
                tail=(18e8, 14e8, 10e8, 6e8, 2e8), out=2e8, kv_bytes=4096,
                out_bytes=40_000_000)  # fmt: skip
PHONE = Device("phone", 2e10, 4.0, 0.5, 2000)
SERVER = 1e13
LINK = Link("lte", 20.0, 5.0, 0.05, 50.0, 25.0, 1000.0, 1.0, 0.0)
KW = dict(server_flops=SERVER, prompt=128, answer=64, bytes_per_value=1.0, message_overhead=96)


def _by(costs, label):
    return next(c for c in costs if c.label == label)


def test_a_split_point_is_prefill_once_then_a_round_trip_per_token():
    costs = generation_costs(PROFILE, DECODE, PHONE, LINK, **KW)
    c, k, prompt, answer = _by(costs, "split k=2"), 2, 128, 64
    head_pre = (1e6 + 8e8) * prompt / PHONE.flops
    tail_pre = (8e8 + 2e8) * prompt / SERVER
    up_prompt, up_token = prompt * 512 + 96, 512 + 96
    assert c.ttft_s == pytest.approx(head_pre + transfer_s(up_prompt, 5.0, 0.05) + tail_pre
                                     + transfer_s(TOKEN_MESSAGE, 20.0, 0.05))  # fmt: skip
    down = transfer_s(TOKEN_MESSAGE, 20.0, 0.05)
    assert c.tpot_s == pytest.approx(8.01e8 / PHONE.flops + transfer_s(up_token, 5.0, 0.05)
                                     + 10e8 / SERVER + down)  # fmt: skip
    assert c.total_s(answer) == pytest.approx(c.ttft_s + 63 * c.tpot_s)
    assert c.up_bytes == up_prompt + 63 * up_token and c.down_bytes == 64 * TOKEN_MESSAGE
    device_s = head_pre + 63 * 8.01e8 / PHONE.flops
    radio = radio_j(c.up_bytes, 5.0, 50.0, 1000.0, 1.0) + radio_j(c.down_bytes, 20.0, 25.0,
                                                                   1000.0, 1.0)  # fmt: skip
    assert c.device_j == pytest.approx(4.0 * device_s + radio)
    cache = k * 4096 * (prompt + answer) / MB
    assert c.device_mb == pytest.approx((40e6 + 2 * 50e6) / MB + cache + 4 * 512 * 4 * 128 / MB)


def test_the_u_shape_trades_the_token_for_a_hidden_state_and_runs_the_head_here():
    costs = generation_costs(PROFILE, DECODE, PHONE, LINK, **KW)
    split, u = _by(costs, "split k=1"), _by(costs, "u-shape k=1")
    extra = (transfer_s(512 + 96, 20.0, 0.05) - transfer_s(TOKEN_MESSAGE, 20.0, 0.05)
             + 2e8 / PHONE.flops - 2e8 / SERVER)  # fmt: skip
    assert u.tpot_s - split.tpot_s == pytest.approx(extra)
    assert u.device_mb - split.device_mb == pytest.approx(40e6 / MB)


def test_the_choice_follows_the_device_the_link_and_the_objective():
    costs = generation_costs(PROFILE, DECODE, PHONE, LINK, **KW)
    # a fast server on a good link: everything there, for every time objective
    for objective in ("ttft", "tpot", "total"):
        assert choose_generation(costs, objective, 64).mode == "server"
    # the prompt may not leave the device: the best split point or the device alone
    private = choose_generation(costs, "total", 64, min_k=1)
    assert private.mode in ("split", "u-shape", "device") and private.k >= 1
    # a device that holds the model and a server share slower than it: the device alone;
    # cloud prefill or the server win the first token when the device is slow at prompts
    big = dataclasses.replace(PHONE, memory_mb=8000)
    busy = KW | {"server_flops": 1e9}
    assert choose_generation(generation_costs(PROFILE, DECODE, big, LINK, **busy), "tpot",
                             64).mode == "device"  # fmt: skip
    fast_down = dataclasses.replace(LINK, down_mbps=1000.0, rtt_s=0.01)
    weak = dataclasses.replace(big, flops=2e8)
    ttft = choose_generation(generation_costs(PROFILE, DECODE, weak, fast_down, **KW), "ttft", 64)
    assert ttft.mode in ("server", "cloud-prefill")
    with pytest.raises(ValueError, match="objective"):
        choose_generation(costs, "speed", 64)
    tiny = dataclasses.replace(PHONE, memory_mb=1)
    with pytest.raises(ValueError, match="fits"):
        choose_generation(generation_costs(PROFILE, DECODE, tiny, LINK, **KW), "ttft", 64, min_k=1)


def test_split_plan_with_an_answer_prices_generation(tmp_path):
    from typer.testing import CliRunner

    from fedslim.cli import cli

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(f'{{"prompt": "a {i}", "response": "b {i}"}}\n' for i in range(20)))
    args = ["split", "plan", "--seq-len", "16", "--answer", "8", "--device", "phone-low",
            "--link", "3g", "--objective", "tpot", "--min-layer", "1"]  # fmt: skip
    result = CliRunner().invoke(cli, [*args, "--set", f"task=sft:{pairs}"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for row in ("split k=2", "u-shape k=0", "cloud-prefill", "server", "device"):
        assert row in result.output
    assert "decision: " in result.output and "over all on the server" in result.output
    classifier = CliRunner().invoke(cli, args)
    assert classifier.exit_code == 2 and "needs a causal LM" in classifier.output
    bad = CliRunner().invoke(cli, [*args[:-4], "--objective", "latency"], env={"COLUMNS": "200"})
    assert bad.exit_code == 2 and "ttft, tpot, total, energy" in bad.output
