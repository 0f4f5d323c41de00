"""The device's half: run the head, send its activations to a tail server, read the answer,
and account for every byte and second of the way."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import numpy as np
import torch

from .activations import pack, pack_step, unpack_logits, unpack_step, unpack_token
from .fingerprint import Fingerprint
from .generate import GREEDY, HeadSession, Sampling, eos_ids
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
        options = [
            ("grpc.max_receive_message_length", _BIG),
            ("grpc.max_send_message_length", _BIG),
            ("grpc.keepalive_time_ms", 30_000),
        ]  # a generation stream notices a dead peer
        self.channel = (
            grpc.secure_channel(target, grpc.ssl_channel_credentials(ca), options=options)
            if ca is not None
            else grpc.insecure_channel(target, options=options)
        )
        self.timeout_s = timeout_s
        self._auth = (("authorization", f"Bearer {token}"),) if token else ()
        self._info = self.channel.unary_unary(f"/{SERVICE}/Info")
        self._forward = self.channel.unary_unary(f"/{SERVICE}/Forward")
        self._generate = self.channel.stream_stream(f"/{SERVICE}/Generate")

    def info(self) -> dict:
        return json.loads(self._info(b"", timeout=self.timeout_s, metadata=self._auth))

    def forward(self, message: bytes, *, k: int, fp: Fingerprint) -> tuple[bytes, float]:
        """(the logits message, the server's seconds); grpc.RpcError when refused."""
        metadata = (*self._auth, ("fedslim-layer", str(k)), ("fedslim-base", fp.base),
                    ("fedslim-adapter", fp.adapter))  # fmt: skip
        answer, call = self._forward.with_call(message, timeout=self.timeout_s, metadata=metadata)
        trailing = dict(call.trailing_metadata() or ())
        return answer, float(trailing.get("fedslim-server-s", 0.0))

    def stream(self, requests, *, k: int, fp: Fingerprint, max_new_tokens: int,
               sampling: Sampling, down_codec: str | None = None):  # fmt: skip
        """The Generate call: responses as they come; its initial metadata names the session.
        ``down_codec``: the U-shape (the last hidden state comes back in this codec)."""
        metadata = (*self._auth, ("fedslim-layer", str(k)), ("fedslim-base", fp.base),
                    ("fedslim-adapter", fp.adapter),
                    ("fedslim-max-new-tokens", str(max_new_tokens)),
                    ("fedslim-temperature", repr(sampling.temperature)),
                    ("fedslim-top-p", repr(sampling.top_p)),
                    ("fedslim-seed", str(sampling.seed)))  # fmt: skip
        if down_codec is not None:
            metadata += (("fedslim-output", "device"), ("fedslim-down-codec", down_codec))
        return self._generate(requests, metadata=metadata)

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


@dataclass
class Generation:
    """A finished split generation and where its time and bytes went."""

    tokens: list[int] = field(default_factory=list)
    session: str = ""
    first_token_s: float = 0.0  # prompt in hand to first token back (device prefill included)
    token_s: list[float] = field(default_factory=list)  # each further token, back to back
    head_s: float = 0.0  # the device's blocks, every step
    server_s: float = 0.0  # the server's steps, as it reports
    up_bytes: list[int] = field(default_factory=list)  # per step: the prompt's, then a token's
    down_bytes: int = 0


def generate(head, client: TailClient, prompt: torch.Tensor, *, k: int, codec: str,
             fp: Fingerprint, max_new_tokens: int, sampling: Sampling = GREEDY,
             on_token: Callable[[int], None] | None = None,
             down_codec: str | None = None) -> Generation:  # fmt: skip
    """Generate through a split: the head and its cache here, the tail's on the server,
    one stream for the session. ``on_token`` sees each token as it arrives. With
    ``down_codec`` the U-shape: the server returns its last hidden state in that codec
    and the output head and sampling run here (the device must keep its output head)."""
    session, stop, out = HeadSession(head, k), eos_ids(head.top), Generation()
    pick = sampling.sampler() if down_codec is not None else None
    hidden_size = int(head.top.config.hidden_size)
    outbox: queue.Queue = queue.Queue()

    def send(ids: torch.Tensor) -> None:
        t0 = time.perf_counter()
        hidden, start = session.step(ids)
        out.head_s += time.perf_counter() - t0
        message = pack_step(hidden, start, codec, seed=start)
        out.up_bytes.append(len(message))
        outbox.put(message)

    def requests():
        while (message := outbox.get()) is not None:
            yield message

    t = time.perf_counter()
    send(prompt)
    call = client.stream(requests(), k=k, fp=fp, max_new_tokens=max_new_tokens,
                         sampling=sampling, down_codec=down_codec)  # fmt: skip
    try:
        for answer in call:
            if pick is None:
                _, token, server_s = unpack_token(answer)
            else:  # the U-shape: our output head on the tail's last hidden state
                back, _ = unpack_step(answer, hidden=hidden_size, max_tokens=1)
                t0 = time.perf_counter()
                token, server_s = pick(session.output(back)), 0.0
                out.head_s += time.perf_counter() - t0
            now = time.perf_counter()
            if not out.tokens:
                out.first_token_s = now - t
                out.session = dict(call.initial_metadata() or ()).get("fedslim-session", "")
            else:
                out.token_s.append(now - t)
            t = now
            out.tokens.append(token)
            out.server_s += server_s
            out.down_bytes += len(answer)
            if on_token is not None:
                on_token(token)
            if len(out.tokens) >= max_new_tokens or token in stop:
                break
            send(torch.tensor([[token]]))
    finally:
        outbox.put(None)  # our side is done; the server ends the stream
    return out
