"""fedslim's compression in a Flower app that is not fedslim's: its own model, ClientApp and
FedAvg, run under Flower's public ``run_simulation`` once plain and once with
``CompressedStrategy`` + ``compression_mod``."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import ray.cloudpickle as cloudpickle
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation
from flwr.supercore.task_identity import TaskIdentity

from fedslim.compression import build
from fedslim.flower import CompressedStrategy, compression_mod, wire
from fedslim.flower_internals.messages import wire_bytes
from fedslim.vectors import digest

# Ray workers unpickle the apps; this module is not importable there by name
cloudpickle.register_pickle_by_value(sys.modules[__name__])

DIM, NODES, ROUNDS = 64, 3, 3
W = np.random.default_rng(0).normal(size=DIM)


def _data(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy((x @ W > 0).astype(np.int64))


def _model(norm: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)  # a BatchNorm brings an int64 counter: it travels beside the blob
    norm_layer = [torch.nn.BatchNorm1d(256)] if norm else []
    layers = [torch.nn.Linear(DIM, 256), *norm_layer, torch.nn.ReLU(), torch.nn.Linear(256, 2)]
    return torch.nn.Sequential(*layers)


def _accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


def client_app(mods: list) -> ClientApp:
    app = ClientApp(mods=mods)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        model = _model()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        x, y = _data(int(context.node_config["partition-id"]) + 1, 256)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        model.train()
        for s in range(0, 256, 32):
            loss = torch.nn.functional.cross_entropy(model(x[s : s + 32]), y[s : s + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
        metrics = MetricRecord({"num-examples": 256, "train_loss": float(loss)})
        arrays = ArrayRecord(model.state_dict())
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        model = _model()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        acc = _accuracy(model, *_data(100 + int(context.node_config["partition-id"]), 128))
        metrics = MetricRecord({"num-examples": 128, "accuracy": acc})
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


class Counted(FedAvg):
    """FedAvg that counts the wire bytes of the train replies it aggregates."""

    uplink_bytes = 0

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        self.uplink_bytes += sum(wire_bytes(r) for r in replies)
        return super().aggregate_train(server_round, replies)


def server_app(wrap, out: dict) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        inner = Counted(fraction_train=1.0, fraction_evaluate=1.0)
        strategy = wrap(inner)
        x, y = _data(999, 1000)

        def central(_round: int, arrays: ArrayRecord) -> MetricRecord:
            model = _model()
            model.load_state_dict(arrays.to_torch_state_dict())
            return MetricRecord({"accuracy": _accuracy(model, x, y)})

        result = strategy.start(
            grid, ArrayRecord(_model().state_dict()), num_rounds=ROUNDS, evaluate_fn=central
        )
        out["accuracy"] = [m["accuracy"] for m in result.evaluate_metrics_serverapp.values()]
        out["plain"] = inner.uplink_bytes
        out["strategy"] = strategy

    return app


def _run(wrap, mods) -> dict:
    out: dict = {}
    run_simulation(
        server_app(wrap, out),
        client_app(mods),
        num_supernodes=NODES,
        backend_config={"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 2}},
    )
    return out


@pytest.mark.slow
def test_a_plain_flower_app_gains_compression_from_the_wrapper_and_the_mod():
    plain = _run(lambda s: s, [])
    spec = "q4|zstd:3"
    compressed = _run(
        lambda s: CompressedStrategy(s, uplink=spec, downlink="q8|zstd:3"), [compression_mod]
    )
    for run in (plain, compressed):  # both learn
        assert len(run["accuracy"]) == ROUNDS + 1
        assert run["accuracy"][0] < 0.5 and run["accuracy"][-1] > 0.8, run["accuracy"]
    assert compressed["accuracy"][-1] > plain["accuracy"][-1] - 0.03
    rows = compressed["strategy"].rows
    assert len(rows) == NODES * ROUNDS and all(r.ok for r in rows), [r.status for r in rows]
    floats = sum(p.numel() for p in _model().state_dict().values() if p.is_floating_point())
    codec = 4 * floats * len(rows) / sum(r.uplink_payload_bytes for r in rows)
    on_wire = plain["plain"] / sum(r.uplink_bytes for r in rows)
    assert codec > 6  # q4 + zstd on the float arrays
    assert on_wire > 0.9 * codec, (on_wire, codec)  # the ledger sees the codec's ratio
    assert all(r.uplink_codec == spec for r in rows)


@pytest.fixture
def identity():  # messages built outside a Flower task need one
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1


def _instruction(arrays: ArrayRecord, strategy: CompressedStrategy, node: int = 7) -> Message:
    class OneNode(FedAvg):
        def configure_train(self, server_round, arrays, config, grid):
            content = RecordDict({"arrays": arrays, "config": config})
            return [Message(content, dst_node_id=node, message_type="train")]

    strategy.strategy = OneNode()
    return strategy.configure_train(1, arrays, ConfigRecord(), grid=None)[0]


def _context(node: int = 7) -> Context:
    return Context(run_id=1, node_id=node, node_config={}, state=RecordDict(), run_config={})


def test_the_mod_hands_the_app_what_the_server_meant_and_the_server_decodes_the_update(
    identity,
):
    """In one process, without Flower's engine: instruction -> mod -> app -> mod -> server."""
    model = _model(norm=True)
    arrays = ArrayRecord(model.state_dict())
    strategy = CompressedStrategy(FedAvg(), uplink="none", downlink="none")
    ins = _instruction(arrays, strategy)
    seen = {}

    def app(msg: Message, context: Context) -> Message:
        seen.update(msg.content["arrays"].to_torch_state_dict())
        trained = {k: v + 1 if v.is_floating_point() else v for k, v in seen.items()}
        metrics = MetricRecord({"num-examples": 3})
        return Message(
            RecordDict({"arrays": ArrayRecord(trained), "metrics": metrics}), reply_to=msg
        )

    reply = compression_mod(ins, _context(), app)
    for k, v in model.state_dict().items():  # lossless downlink: bit for bit, dtypes kept
        assert torch.equal(seen[k], v) and seen[k].dtype == v.dtype
    decoded = strategy._receive(1, [reply])
    got = decoded[0].content["arrays"].to_torch_state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(got[k], v + 1 if v.is_floating_point() else v)
    assert strategy.rows[0].ok


def test_a_node_that_lost_its_copy_resyncs_and_a_forged_update_is_dropped(identity):
    arrays = ArrayRecord(_model(norm=True).state_dict())
    strategy = CompressedStrategy(FedAvg(), uplink="q8|zstd:3", downlink="q8|zstd:3")
    strategy.held[7] = np.ones(wire.split(arrays)[1].size, np.float32)  # not what node 7 has
    ins = _instruction(arrays, strategy)
    reply = compression_mod(ins, _context(), lambda m, c: pytest.fail("the app must not run"))
    assert strategy._receive(1, [reply]) == []
    assert strategy.rows[-1].status.startswith("resync") and 7 not in strategy.held

    ins = _instruction(arrays, strategy)  # from zeros again: the node can apply it
    context = _context()

    def forged(msg: Message, context: Context) -> Message:
        metrics = MetricRecord({"num-examples": 3})
        return Message(
            RecordDict({"arrays": msg.content["arrays"], "metrics": metrics}), reply_to=msg
        )

    reply = compression_mod(ins, context, forged)
    n = wire.split(arrays)[1].size
    up = wire.Up.of(reply.content)
    forged_blob = build("none").encode(np.full(n, np.nan, np.float32))
    reply.content[wire.UP] = wire.Up(held=up.held, blob=forged_blob, key=up.key).record()
    assert strategy._receive(1, [reply]) == []
    assert strategy.rows[-1].status.startswith("blob spec 'none' != pipeline spec")
    assert 7 in strategy.held  # the copy was proven; only the update is refused
    assert digest(strategy.held[7]) == up.held


def test_a_bad_spec_is_refused_when_the_strategy_is_built():
    with pytest.raises(ValueError, match="uplink='bogus'"):
        CompressedStrategy(FedAvg(), uplink="bogus")


def test_arrays_beside_the_blob_must_keep_their_shape():
    record = ArrayRecord(_model(norm=True).state_dict())
    layout, vec, plain = wire.split(record)
    assert list(plain) == ["1.num_batches_tracked"] and plain["1.num_batches_tracked"].shape == ()
    assert wire.split(wire.join(layout, vec, plain))[0] == layout  # shapes and dtypes kept
    with pytest.raises(ValueError, match="another shape"):
        wire.join(layout, vec, {"1.num_batches_tracked": np.zeros(1000, np.int64)})
