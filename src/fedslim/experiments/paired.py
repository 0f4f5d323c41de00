"""Paired per-seed ratios of time to target: which configuration is faster, and whether
the seeds can tell.

A seed fixes the partition, the initial adapter and the sampling, so the ratio of two
configurations' times on the same seed cancels what the seed sets; the spread left is
what the configurations themselves do. The geometric mean of those ratios and a
Student-t interval on their logs say how sure a comparison is, and ``seeds_for_width``
says how many seeds an interval +-5% wide would take at the spread seen: on a population
whose accuracy plateaus near the target, one round moves a seed's time by 10-20%, and a
5% claim needs far more seeds than a benchmark runs.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

from ..errors import ConfigError

MARGIN = 0.05  # "within 5%": the margin the verdicts and seeds_for_width use
# two-sided 95% Student-t quantiles for 1..30 degrees of freedom (a series beyond)
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip

Times = dict[str, dict[int, tuple[float, bool]]]  # label -> seed -> (seconds, censored)


@dataclass(frozen=True)
class Pairing:
    """One configuration against the baseline, over the seeds both ran."""

    configuration: str
    baseline: str
    seeds: tuple[int, ...]
    ratios: tuple[float, ...]  # time to target over the baseline's (< 1: faster), per seed
    censored: tuple[bool, ...]  # the configuration did not reach: its ratio is a floor
    geomean: float | None = None  # None: a censored seed, or fewer than 2 seeds
    low: float | None = None  # the 95% interval of the geometric mean
    high: float | None = None
    seeds_for_width: int | None = None  # for an interval +-5% wide at this spread
    verdict: str = ""


def t975(df: int) -> float:
    """The two-sided 95% Student-t quantile (Cornish-Fisher's series past the table)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def times(runs, interpolate: bool = False) -> Times:
    """Per configuration and seed (the run's own, from its config): seconds to target and
    whether that is censored (a run that never reached counts with its whole time);
    ``interpolate``: the :func:`crossing` time instead of the round's end."""
    out: Times = {}
    for run in runs:
        hit = run.summary.get("to_target")
        seconds = hit["sim_s"] if hit else run.rounds[-1].sim_elapsed_s
        if hit and interpolate:
            seconds = crossing(run)
        seed = run.summary.get("config", {}).get("seed", run.repeat)
        mine = out.setdefault(run.label, {})
        if seed in mine:
            raise ValueError(f"{run.label!r} ran seed {seed} twice: runs cannot be paired")
        mine[seed] = (seconds, not hit)
    return out


def crossing(run) -> float:
    """When held-out accuracy crossed the target, linear between the evaluations around
    it. A round is 10-20% of the time to target on a small benchmark, so by the round
    rule a seed that ends a round at 0.799 counts a whole round more than one at 0.805;
    the crossing removes that step (the round's end when the rows cannot place it)."""
    hit = run.summary["to_target"]
    target = run.summary.get("config", {}).get("target-accuracy")
    target = None if target is None else float(target)
    by_round = {r.round: r for r in reversed(run.rounds)}  # the first row of a round
    now, before = by_round.get(hit["round"]), by_round.get(hit["round"] - 1)
    placed = now is not None and before is not None and target is not None
    if not placed or not before.accuracy < target <= now.accuracy:  # NaN: not placed
        return hit["sim_s"]
    share = (target - before.accuracy) / (now.accuracy - before.accuracy)
    return before.sim_elapsed_s + share * (now.sim_elapsed_s - before.sim_elapsed_s)


def whole(per_config: Times) -> list[str]:
    """The configurations that reached the target on every seed they ran, in a time > 0
    (the only ones a ratio can be taken against)."""
    return [
        label
        for label, seeds in per_config.items()
        if seeds and all(not c and s > 0 for s, c in seeds.values())
    ]


def fastest(per_config: Times) -> str | None:
    """The least geometric-mean time among the configurations that reached the target on
    every seed, of those that ran the most seeds (a one-seed probe is no baseline)."""
    candidates = whole(per_config)
    most = max((len(per_config[label]) for label in candidates), default=0)
    means = {
        label: statistics.geometric_mean([s for s, _ in per_config[label].values()])
        for label in candidates
        if len(per_config[label]) == most
    }
    return min(means, key=means.get) if means else None


def pair(label: str, base: str, per_config: Times) -> Pairing:
    """``label`` over ``base`` on their common seeds. A run that never reached counts with
    its whole time, so its ratio is a floor: it can show a configuration slower on every
    seed, but gives no interval."""
    mine, theirs = per_config[label], per_config[base]
    seeds = tuple(sorted(set(mine) & set(theirs)))
    p = Pairing(
        label,
        base,
        seeds,
        ratios=tuple(mine[s][0] / theirs[s][0] for s in seeds),
        censored=tuple(mine[s][1] for s in seeds),
    )
    if not seeds:
        return replace(p, verdict="no common seed")
    if any(p.censored) or min(p.ratios) <= 0:
        k = sum(p.censored)
        if all(r > 1 for r in p.ratios):
            return replace(p, verdict=f"slower on every seed ({k} of {len(seeds)} did not reach)")
        return replace(p, verdict=f"{k} of {len(seeds)} did not reach: not resolved")
    if len(seeds) < 2:
        return replace(p, verdict="one seed: not resolved")
    logs = [math.log(r) for r in p.ratios]
    mean, sd = statistics.mean(logs), statistics.stdev(logs)
    half = t975(len(logs) - 1) * sd / math.sqrt(len(logs))
    low, high = math.exp(mean - half), math.exp(mean + half)
    return replace(
        p,
        geomean=math.exp(mean),
        low=low,
        high=high,
        seeds_for_width=seeds_for_width(sd),
        verdict=_verdict(low, high),
    )


def seeds_for_width(sd: float, margin: float = MARGIN) -> int:
    """The fewest seeds whose 95% interval is no wider than +-margin at log-spread ``sd``
    (a guide: sd comes from the seeds run; a verdict on a ratio near 1 +- margin needs
    a narrower interval still)."""
    n = 2
    while t975(n - 1) * sd / math.sqrt(n) > math.log1p(margin):
        n += 1
    return n


def _verdict(low: float, high: float) -> str:
    """Whether the interval excludes 1, whether it lies within the margin of it, and if
    neither, whether one bound does: "at most 5% slower on the geometric mean" is a
    one-sided claim (non-inferiority: the upper end of the two-sided 95% interval under
    1.05), settled by fewer seeds than +-5% when the configuration is in fact faster."""
    within = low >= 1 / (1 + MARGIN) and high <= 1 + MARGIN
    side = "faster" if high < 1 else "slower" if low > 1 else ""
    if within:
        return f"{side}, within {MARGIN:.0%}" if side else f"within {MARGIN:.0%}"
    if side:
        return side
    if high <= 1 + MARGIN:
        return f"at most {MARGIN:.0%} slower"
    if low >= 1 / (1 + MARGIN):
        return f"at most {MARGIN:.0%} faster"
    return "not resolved"


def pairings(runs, baseline: str | None = None, interpolate: bool = False) -> list[Pairing]:
    """Every configuration against ``baseline`` (default: the fastest; [] when no
    configuration reached the target on every seed); ``interpolate``: by the crossing."""
    per_config = times(runs, interpolate)
    check_baseline(per_config, baseline)
    base = baseline or fastest(per_config)
    if base is None:
        return []
    return [pair(label, base, per_config) for label in per_config if label != base]


def check_baseline(per_config: Times, baseline: str | None) -> None:
    """A named baseline must be a configuration that reached the target on every seed."""
    if baseline is None:
        return
    if baseline not in per_config:
        known = ", ".join(repr(label) for label in per_config)
        raise ConfigError(f"baseline {baseline!r} is not a configuration of this sweep ({known})")
    if baseline not in whole(per_config):
        raise ConfigError(f"baseline {baseline!r} did not reach the target on every seed")


def markdown(rows: list[Pairing], interpolated: bool = False) -> str:
    """A table of paired.md: a row per configuration, ratios over the baseline's time."""
    if not rows:
        return "Nothing to pair: fewer than two configurations, or none reached the target.\n"
    head = (
        f"Time to target over **{rows[0].baseline}**'s (below 1: faster), paired by seed: "
        "the geometric mean, its 95% interval, and the seeds an interval +-5% wide would "
        "take at this spread. `>`: the run never reached the target (a floor)."
    )
    if interpolated:
        head = (
            "**At the crossing:** the time accuracy crossed the target, linear between the "
            "evaluations around it, not the end of the round that reached it (by rounds, a "
            "round ending at 0.799 counts a whole round more than one at 0.805). " + head
        )
    lines = [head, "", "| configuration | seeds | per seed | geometric mean | 95% interval | "
             "verdict | seeds for +-5% |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for p in rows:
        per_seed = ", ".join(
            f"{'>' if c else ''}{r:.2f}x" for r, c in zip(p.ratios, p.censored, strict=True)
        )
        mean = f"{p.geomean:.2f}x" if p.geomean else ""
        interval = f"{p.low:.2f}-{p.high:.2f}x" if p.low else ""
        seeds = ",".join(map(str, p.seeds))
        name = p.configuration.replace("|", "\\|")
        lines.append(
            f"| {name} | {seeds} | {per_seed} | {mean} | {interval} | {p.verdict} | "
            f"{'~' + str(p.seeds_for_width) if p.seeds_for_width else ''} |"
        )
    return "\n".join(lines) + "\n"
