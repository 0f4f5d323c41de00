"""Client-level DP: the accountant is dp-accounting's for the same events, clipping bounds
what one client can do to the mean, and the config refuses what DP-FedAvg cannot cover."""

import dp_accounting as dpa
import numpy as np
import pytest

from fedslim.config import ConfigError, RunConfig
from fedslim.privacy.accountant import epsilon, noise_for
from fedslim.privacy.dpfedavg import clip, noisy_mean


@pytest.mark.parametrize("kind", ["rdp", "pld"])
def test_epsilon_is_dp_accountings_for_the_same_events(kind):
    rates = [0.1] * 6 + [0.2] * 2 + [1.0]  # rounds at the rates clients were sampled at
    accountant = (
        dpa.rdp.RdpAccountant([*range(2, 129), 256, 512, 1024])
        if kind == "rdp"
        else dpa.pld.PLDAccountant()
    )
    for rate in rates:  # one round at a time, as a run composes them
        gaussian = dpa.GaussianDpEvent(1.3)
        accountant.compose(gaussian if rate == 1 else dpa.PoissonSampledDpEvent(rate, gaussian))
    want = accountant.get_epsilon(1e-5)
    assert epsilon(kind, samplings=rates, noise=1.3, delta=1e-5) == pytest.approx(want, rel=1e-6)
    assert epsilon(kind, samplings=[], noise=1.3, delta=1e-5) == 0.0
    assert epsilon(kind, samplings=rates, noise=0.0, delta=1e-5) == float("inf")


def test_the_noise_solved_for_a_budget_meets_it_and_no_less_noise_would():
    z = noise_for("rdp", sampling=0.5, rounds=8, delta=1e-3, target=4.0)
    kw = dict(samplings=[0.5] * 8, delta=1e-3)
    assert epsilon("rdp", noise=z, **kw) <= 4.0 < epsilon("rdp", noise=z / 1.002, **kw)


def test_one_client_moves_the_noised_mean_by_at_most_the_clip_over_the_sampled():
    rng = np.random.default_rng(0)
    honest = [rng.normal(0, 0.01, 50).astype(np.float32) for _ in range(4)]
    attacker = np.full(50, 1e6, np.float32)  # a huge update
    kw = dict(bound=0.1, noise=1.0, sampled=5)
    without, _ = noisy_mean(honest, rng=np.random.default_rng(7), **kw)
    with_it, norms = noisy_mean([*honest, attacker], rng=np.random.default_rng(7), **kw)
    moved = float(np.linalg.norm(with_it - without))
    assert moved == pytest.approx(0.1 / 5, rel=1e-5) and norms[-1] > 1e6
    # no noise: the mean of the clipped updates over the clients asked, dropped ones as zero
    exact, _ = noisy_mean(honest[:2], bound=0.1, noise=0.0, sampled=5, rng=rng)
    assert np.allclose(exact, (clip(honest[0], 0.1)[0] + clip(honest[1], 0.1)[0]) / 5)
    with pytest.raises(ValueError, match="6 updates from 5"):
        noisy_mean([*honest, attacker, attacker], rng=rng, **kw)


@pytest.mark.parametrize(
    "values, key",
    [
        (dict(dp="central"), "dp-noise-multiplier"),
        (dict(dp="central", dp_epsilon=4, strategy="krum"), "strategy"),
        (dict(dp="central", dp_epsilon=4, strategy="fedmedian"), "strategy"),
        (dict(dp="central", dp_epsilon=4, strategy="exact"), "strategy"),
        (dict(dp="central", dp_epsilon=4, lora_r=8, lora_ranks="4,8"), "lora-ranks"),
        (dict(dp="central", dp_epsilon=4, dp_clip=0), "dp-clip"),
        (dict(dp="central", dp_epsilon=4, dp_accountant="moments"), "dp-accountant"),
        (dict(dp="local"), "dp"),
    ],
)
def test_a_combination_dp_cannot_cover_fails_before_the_run_naming_the_key(values, key):
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        RunConfig.of(**values)
    ok = RunConfig.of(dp="central", dp_epsilon=4, strategy="ffa", uplink_codec="q4|zstd:3")
    assert ok.privacy.on and ok.privacy.delta(100) == pytest.approx(100**-1.1)


def test_adaptive_clipping_splits_the_noise_and_tracks_the_median_norm():
    from fedslim.privacy.dpfedavg import CentralDP, update_noise

    # two Gaussian queries (update, centred count) compose as the accountant's one
    z = update_noise(1.2, count_noise=5.0)
    assert z > 1.2 and z**-2 + 10.0**-2 == pytest.approx(1.2**-2)
    with pytest.raises(ValueError, match="dp-adaptive-clip"):
        update_noise(1.2, count_noise=0.5)  # 10 clients asked: too few to spare noise
    # the clip moves geometrically toward the norms' median, from far below and above
    rng = np.random.default_rng(0)
    for start in (0.01, 100.0):
        dp = CentralDP(clip=start, noise=1.0, adaptive=True, count_noise=5.0)
        for _ in range(300):
            norms = list(rng.uniform(0.5, 1.5, 100))  # median 1
            dp.adapt(norms, sampled=100, rng=rng)
        assert dp.clip == pytest.approx(1.0, rel=0.15), start
    fixed = CentralDP(clip=0.1, noise=1.0)
    fixed.adapt([5.0] * 10, sampled=10, rng=rng)
    assert fixed.clip == 0.1
