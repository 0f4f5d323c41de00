"""Generation sessions on the tail server: each holds a tail's KV cache, its sampler and its
budget. The server bounds how many are open, the bytes their caches hold together and how
long one may sit idle; whatever ends a session (its last token, an error, expiry, the
client going away) frees its cache through ``close``. Concurrent decode steps at one
split point run as one batch (``batching.py``)."""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field

import grpc

from ..compression import WireFormatError
from .activations import pack_step, pack_token, unpack_step
from .batching import StepBatcher, batchable
from .generate import PositionError, Sampling, TailSession, eos_ids, kv_bytes_per_token


class Refused(Exception):
    """A request the server will not serve, with the gRPC status that says why."""

    def __init__(self, code: grpc.StatusCode, why: str) -> None:
        super().__init__(why)
        self.code = code


@dataclass
class Session:
    id: str
    k: int
    tail: TailSession
    pick: object  # Sampling.sampler()
    max_new_tokens: int
    down_codec: str | None = None  # the U-shape: the last hidden state goes back in this codec
    produced: int = 0
    reserved: int = 0  # cache bytes this session may hold (its steps so far)
    last_active: float = field(default_factory=time.monotonic)
    done: bool = False


class Sessions:
    """The open sessions of one tail service (thread-safe: every stream runs in its own
    server thread)."""

    def __init__(self, model, tails: dict, *, max_sessions: int, max_cache_mb: float,
                 max_tokens: int, hidden: int, batch_decode: bool = True) -> None:  # fmt: skip
        self.model, self.tails, self.hidden = model, tails, hidden
        self.max_sessions, self.max_tokens = max_sessions, max_tokens
        self.max_cache = int(max_cache_mb * 1e6)
        self.n = len(tails) - 1
        self.eos = eos_ids(model)
        self.kv_per_block = kv_bytes_per_token(model, 1)  # a token's keys and values, a block
        self._open: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._count = itertools.count(1)
        self._reserved = 0  # cache bytes of every open session's steps
        self.batch_decode = batch_decode
        self._batchers: dict[int, StepBatcher] = {}  # per split point, started on first use

    def open(self, k: int, sampling: Sampling, max_new_tokens: int,
             down_codec: str | None = None) -> Session:  # fmt: skip
        if not 1 <= max_new_tokens <= self.max_tokens:
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"max new tokens {max_new_tokens}: expected 1..{self.max_tokens}",
            )
        with self._lock:
            if len(self._open) >= self.max_sessions:
                raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"{len(self._open)} sessions open, this server holds at most "
                              f"{self.max_sessions}; retry later")  # fmt: skip
            sid = f"{next(self._count)}-{secrets.token_hex(4)}"
            session = Session(sid, k, TailSession(self.tails[k], k), sampling.sampler(),
                              max_new_tokens, down_codec)  # fmt: skip
            self._open[sid] = session
        return session

    def step(self, session: Session, message: bytes) -> bytes:
        """Run one step of ``session``; the token message to send back (the U-shape: the
        last hidden state's step message, for the device's output head)."""
        start_s = time.perf_counter()
        session.last_active = time.monotonic()
        try:
            hidden, start = unpack_step(message, hidden=self.hidden, max_tokens=self.max_tokens)
        except WireFormatError as exc:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        t = hidden.shape[1]
        if session.tail.seen + t > self.max_tokens:
            raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"session {session.id}: {session.tail.seen + t} tokens, this server "
                          f"keeps at most {self.max_tokens} per session")  # fmt: skip
        grow = t * (self.n - session.k) * self.kv_per_block
        with self._lock:  # reserved before the step: concurrent steps cannot both pass
            if self._reserved + grow > self.max_cache:
                raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"session {session.id}: the sessions' caches would exceed this "
                              f"server's {self.max_cache / 1e6:.2f} MB; retry later")  # fmt: skip
            self._reserved += grow
            session.reserved += grow
        try:
            alone = len(self._open) == 1  # nothing to batch with: no hand-off
            if session.down_codec is not None:
                back = session.tail.last_hidden(hidden, start).reshape(1, 1, -1)
            elif t == 1 and self.batch_decode and not alone and batchable(session.tail):
                logits = self._batcher(session.k).step(session.tail, hidden, start)
            else:
                logits = session.tail.step(hidden, start)
        except PositionError as exc:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        session.produced += 1
        session.last_active = time.monotonic()
        if session.down_codec is not None:  # the device samples; it ends the session
            session.done = session.produced >= session.max_new_tokens
            seen = session.tail.seen
            return pack_step(back, seen, session.down_codec, seed=seen)
        token = session.pick(logits)
        session.done = session.produced >= session.max_new_tokens or token in self.eos
        session.last_active = time.monotonic()
        return pack_token(session.tail.seen, token, time.perf_counter() - start_s)

    def _batcher(self, k: int) -> StepBatcher:
        with self._lock:
            if k not in self._batchers:
                self._batchers[k] = StepBatcher(self.max_sessions)
            return self._batchers[k]

    def close(self, sid: str) -> None:
        with self._lock:
            session = self._open.pop(sid, None)
            if session is not None:
                self._reserved -= session.reserved
        if session is not None:
            session.tail.cache = None  # the cache goes now, not when the stream's frame does

    def batching(self) -> tuple[int, int]:
        """(decode steps run batched, batches they formed)."""
        with self._lock:
            batchers = list(self._batchers.values())
        return sum(b.steps for b in batchers), sum(b.batches for b in batchers)

    def open_count(self) -> int:
        with self._lock:
            return len(self._open)

    def cache_bytes(self) -> int:
        with self._lock:
            return sum(s.tail.cache_bytes() for s in self._open.values())
