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
    """Answers the partition-id query with ``infos[node]`` (a node's own reply), through
    push and pull as Flower's grids do (ids assigned at push, as InMemoryGrid does)."""

    def __init__(self, infos):
        self.infos, self.pushed = infos, {}

    def get_node_ids(self):
        return list(self.infos)

    def push_messages(self, msgs):
        for m in msgs:
            m.metadata.__dict__["_message_id"] = f"to-{m.metadata.dst_node_id}"
            self.pushed[m.metadata.message_id] = m
        return list(self.pushed)

    def pull_messages(self, ids):
        return [self.reply(self.pushed.pop(i)) for i in list(ids) if i in self.pushed]

    def reply(self, m):
        info = MetricRecord(self.infos[m.metadata.dst_node_id])
        return Message(RecordDict({"info": info}), reply_to=m)


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
        def reply(self, m):
            from flwr.app import Error

            return Message(Error(code=0, reason="no data"), reply_to=m)

    with pytest.raises(RuntimeError, match="node 7 failed to start: no data"):
        discover(_Failing({7: {}}), RunConfig.of())
