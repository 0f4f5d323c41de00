"""The device's half: run the head, send its activations to a tail server, read the answer,
and account for every byte and second of the way."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import grpc
import numpy as np
import torch

from .activations import pack, unpack_logits
from .fingerprint import Fingerprint
from .service import SERVICE

_BIG = 1 << 30  # the server enforces its own limits; the client reads what comes back


@dataclass(frozen=True)
class Answer:
    logits: np.ndarray  # [batch, classes or vocabulary]
    head_s: float  # the device's blocks
    encode_s: float  # the activation codec
    call_s: float  # request sent to answer read (network, queueing, server)
    server_s: float  # the server's decode and blocks, as it reports
    up_bytes: int  # the activation message
    down_bytes: int  # the logits message

    @property
    def network_s(self) -> float:
        return max(self.call_s - self.server_s, 0.0)

    @property
    def total_s(self) -> float:
        return self.head_s + self.encode_s + self.call_s


class TailClient:
    def __init__(self, target: str, *, ca: bytes | None = None, token: str | None = None,
                 timeout_s: float = 60.0) -> None:  # fmt: skip
        options = [("grpc.max_receive_message_length", _BIG),
                   ("grpc.max_send_message_length", _BIG)]  # fmt: skip
        self.channel = (
            grpc.secure_channel(target, grpc.ssl_channel_credentials(ca), options=options)
            if ca is not None
            else grpc.insecure_channel(target, options=options)
        )
        self.timeout_s = timeout_s
        self._auth = (("authorization", f"Bearer {token}"),) if token else ()
        self._info = self.channel.unary_unary(f"/{SERVICE}/Info")
        self._forward = self.channel.unary_unary(f"/{SERVICE}/Forward")

    def info(self) -> dict:
        return json.loads(self._info(b"", timeout=self.timeout_s, metadata=self._auth))

    def forward(self, message: bytes, *, k: int, fp: Fingerprint) -> tuple[bytes, float]:
        """(the logits message, the server's seconds); grpc.RpcError when refused."""
        metadata = (*self._auth, ("fedslim-layer", str(k)), ("fedslim-base", fp.base),
                    ("fedslim-adapter", fp.adapter))  # fmt: skip
        answer, call = self._forward.with_call(message, timeout=self.timeout_s, metadata=metadata)
        trailing = dict(call.trailing_metadata() or ())
        return answer, float(trailing.get("fedslim-server-s", 0.0))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> TailClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def infer(head, client: TailClient, ids: torch.Tensor, mask: torch.Tensor, *, k: int,
          codec: str, fp: Fingerprint) -> Answer:  # fmt: skip
    """One request: the head here, the tail there."""
    t0 = time.perf_counter()
    with torch.inference_mode():
        act = head(ids, mask)
    t1 = time.perf_counter()
    message = pack(act, codec)
    t2 = time.perf_counter()
    answer, server_s = client.forward(message, k=k, fp=fp)
    t3 = time.perf_counter()
    logits = unpack_logits(answer, max_elements=_BIG)
    return Answer(logits, t1 - t0, t2 - t1, t3 - t2, server_s, len(message), len(answer))
