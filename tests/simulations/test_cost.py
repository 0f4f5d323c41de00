"""The cost model against hand-computed cases, and the profiles it reads."""

import re

import pytest

from fedslim.errors import ConfigError
from fedslim.resources import cost, profiles
from fedslim.resources.profiles import Device, Link, Prices

DEVICE = Device("d", flops=1e9, active_w=2.0, idle_w=0.5, memory_mb=1000)
LINK = Link("l", 10.0, 5.0, 0.2, a_up_mw=200, a_down_mw=100, base_mw=1000, tail_j=1.0, usd_per_gb=2)
PRICES = Prices(usd_per_kwh=0.5, server_usd_per_h=3.6, server_flops=1e9)

CASES = [  # (function, kwargs, expected): worked by hand in the comments
    # rtt/2 + 8 * 1e6 / 8e6
    (cost.transfer_s, dict(nbytes=1_000_000, mbps=8.0, rtt_s=0.1), 1.05),
    (cost.transfer_s, dict(nbytes=0, mbps=8.0, rtt_s=0.1), 0.0),
    # 8e6 bits * (100 + 1000/10) nJ/bit + 2 J tail = 1.6 + 2 (P = 2 W for 0.8 s)
    (cost.radio_j, dict(nbytes=1_000_000, mbps=10, a_mw=100, base_mw=1000, tail_j=2), 3.6),
    (cost.radio_j, dict(nbytes=0, mbps=10, a_mw=100, base_mw=1000, tail_j=2), 0.0),
    (cost.server_usd, dict(prices=PRICES, seconds=10.0), 0.01),
]


@pytest.mark.parametrize(("fn", "kwargs", "expected"), CASES)
def test_cost_functions_match_hand_computed_cases(fn, kwargs, expected):
    assert fn(**kwargs) == pytest.approx(expected)


def test_a_client_round_adds_up():
    c = cost.client_cost(DEVICE, LINK, PRICES, bytes_down=10**6, bytes_up=5 * 10**5, flops=3e9)
    assert (c.down_s, c.compute_s, c.up_s) == pytest.approx((0.9, 3.0, 0.9))
    # 2 W * 3 s + (1.6 + 1) J down + (8 * 5e5 * (200 + 1000/5) nJ + 1) J up
    assert c.energy_j == pytest.approx(6 + 2.6 + 2.6)
    assert c.usd == pytest.approx(1.5e6 / 1e9 * 2 + 11.2 / 3.6e6 * 0.5)
    assert c.total_s == pytest.approx(4.8)


def test_the_catalogue_is_complete_and_sane():
    assert len(profiles.DEVICES) >= 6 and len(profiles.LINKS) >= 5
    for d in profiles.DEVICES.values():
        assert d.flops > 1e9 and d.active_w > d.idle_w > 0 and d.memory_mb >= 1024
    for link in profiles.LINKS.values():
        assert link.down_mbps > 0 and link.up_mbps > 0 and link.rtt_s > 0


def test_user_profiles_extend_the_catalogue(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        "[device.my-board]\nflops = 2e9\nactive_w = 3\nidle_w = 1\nmemory_mb = 512\n"
        "[link.my-mesh]\ndown_mbps = 2\nup_mbps = 1\nrtt_s = 0.3\na_up_mw = 100\n"
        "a_down_mw = 50\nbase_mw = 200\ntail_j = 0.5\nusd_per_gb = 0\n"
    )
    devices, links = profiles.load(path)
    assert devices["my-board"].flops == 2e9 and "laptop" in devices
    assert links["my-mesh"].rtt_s == 0.3


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[device.x]\nflops = 1\n", "[device.x] lacks 'active_w'"),
        (
            "[device.x]\nflops = 1\nactive_w = 1\nidle_w = 1\nmemory_mb = 1\nwatts = 2\n",
            "unknown field 'watts'",
        ),
        (
            "[device.x]\nflops = 'fast'\nactive_w = 1\nidle_w = 1\nmemory_mb = 1\n",
            "field 'flops'",
        ),
        ("[gadget.x]\n", "unknown table 'gadget'"),
        ("[device.x\n", "cannot read"),
    ],
)
def test_a_malformed_profile_file_names_the_entry_and_field(tmp_path, text, says):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(says)):
        profiles.load(path)
