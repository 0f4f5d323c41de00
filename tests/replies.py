"""A client's train reply as fedslim's ClientApp writes it, for strategy tests that play
the clients themselves."""

from flwr.app import Message

from fedslim import protocol
from fedslim.vectors import digest


def train_reply(strategy, msg: Message, part: int, blob: bytes, examples: int = 10) -> Message:
    """The reply to ``msg``: ``blob`` as the update, proving the copy the strategy sent."""
    held = digest(strategy.pending[part])
    res = protocol.TrainRes(blob, held, examples, 1.0, 0.1, 1)
    return Message(protocol.train_res_content(res), reply_to=msg)
