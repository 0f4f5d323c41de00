"""A secure round through fedslim's strategy and the ClientApp's own handlers, in process:
the global moves by the mean of the clipped updates, the ledger has every byte, and
nothing the strategy keeps is one client's update."""

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fedslim.adapter import Adapter
from fedslim.client import secagg
from fedslim.flower_internals.messages import wire_bytes
from fedslim.privacy.dpfedavg import CentralDP
from fedslim.strategies.secure import SecureRounds

from ..fakes import Grid, fedavg, train_reply
from .test_secagg import _arrays

N = 2000
PARTS = {101: 0, 202: 1, 303: 2, 404: 3, 505: 4}
HANDLERS = {"query.secagg_keys": secagg.keys, "query.secagg_share": secagg.share,
            "query.secagg_unmask": secagg.unmask}  # fmt: skip


@pytest.fixture(autouse=True)
def _identity():
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1


def _contexts():
    return {
        node: Context(1, node, {"partition-id": p, "num-partitions": len(PARTS)}, RecordDict(), {})
        for node, p in PARTS.items()
    }


def _send(contexts, silent=()):
    """Clients answer in process; the nodes in ``silent`` never answer."""

    def send(messages):
        return [
            HANDLERS[m.metadata.message_type](m, contexts[m.metadata.dst_node_id])
            for m in messages
            if m.metadata.dst_node_id not in silent
        ]

    return send


def _strategy(send, dp):
    secure = SecureRounds(send, bits=8, neighbors=0, seed=0, dp=dp)
    return fedavg(PARTS, (("w", (N,)),), secure=secure)


def _secure_round(updates, dp, silent=(), drop=()):
    contexts = _contexts()
    strategy = _strategy(_send(contexts, silent), dp)
    glob = {"w": np.zeros(N, np.float32)}
    messages = strategy.configure(1, Adapter.of(glob), Grid(PARTS))
    messages = strategy.secure.prepare(1, messages, PARTS, N)
    replies = []
    for msg in messages:
        node = msg.metadata.dst_node_id
        blob = secagg.masked_update(msg.content, contexts[node], 1, updates[node], seed=node)
        if node in drop:  # trained and masked, then lost
            continue
        replies.append(train_reply(strategy, msg, PARTS[node], blob))
    new, rows = strategy.aggregate(1, replies)
    return strategy, new, rows


def test_a_secure_round_moves_the_global_by_the_mean_of_the_clipped_updates():
    rng = np.random.default_rng(0)
    updates = {node: rng.normal(scale=0.01, size=N).astype(np.float32) for node in PARTS}
    updates[505] = np.full(N, 1e3, np.float32)  # clipped to 0.5 by the client itself
    dp = CentralDP(clip=0.5, noise=0.0)
    strategy, new, rows = _secure_round(updates, dp, silent=(), drop=(404,))
    clipped = [u * min(1.0, 0.5 / np.linalg.norm(u)) for n, u in updates.items() if n != 404]
    want = np.mean(clipped, axis=0)
    assert np.linalg.norm(new.arrays()["w"] - want) < 0.05 * np.linalg.norm(want)
    by = {r.client: r for r in rows}
    assert "no reply" in by[3].status and all(by[p].ok for p in (0, 1, 2, 4))
    # every byte: the train message and reply, plus the key, share and unmask exchanges
    assert all(by[p].uplink_bytes > strategy.secure.enc.wire_bytes for p in (0, 1, 2, 4))
    assert by[0].downlink_bytes > wire_bytes(strategy.asked[101][0]) > 0
    # no array the strategy keeps is one client's update (the mean correlates ~0.45)
    for arr in _arrays(vars(strategy)) + _arrays(vars(strategy.secure)):
        flat = np.asarray(arr, np.float64).ravel()
        if flat.size != N or not flat.any():
            continue
        for node, u in updates.items():
            assert abs(np.corrcoef(flat, u)[0, 1]) < 0.9, node


def test_a_client_silent_during_the_key_exchange_is_left_out_with_its_reason():
    rng = np.random.default_rng(1)
    updates = {node: rng.normal(scale=0.01, size=N).astype(np.float32) for node in PARTS}
    _, new, rows = _secure_round(updates, CentralDP(clip=1.0, noise=0.0), silent=(202,))
    by = {r.client: r for r in rows}
    assert "secure aggregation: no keys reply" in by[1].status
    want = np.mean([u for n, u in updates.items() if n != 202], axis=0)
    assert np.linalg.norm(new.arrays()["w"] - want) < 0.05 * np.linalg.norm(want)


def test_a_round_with_too_few_clients_left_is_skipped_with_the_reason():
    updates = {node: np.ones(N, np.float32) for node in PARTS}
    _, new, rows = _secure_round(updates, CentralDP(clip=1.0, noise=0.0), silent=(101, 202, 303))
    assert new is None
    by = {r.client: r.status for r in rows}
    assert all("no keys reply" in by[p] for p in (0, 1, 2))
    assert all("2 clients sent keys; secure aggregation needs 3" in by[p] for p in (3, 4))


def test_unused_config_record_is_ignored_by_plain_rounds():
    assert secagg.masked_update(RecordDict({"config": ConfigRecord({})}), None, 1, None, 0) is None


def test_a_run_that_would_ask_fewer_than_three_clients_fails_before_it_starts():
    from fedslim.config import RunConfig
    from fedslim.errors import ConfigError
    from fedslim.simulations.pricing import check

    check(RunConfig.of(secagg=True), 3)
    with pytest.raises(ConfigError, match="'secagg'.* 2 node.* ask 2"):
        check(RunConfig.of(secagg=True), 2)
    with pytest.raises(ConfigError, match="fraction-train 0.2 ask 2"):
        check(RunConfig.of(secagg=True, fraction_train=0.2), 10)
