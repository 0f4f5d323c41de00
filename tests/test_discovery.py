"""Discovery on Flower's real Message objects: who each node is, and what is refused."""

import pytest
from flwr.app import Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fedslim.config import RunConfig
from fedslim.server.discovery import discover


@pytest.fixture(autouse=True)
def _identity():
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1


class _Grid:
    """Answers the partition-id query with ``infos[node]`` (a node's own reply)."""

    def __init__(self, infos):
        self.infos = infos

    def get_node_ids(self):
        return list(self.infos)

    def send_and_receive(self, msgs, timeout):
        return [
            Message(
                RecordDict({"info": MetricRecord(self.infos[m.metadata.dst_node_id])}), reply_to=m
            )
            for m in msgs
        ]


def test_nodes_report_partition_and_rank():
    grid = _Grid({11: {"partition-id": 1, "lora-r": 4}, 22: {"partition-id": 0}})
    nodes = discover(grid, RunConfig.of(lora_r=8))
    assert nodes.partitions == {11: 1, 22: 0}
    assert nodes.ranks == {1: 4, 0: 8}  # a node without lora-r gets the run config's


@pytest.mark.parametrize(
    ("infos", "cfg", "match"),
    [
        ({1: {"partition-id": 0}, 2: {"partition-id": 0}}, RunConfig.of(), "both report"),
        ({1: {"partition-id": 0, "lora-r": 16}}, RunConfig.of(lora_r=8), "outside 1..8"),
        (
            {1: {"partition-id": 0, "lora-r": 4}, 2: {"partition-id": 1}},
            RunConfig.of(strategy="fedmedian"),
            "node config lora-r",
        ),
        (
            {1: {"partition-id": 0, "lora-r": 4}},
            RunConfig.of(strategy="exact"),
            "needs one rank",
        ),
    ],
)
def test_federations_that_cannot_run_correctly_are_refused(infos, cfg, match):
    with pytest.raises(RuntimeError, match=match):
        discover(_Grid(infos), cfg)


def test_a_node_that_fails_to_start_is_named():
    class _Failing(_Grid):
        def send_and_receive(self, msgs, timeout):
            from flwr.app import Error

            return [Message(Error(code=0, reason="no data"), reply_to=m) for m in msgs]

    with pytest.raises(RuntimeError, match="node 7 failed to start: no data"):
        discover(_Failing({7: {}}), RunConfig.of())
