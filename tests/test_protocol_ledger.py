"""The typed spine: messages round-trip through Flower records, rows through CSV."""

import math

import numpy as np
import pytest
from flwr.app import ConfigRecord, RecordDict

from fedslim import ledger, protocol
from fedslim.ledger import ClientRow, RoundRow


def test_instructions_and_replies_round_trip_through_records():
    ins = protocol.TrainIns(3, b"\x01\x02", "delta", "abc", {"proximal-mu": 0.1})
    assert protocol.train_ins_from(protocol.train_ins_content(ins)) == ins
    ins = protocol.TrainIns(3, b"", "keep", "abc", setting="bf16/nf4", uplink="q4|zstd:3")
    assert protocol.train_ins_from(protocol.train_ins_content(ins)) == ins
    res = protocol.TrainRes(b"blob", "d1g", 32, 0.5, 1.25, 10**12)
    assert protocol.train_res_from(protocol.train_res_content(res)) == res
    profiled = protocol.NodeInfo(4, None, device="phone-low", link="3g")
    for info in (protocol.NodeInfo(4, 2), profiled):
        assert protocol.node_info_from(protocol.node_info_content(info)) == info
    state = RecordDict()
    protocol.save_state(state, protocol.NodeState(np.ones(3, np.float32), None))
    loaded = protocol.load_state(state)
    assert np.array_equal(loaded.held, np.ones(3)) and loaded.residual is None


HOSTILE = [  # (field, value, what the error says)
    ("up", "not bytes", "update blob"),
    ("held", 7, "'held'"),
    ("num-examples", 0, "positive integer"),
    ("num-examples", True, "numbers"),
    ("train-loss", float("inf"), "finite"),
    ("flops", b"x", "numbers"),
]


@pytest.mark.parametrize(("key", "value", "reason"), HOSTILE)
def test_a_hostile_reply_is_a_protocol_error_naming_the_field(key, value, reason):
    content = protocol.train_res_content(protocol.TrainRes(b"b", "d", 1, 0.1, 0.1, 1))
    content["config"][key] = value
    with pytest.raises(protocol.ProtocolError, match=reason):
        protocol.train_res_from(content)


def test_replies_without_the_record_or_metrics_are_refused():
    with pytest.raises(protocol.ProtocolError, match="lacks"):
        protocol.train_res_from(RecordDict({"other": ConfigRecord({})}))
    res = protocol.TrainRes(b"b", "d", 1, 0.1, 0.1, 1)
    with pytest.raises(protocol.ProtocolError, match="metrics lack"):
        protocol.train_res_from(protocol.train_res_content(res, metrics=False))
    with pytest.raises(protocol.ProtocolError, match="down-mode"):
        bad = protocol.train_ins_content(protocol.TrainIns(1, b"", "keep", "x"))
        bad["config"]["down-mode"] = "sideways"
        protocol.train_ins_from(bad)


def test_a_node_without_identity_says_how_to_give_it_one():
    with pytest.raises(protocol.ProtocolError, match="--node-config"):
        protocol.node_identity({})
    assert protocol.node_identity({"partition-id": 1, "num-partitions": 2, "lora-r": 4}) == (
        1,
        2,
        4,
    )


def test_rows_round_trip_through_csv_and_round_totals_add_up(tmp_path):
    clients = [
        ClientRow(round=1, client=0, num_examples=10, train_s=2.0, uplink_bytes=100),
        ClientRow(
            round=1, client=1, status="update is not finite", train_loss=0.7, uplink_bytes=50
        ),
        ClientRow(round=1, client=2, status="no reply", train_loss=0.0, downlink_bytes=30),
    ]
    row = RoundRow.of(1, clients, wall_s=3.0)
    row.accuracy, row.loss = 0.5, 1.0
    assert (row.uplink_bytes, row.downlink_bytes, row.clients, row.dropped) == (150, 30, 1, 2)
    assert row.train_s == 2.0  # the slowest aggregated client, not a dropped one
    ledger.write_csv(tmp_path / "clients.csv", clients, ClientRow)
    ledger.write_csv(tmp_path / "rounds.csv", [row], RoundRow)
    assert ledger.read_clients(tmp_path)[1:] == clients[1:]
    back = ledger.read_clients(tmp_path)[0]
    assert back.num_examples == 10 and math.isnan(back.train_loss)
    assert ledger.read_rounds(tmp_path) == [row]
    header = (tmp_path / "rounds.csv").read_text().splitlines()[0]
    assert header.split(",") == list(ledger.columns(RoundRow))


def test_client_text_never_becomes_a_spreadsheet_formula(tmp_path):
    rows = [ClientRow(round=1, client=0, status='=HYPERLINK("http://x","y")', train_loss=0.0)]
    ledger.write_csv(tmp_path / "clients.csv", rows, ClientRow)
    text = (tmp_path / "clients.csv").read_text()
    assert ",'=HYPERLINK" in text.replace('"', "")
