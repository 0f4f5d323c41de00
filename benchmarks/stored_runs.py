"""The bench-wordnet runs stored under ``runs/bench-wordnet[-link-bound]/runs`` as the
report's rows, keyed by directory name without ``-sN`` (what the figure scripts read)."""

import json
import re
from pathlib import Path

from fedslim.experiments import report
from fedslim.ledger import read_rounds

RUNS = {
    "compute-bound": "runs/bench-wordnet/runs",
    "link-bound": "runs/bench-wordnet-link-bound/runs",
}


def load(root: str | Path, keys=()) -> list[report.Run]:
    """Every finished run under ``root`` (only those of ``keys``, when given)."""
    runs = []
    for d in sorted(Path(root).glob("*-s*")):
        match = re.fullmatch(r"(.*)-s(\d+)", d.name)
        if not match or not (d / "summary.json").exists():
            continue
        key, seed = match.groups()
        if keys and key not in keys:
            continue
        summary = json.loads((d / "summary.json").read_text())
        runs.append(report.Run(key, read_rounds(d), summary, 0.0, int(seed)))
    return runs
