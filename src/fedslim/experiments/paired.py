"""Paired per-seed ratios of time to target: which configuration is faster, and whether
the seeds can tell.

A seed fixes the partition, the initial adapter and the sampling, so the ratio of two
configurations' times on the same seed cancels what the seed sets; the spread left is
what the configurations themselves do. The geometric mean of those ratios and a
Student-t interval on their logs say how sure a comparison is, and ``seeds_to_resolve``
says how many seeds an interval of +-5% would take at the spread seen: on a population
whose accuracy plateaus near the target, one round moves a seed's time by 10-20%, and a
5% claim needs far more seeds than a benchmark runs.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from ..errors import ConfigError

MARGIN = 0.05  # "within 5%": the margin the verdicts and seeds_to_resolve use
# two-sided 95% Student-t quantiles for 1..30 degrees of freedom (1.96 beyond)
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


@dataclass(frozen=True)
class Pairing:
    configuration: str
    baseline: str
    seeds: tuple[int, ...]  # the repeats both configurations ran
    ratios: tuple[float, ...]  # time to target over the baseline's, per seed
    censored: tuple[bool, ...]  # the configuration did not reach: its ratio is a floor
    geomean: float | None = None  # None: a censored seed, or fewer than 2 seeds
    low: float | None = None  # the 95% interval of the geometric mean
    high: float | None = None
    seeds_to_resolve: int | None = None  # for a +-5% interval at this spread
    verdict: str = ""


def t975(df: int) -> float:
    return T975[df - 1] if df <= len(T975) else 1.96


def times(runs) -> dict[str, dict[int, tuple[float, bool]]]:
    """Per configuration and seed: (simulated seconds to target, whether it was censored:
    a run that never reached counts with its whole time, as a floor)."""
    out: dict[str, dict[int, tuple[float, bool]]] = {}
    for run in runs:
        hit = run.summary.get("to_target")
        seconds = hit["sim_s"] if hit else run.rounds[-1].sim_elapsed_s
        out.setdefault(run.label, {})[run.repeat] = (seconds, not hit)
    return out


def fastest(per_config: dict[str, dict[int, tuple[float, bool]]]) -> str | None:
    """The configuration with the least geometric-mean time among those that reached the
    target on every seed and ran the most seeds (a one-seed probe is no baseline)."""
    most = max((len(seeds) for seeds in per_config.values()), default=0)
    whole = {
        label: statistics.geometric_mean([s for s, _ in seeds.values()])
        for label, seeds in per_config.items()
        if len(seeds) == most and not any(c for _, c in seeds.values())
    }
    return min(whole, key=whole.get) if whole else None


def pair(label: str, base: str, per_config) -> Pairing:
    mine, theirs = per_config[label], per_config[base]
    seeds = tuple(sorted(set(mine) & set(theirs)))
    ratios = tuple(mine[s][0] / theirs[s][0] for s in seeds)
    censored = tuple(mine[s][1] for s in seeds)
    p = Pairing(label, base, seeds, ratios, censored)
    if any(censored):
        slower = all(r > 1 for r in ratios)
        return _with(p, verdict="slower (did not reach)" if slower else "did not reach")
    if len(seeds) < 2:
        return _with(p, verdict="one seed: not resolved")
    logs = [math.log(r) for r in ratios]
    mean, sd = statistics.mean(logs), statistics.stdev(logs)
    half = t975(len(logs) - 1) * sd / math.sqrt(len(logs))
    low, high = math.exp(mean - half), math.exp(mean + half)
    return _with(
        p,
        geomean=math.exp(mean),
        low=low,
        high=high,
        seeds_to_resolve=seeds_to_resolve(sd),
        verdict=_verdict(low, high),
    )


def seeds_to_resolve(sd: float, margin: float = MARGIN) -> int:
    """The fewest seeds whose 95% interval is no wider than +-margin at log-spread sd."""
    if sd == 0:
        return 2
    n = 2
    while t975(n - 1) * sd / math.sqrt(n) > math.log1p(margin):
        n += 1
    return n


def _verdict(low: float, high: float) -> str:
    if high < 1:
        return "faster"
    if low > 1:
        return "slower"
    if low >= 1 / (1 + MARGIN) and high <= 1 + MARGIN:
        return f"within {MARGIN:.0%}"
    return "not resolved"


def _with(p: Pairing, **changes) -> Pairing:
    return Pairing(**{**p.__dict__, **changes})


def pairings(runs, baseline: str | None = None) -> list[Pairing]:
    """Every configuration against ``baseline`` (default: the fastest)."""
    per_config = times(runs)
    base = baseline or fastest(per_config)
    if base is None:
        return []
    if base not in per_config:
        known = ", ".join(repr(label) for label in per_config)
        raise ConfigError(f"--baseline {base!r} is not a configuration of this sweep ({known})")
    return [pair(label, base, per_config) for label in per_config if label != base]


def markdown(rows: list[Pairing]) -> str:
    if not rows:
        return "No configuration reached the target on every seed: nothing to pair.\n"
    lines = [
        f"Time to target against **{rows[0].baseline}**, seed by seed (paired by seed; a "
        "95% interval of the geometric mean; the seeds a +-5% interval would take).",
        "",
        "| configuration | per seed | geometric mean | 95% interval | verdict | seeds for +-5% |",
        "|---|---|---|---|---|---|",
    ]
    for p in rows:
        per_seed = ", ".join(
            f"{'>' if c else ''}{r:.2f}x" for r, c in zip(p.ratios, p.censored, strict=True)
        )
        mean = f"{p.geomean:.2f}x" if p.geomean else ""
        interval = f"{p.low:.2f}-{p.high:.2f}x" if p.low else ""
        name = p.configuration.replace("|", "\\|")
        lines.append(
            f"| {name} | {per_seed} | {mean} | {interval} | {p.verdict} | "
            f"{p.seeds_to_resolve or ''} |"
        )
    return "\n".join(lines) + "\n"
