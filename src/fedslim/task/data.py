"""Tasks: the learning problem every node agrees on, and each node's share of it.

A task is loaded identically on every node from the run config (generated from the
seed, or read from a file), split once into a held-out evaluation set that clients never
see and a training pool that flwr-datasets partitioners divide among the nodes.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import seeds
from . import templates, wordnet


@dataclass(frozen=True, eq=False)  # identity hash: one cached instance per task
class TaskData:
    kind: str  # "cls": inputs -> int label; "sft": prompt -> response (causal LM)
    inputs: tuple[str, ...]
    targets: tuple  # int labels (cls) or response strings (sft)
    label_names: tuple[str, ...]
    train_idx: np.ndarray
    eval_idx: np.ndarray

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


@lru_cache(maxsize=4)
def load_task(task: str, *, seed: int, num_examples: int, eval_fraction: float) -> TaskData:
    """Load and split a task; pure in its arguments, so caching it is safe."""
    if task == "template-cls":
        inputs, labels = templates.generate(num_examples, seed)
        return _split("cls", inputs, labels, templates.LABELS, seed, eval_fraction)
    if task == "wordnet":
        inputs, labels, names = wordnet.load(seed)
        return _split("cls", inputs, labels, names, seed, eval_fraction)
    if task.startswith("text-cls:"):
        inputs, raw = _read_pairs(Path(task.split(":", 1)[1]), "text", "label")
        names = tuple(sorted(set(raw), key=_label_order))
        if len(names) < 2:
            raise ValueError(f"task {task!r}: needs at least 2 distinct labels")
        labels = [names.index(x) for x in raw]
        return _split("cls", inputs, labels, names, seed, eval_fraction)
    if task.startswith("sft:"):
        prompts, responses = _read_pairs(Path(task.split(":", 1)[1]), "prompt", "response")
        return _split("sft", prompts, responses, (), seed, eval_fraction)
    raise ValueError(f"config key 'task': unknown task {task!r}")


def _label_order(label: str) -> tuple[int, float | str]:
    """Numeric labels sort numerically ("2" < "10"), others alphabetically."""
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def _read_pairs(path: Path, first: str, second: str) -> tuple[list[str], list[str]]:
    """Read ``first,second`` columns from a CSV (with header) or JSONL file."""
    rows: list[dict] = []
    with path.open(encoding="utf-8") as fh:
        if path.suffix.lower() in (".jsonl", ".json"):
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}:{n}: not a JSON object: {exc}") from None
        else:
            rows = list(csv.DictReader(fh))
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict) or first not in row or second not in row:
            raise ValueError(f"{path}: record {n} lacks '{first}' and '{second}' fields")
    if len(rows) < 10:
        raise ValueError(f"{path}: needs at least 10 records, found {len(rows)}")
    return [str(r[first]) for r in rows], [str(r[second]) for r in rows]


def _split(kind, inputs, targets, names, seed, eval_fraction) -> TaskData:
    n = len(inputs)
    order = np.random.default_rng(seeds.eval_split(seed)).permutation(n)
    n_eval = max(1, int(round(n * eval_fraction)))
    return TaskData(
        kind,
        tuple(inputs),
        tuple(targets),
        tuple(names),
        train_idx=np.sort(order[n_eval:]),
        eval_idx=np.sort(order[:n_eval]),
    )
