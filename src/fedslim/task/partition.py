"""A node's share of the training pool, cut by flwr-datasets partitioners."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .data import TaskData


def make_partitioner(spec: str, num_partitions: int, *, seed: int, pool: int):
    from flwr_datasets.partitioner import DirichletPartitioner, IidPartitioner, ShardPartitioner

    if spec == "iid":
        return IidPartitioner(num_partitions=num_partitions)
    name, _, arg = spec.partition(":")
    if name == "dirichlet":
        return DirichletPartitioner(
            num_partitions=num_partitions,
            partition_by="label",
            alpha=float(arg),
            min_partition_size=max(1, min(10, pool // (4 * num_partitions))),
            self_balancing=True,
            seed=seed,
        )
    if name == "shards":
        return ShardPartitioner(
            num_partitions=num_partitions,
            partition_by="label",
            num_shards_per_partition=int(arg),
            seed=seed,
        )
    raise ValueError(f"config key 'partition': unknown partitioning {spec!r}")


@lru_cache(maxsize=64)
def _cached(task: TaskData, spec: str, num_partitions: int, seed: int) -> tuple[np.ndarray, ...]:
    from datasets import Dataset

    if task.kind != "cls" and spec != "iid":
        raise ValueError(
            f"config key 'partition': {spec!r} splits by label; an sft task "
            "has no labels, use partition=iid"
        )
    labels = (
        [task.targets[i] for i in task.train_idx]
        if task.kind == "cls"
        else [0] * len(task.train_idx)
    )
    ds = Dataset.from_dict({"idx": task.train_idx.tolist(), "label": labels})
    partitioner = make_partitioner(spec, num_partitions, seed=seed, pool=len(ds))
    partitioner.dataset = ds
    return tuple(
        np.asarray(partitioner.load_partition(p)["idx"], dtype=np.int64)
        for p in range(num_partitions)
    )


def partition_indices(
    task: TaskData, spec: str, *, partition_id: int, num_partitions: int, seed: int
) -> np.ndarray:
    """Indices (into ``task.inputs``) of the examples node ``partition_id`` trains on."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id {partition_id} outside [0, {num_partitions})")
    return _cached(task, spec, num_partitions, seed)[partition_id]
