"""The simulator against a deployment over emulated links: the same job run by real
SuperNodes in network namespaces behind rate-shaped links (``deploy --link``) and
simulated with the same link profile and this host's calibrated device profile.

Reports, per round, the bytes (payloads must be equal; Flower's message framing varies
by a byte or two with random node ids) and the round seconds: the deployment's measured
``wall_s`` against the simulator's ``sim_round_s``. Needs root for the namespaces.

    sudo python benchmarks/emulated_links.py [--link 3g] [--lora-r 64] [--rounds 4]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from fedslim.config import RunConfig, SimulationConfig  # noqa: E402
from fedslim.deploy.local import LocalDeployment  # noqa: E402
from fedslim.resources.profiles import LINKS  # noqa: E402
from fedslim.simulations import calibrate  # noqa: E402
from fedslim.simulations.run import simulate  # noqa: E402


def _rounds(out: Path) -> list[dict]:
    with (out / "rounds.csv").open() as fh:
        return [r for r in csv.DictReader(fh) if r["round"] != "0"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--link", default="3g", choices=sorted(LINKS))
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
        deployed = RunConfig.from_mapping(job | {"out": str(tmp / "deployed")})
        link = LINKS[args.link]
        with LocalDeployment(tmp / "fed", 2, links={0: link, 1: link}) as local:
            local.submit(deployed, timeout=1800)
        priced = {"devices": "host", "links": args.link, "profiles": str(tmp / "host.toml")}
        sim = RunConfig.from_mapping(job | {"out": str(tmp / "simulated")} | priced)
        simulate(sim, SimulationConfig(num_supernodes=2), report=lambda *a: None)
        real, model = _rounds(tmp / "deployed"), _rounds(tmp / "simulated")
    rows = []
    for r, s in zip(real, model, strict=True):
        rows.append({
            "round": int(r["round"]),
            "uplink_payload": (int(r["uplink_payload_bytes"]), int(s["uplink_payload_bytes"])),
            "downlink_payload":
                (int(r["downlink_payload_bytes"]), int(s["downlink_payload_bytes"])),
            "uplink_wire": (int(r["uplink_bytes"]), int(s["uplink_bytes"])),
            "measured_s": float(r["wall_s"]), "simulated_s": float(s["sim_round_s"]),
        })  # fmt: skip
    warm = rows[1:]
    measured = sum(x["measured_s"] for x in warm) / len(warm)
    simulated = sum(x["simulated_s"] for x in warm) / len(warm)
    for x in rows:
        print(f"round {x['round']}: payload up {x['uplink_payload'][0]} / {x['uplink_payload'][1]}"
              f" B, down {x['downlink_payload'][0]} / {x['downlink_payload'][1]} B (deployed / "
              f"simulated); round {x['measured_s']:.2f} s measured, {x['simulated_s']:.2f} s "
              "simulated")  # fmt: skip
    equal = all(x["uplink_payload"][0] == x["uplink_payload"][1]
                and x["downlink_payload"][0] == x["downlink_payload"][1] for x in rows)  # fmt: skip
    print(
        f"{args.link}, lora-r {args.lora_r}: payload bytes {'equal' if equal else 'DIFFER'}; "
        f"warm rounds {measured:.2f} s measured vs {simulated:.2f} s simulated "
        f"({simulated / measured - 1:+.0%}); host {flops / 1e9:.1f} GFLOP/s"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"link": args.link, "lora_r": args.lora_r, "rows": rows,
                                        "measured_s": measured, "simulated_s": simulated,
                                        "host_flops": flops}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
