"""Who the clients are: a device and a link per partition, and how often each is there.

``devices = "mix:phone-mid=0.6,raspberry-pi-4=0.4"`` draws each partition's device from
the weights, seeded, once for the run (likewise ``links``); a single name gives everyone
that profile; ``population = FILE.csv`` lists them per partition (``partition,device,
link[,availability]``). Every name is checked against the profiles before the run.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import seeds
from ..errors import ConfigError
from ..resources.profiles import Device, Link


@dataclass(frozen=True)
class Member:
    device: Device
    link: Link
    availability: float  # probability of being available in a round


def parse_mix(spec: str, known: dict, key: str) -> list[tuple[str, float]]:
    """``"NAME"`` or ``"mix:A=0.6,B=0.4"`` -> [(name, weight)] with weights summing to 1."""
    parts = spec[len("mix:") :].split(",") if spec.startswith("mix:") else [f"{spec}=1"]
    out = []
    for part in parts:
        name, _, weight = part.partition("=")
        if name not in known:
            raise ConfigError(
                f"config key '{key}': unknown profile {name!r}; known: {', '.join(sorted(known))}"
            )
        try:
            w = float(weight)
        except ValueError:
            w = -1.0
        if not w > 0:
            raise ConfigError(f"config key '{key}': weight of {name!r} must be > 0, got {weight!r}")
        out.append((name, w))
    total = sum(w for _, w in out)
    return [(name, w / total) for name, w in out]


def assign(
    partitions: list[int],
    *,
    devices: str,
    links: str,
    availability: float,
    population: str,
    profiles: tuple[dict[str, Device], dict[str, Link]],
    seed: int,
) -> dict[int, Member]:
    """Partition id -> its device, link and availability."""
    known_devices, known_links = profiles
    if population:
        return _from_file(Path(population), partitions, known_devices, known_links, availability)
    device = _deal(parse_mix(devices, known_devices, "devices"), partitions, seed, 0)
    link = _deal(parse_mix(links, known_links, "links"), partitions, seed, 1)
    return {
        p: Member(known_devices[device[p]], known_links[link[p]], availability) for p in partitions
    }


def is_available(member: Member, seed: int, server_round: int, partition: int) -> bool:
    return member.availability >= 1 or (
        seeds.availability(seed, server_round, partition) < member.availability
    )


def _deal(mix: list[tuple[str, float]], partitions: list[int], seed: int, stream: int) -> dict:
    """Each profile to its share of the partitions (largest remainders round the shares),
    in a seeded order: a 0.6 / 0.4 mix of 10 clients is exactly 6 and 4."""
    n = len(partitions)
    quotas = np.array([w * n for _, w in mix])
    counts = np.floor(quotas).astype(int)
    for i in np.argsort(-(quotas - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    names = [name for (name, _), k in zip(mix, counts, strict=True) for _ in range(k)]
    order = seeds.population(seed, stream).permutation(n)
    return {p: names[i] for p, i in zip(sorted(partitions), order, strict=True)}


def _from_file(path: Path, partitions, devices, links, default_availability) -> dict[int, Member]:
    where = f"config key 'population': {path}"
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    out = {}
    for line, row in enumerate(rows, start=2):
        try:
            p = int(row["partition"])
            device, link = devices[row["device"]], links[row["link"]]
            rate = float(row.get("availability") or default_availability)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{where} line {line}: needs partition, device and link from the profiles "
                f"(and an optional availability): {exc!r}"
            ) from None
        if not 0 < rate <= 1:
            raise ConfigError(f"{where} line {line}: availability must be in (0, 1]")
        out[p] = Member(device, link, rate)
    missing = sorted(set(partitions) - set(out))
    if missing:
        raise ConfigError(f"{where}: no row for partition {missing[0]}")
    return out
