"""The simulator against a deployment over emulated links: the same job run by real
SuperNodes in network namespaces behind rate-shaped links (``deploy --link``) and
simulated with the same link profile and this host's calibrated device profile.

The transport's own costs are measured first, on another link (``--calibrate-on``):
the bytes SuperNode 0's interface carried per ledger byte (TCP/IP, TLS and HTTP framing,
polls, heartbeats: ``transport-overhead``) and the seconds a warm round takes beyond
the simulated one (the engine's polls: ``round-overhead-s``). The simulator, priced with
them, is then checked on ``--link``: payload bytes (must be equal) and round seconds
(the deployment's measured ``wall_s`` against ``sim_round_s``). Needs root.

    sudo python benchmarks/emulated_links.py [--link 3g] [--calibrate-on wifi] [--lora-r 64]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import tempfile
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from fedslim.config import EngineConfig, RunConfig  # noqa: E402
from fedslim.deploy.local import LocalDeployment  # noqa: E402
from fedslim.resources.profiles import LINKS  # noqa: E402
from fedslim.simulations import calibrate  # noqa: E402
from fedslim.simulations.run import simulate  # noqa: E402


def _rounds(out: Path) -> list[dict]:
    with (out / "rounds.csv").open() as fh:
        return [r for r in csv.DictReader(fh) if r["round"] != "0"]


def _counters(local: LocalDeployment) -> tuple[int, int]:
    """(bytes sent, bytes received) by SuperNode 0's end of its link."""
    em = local.emulation
    out = subprocess.run(["ip", "-n", em.namespace(0), "-s", "-j", "link", "show",
                          f"fs{em.tag}n0"], capture_output=True, text=True, check=True)  # fmt: skip
    stats = json.loads(out.stdout)[0]["stats64"]
    return stats["tx"]["bytes"], stats["rx"]["bytes"]


def deployed(tmp: Path, job: dict, link: str) -> tuple[list[dict], float]:
    """(rounds, link bytes per ledger byte - 1 on SuperNode 0) of the job over ``link``."""
    out = tmp / f"deployed-{link}"
    with LocalDeployment(tmp / f"fed-{link}", 2, links={0: LINKS[link], 1: LINKS[link]}) as local:
        before = _counters(local)
        local.submit(RunConfig.from_mapping(job | {"out": str(out)}), timeout=1800)
        after = _counters(local)
    with (out / "clients.csv").open() as fh:
        mine = [r for r in csv.DictReader(fh) if r["client"] == "0"]
    ledger = sum(int(r["uplink_bytes"]) + int(r["downlink_bytes"]) for r in mine)
    carried = (after[0] - before[0]) + (after[1] - before[1])
    return _rounds(out), carried / ledger - 1


def simulated(tmp: Path, job: dict, link: str, **overheads: float) -> list[dict]:
    out = tmp / f"simulated-{link}"
    priced = {"devices": "host", "links": link, "profiles": str(tmp / "host.toml"),
              **{k.replace("_", "-"): v for k, v in overheads.items()}}  # fmt: skip
    run = RunConfig.from_mapping(job | {"out": str(out)} | priced)
    simulate(run, EngineConfig(num_supernodes=2), report=lambda *a: None)
    return _rounds(out)


def _warm(rows: list[dict], key: str) -> float:
    return sum(float(r[key]) for r in rows[1:]) / len(rows[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--link", default="3g", choices=sorted(LINKS))
    ap.add_argument("--calibrate-on", default="wifi", choices=sorted(LINKS),
                    help="the link on which the transport's overheads are measured")  # fmt: skip
    ap.add_argument("--lora-r", type=int, default=64, help="a larger adapter: link-bound rounds")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    job = {"num-server-rounds": args.rounds, "local-steps": 5, "num-examples": 400,
           "lora-r": args.lora_r, "overwrite": True}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fedslim-links-") as tmp:
        tmp = Path(tmp)
        # one thread per SuperNode, as the deployment gives each of 2 on 2 cores
        flops, _, _ = calibrate.measure(RunConfig.from_mapping(job), steps=10, threads=1)
        calibrate.write_profile(tmp / "host.toml", calibrate.host_device(flops), model="tiny")
        # 1. the transport's overheads, measured on one link ...
        cal, framing = deployed(tmp, job, args.calibrate_on)
        cal_sim = simulated(tmp, job, args.calibrate_on, transport_overhead=framing)
        polls = max(_warm(cal, "wall_s") - _warm(cal_sim, "sim_round_s"), 0.0)
        # 2. ... and the simulator, priced with them, against a deployment on another
        real, _ = deployed(tmp, job, args.link)
        plain = simulated(tmp, job, args.link)
        model = simulated(tmp, job, args.link, transport_overhead=framing, round_overhead_s=polls)
    rows = []
    for r, s0, s in zip(real, plain, model, strict=True):
        rows.append({
            "round": int(r["round"]),
            "uplink_payload": (int(r["uplink_payload_bytes"]), int(s["uplink_payload_bytes"])),
            "downlink_payload":
                (int(r["downlink_payload_bytes"]), int(s["downlink_payload_bytes"])),
            "measured_s": float(r["wall_s"]), "simulated_plain_s": float(s0["sim_round_s"]),
            "simulated_s": float(s["sim_round_s"]),
        })  # fmt: skip
    measured, simulated_s = _warm(real, "wall_s"), _warm(model, "sim_round_s")
    plain_s = _warm(plain, "sim_round_s")
    equal = all(x["uplink_payload"][0] == x["uplink_payload"][1]
                and x["downlink_payload"][0] == x["downlink_payload"][1] for x in rows)  # fmt: skip
    print(
        f"calibrated on {args.calibrate_on}: transport-overhead {framing:.3f}, "
        f"round-overhead-s {polls:.2f}; host {flops / 1e9:.1f} GFLOP/s"
    )
    print(f"{args.link}, lora-r {args.lora_r}: payload bytes {'equal' if equal else 'DIFFER'}; "
          f"warm rounds {measured:.2f} s measured, {simulated_s:.2f} s simulated "
          f"({simulated_s / measured - 1:+.0%}), {plain_s:.2f} s without the overheads "
          f"({plain_s / measured - 1:+.0%})")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result = {"link": args.link, "calibrated_on": args.calibrate_on, "lora_r": args.lora_r,
                  "transport_overhead": framing, "round_overhead_s": polls, "rows": rows,
                  "measured_s": measured, "simulated_s": simulated_s, "plain_s": plain_s,
                  "host_flops": flops}  # fmt: skip
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
