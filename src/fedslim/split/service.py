"""The tail as a gRPC service: devices send the activations of their first k blocks and get
the logits back.

Bytes in, bytes out (the activation and logits messages of ``activations.py``) through
grpcio's generic handlers, so no generated code: ``/fedslim.split.v1.Tail/Info`` answers
what is served (JSON), ``/fedslim.split.v1.Tail/Forward`` runs blocks[k:] and
``/fedslim.split.v1.Tail/Generate`` streams a generation session (``sessions.py``). The
split point, both fingerprints and the sampling ride in the request metadata; the server's
compute seconds come back in the trailing metadata (per token in the token messages).
The standard ``grpc.health.v1`` service answers probes. Every bad request gets a status
that names the problem, and the server goes on:

    INVALID_ARGUMENT     malformed message, wrong hidden size, k outside 0..n
    RESOURCE_EXHAUSTED   more values than --max-tokens x --max-batch allow, a message over
                         the size limit, more requests in flight or sessions open
                         than allowed, or caches over --max-cache-mb
    DEADLINE_EXCEEDED    a session idle longer than --idle-s (expired, its cache freed)
    FAILED_PRECONDITION  the device holds another base or adapter
    UNAUTHENTICATED      a missing or wrong token where the server has one
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import threading
import time
from concurrent import futures
from dataclasses import dataclass

import grpc
import torch
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ..compression import WireFormatError, build
from .activations import pack_logits, shape, unpack
from .fingerprint import Fingerprint
from .generate import Sampling
from .partition import hf_model, num_blocks, split
from .sessions import Refused, Session, Sessions

SERVICE = "fedslim.split.v1.Tail"
log = logging.getLogger("fedslim.split")


@dataclass(frozen=True)
class Limits:
    max_tokens: int = 512  # per sequence
    max_batch: int = 64  # sequences per request
    max_in_flight: int = 64  # requests queued or running; more are refused, not queued
    max_sessions: int = 16  # generation sessions open at once
    max_cache_mb: float = 1024.0  # the sessions' KV caches together
    idle_s: float = 60.0  # a session waiting longer for its next step expires
    batch_decode: bool = True  # concurrent sessions' decode steps share one forward

    def max_elements(self, hidden: int) -> int:
        return self.max_tokens * self.max_batch * hidden

    def max_message(self, hidden: int, width: int = 0) -> int:
        """The largest honest request (fp32 values plus mask, positions and framing) or
        answer (``width`` logits per sequence), whichever is larger."""
        request = 4 * self.max_elements(hidden) + 5 * self.max_tokens * self.max_batch
        return max(request, 4 * width * self.max_batch) + 4096


class TailService:
    """The server's half: a tail per split point (views sharing one model's weights)."""

    def __init__(self, model, fp: Fingerprint, *, name: str, token: str | None = None,
                 limits: Limits = Limits()) -> None:  # fmt: skip
        self.model, self.fp, self.name, self.token, self.limits = model, fp, name, token, limits
        self.n, self.hidden = num_blocks(model), int(model.config.hidden_size)
        self.tails = {k: split(model, k)[1] for k in range(self.n + 1)}
        self.kind = "lm" if hasattr(hf_model(model), "lm_head") else "cls"
        config = hf_model(model).config
        self.width = int(config.vocab_size if self.kind == "lm" else config.num_labels)
        self.sessions = None
        if self.kind == "lm":
            self.sessions = Sessions(model, self.tails, max_sessions=limits.max_sessions,
                                     max_cache_mb=limits.max_cache_mb,
                                     max_tokens=limits.max_tokens, hidden=self.hidden,
                                     batch_decode=limits.batch_decode)  # fmt: skip
        if limits.max_message(self.hidden, self.width) >= 2**31:  # gRPC's limit
            raise ValueError(
                f"--max-tokens {limits.max_tokens} x --max-batch {limits.max_batch} x hidden "
                f"{self.hidden}: over gRPC's 2 GiB per message; lower them"
            )

    def info(self) -> dict:
        lim = self.limits
        info = {"model": self.name, "blocks": self.n, "hidden": self.hidden, "kind": self.kind,
                "base": self.fp.base, "adapter": self.fp.adapter,
                "max_tokens": lim.max_tokens, "max_batch": lim.max_batch}  # fmt: skip
        if self.sessions is not None:  # generation: what is open and how steps batch
            steps, batches = self.sessions.batching()
            info |= {"sessions": self.sessions.open_count(), "max_sessions": lim.max_sessions,
                     "cache_bytes": self.sessions.cache_bytes(), "batched_steps": steps,
                     "batches": batches}  # fmt: skip
        return info

    def authorize(self, metadata: dict) -> None:
        if self.token is not None:
            got = metadata.get("authorization", "")
            if not hmac.compare_digest(got.encode(), f"Bearer {self.token}".encode()):
                raise Refused(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")

    def _check(self, metadata: dict) -> int:
        self.authorize(metadata)
        theirs = Fingerprint(metadata.get("fedslim-base", ""), metadata.get("fedslim-adapter", ""))
        why = self.fp.mismatch(theirs)
        if why:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, f"{why} (serving {self.name})")
        try:
            k = int(metadata.get("fedslim-layer", ""))
        except ValueError:
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT, "fedslim-layer: not an integer"
            ) from None
        if not 0 <= k <= self.n:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"layer {k}: expected 0..{self.n}")
        return k

    def forward(self, request: bytes, metadata: dict) -> tuple[bytes, float]:
        """(the logits message, server seconds) or Refused."""
        k = self._check(metadata)
        try:
            batch, tokens, hidden = shape(request)
            if hidden != self.hidden:
                raise WireFormatError(f"hidden size {hidden}, the model's is {self.hidden}")
            lim = self.limits
            if batch > lim.max_batch or tokens > lim.max_tokens:
                raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"{batch} sequences x {tokens} tokens; this server takes at most "
                               f"{lim.max_batch} x {lim.max_tokens}")  # fmt: skip
            start = time.perf_counter()
            act = unpack(request, max_elements=lim.max_elements(self.hidden))
        except WireFormatError as exc:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        with torch.inference_mode():
            logits = self.tails[k].predict(act)
        return pack_logits(logits), time.perf_counter() - start

    def open_session(self, metadata: dict) -> Session:
        """A generation session for the request's split point and sampling, or Refused."""
        k = self._check(metadata)
        if self.sessions is None:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          f"{self.name} is a classifier: nothing to generate")  # fmt: skip
        try:
            sampling = Sampling(float(metadata.get("fedslim-temperature", 0)),
                                float(metadata.get("fedslim-top-p", 1)),
                                int(metadata.get("fedslim-seed", 0)))  # fmt: skip
            max_new = int(metadata.get("fedslim-max-new-tokens", ""))
        except ValueError as exc:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"sampling: {exc}") from None
        output = metadata.get("fedslim-output", "server")
        down = metadata.get("fedslim-down-codec", "none")
        try:
            if output not in ("server", "device"):
                raise ValueError(f"fedslim-output: expected server or device, got {output!r}")
            build(down)
        except ValueError as exc:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        return self.sessions.open(k, sampling, max_new, down if output == "device" else None)


def _handler(service: TailService):
    def call(fn):
        def run(request: bytes, context: grpc.ServicerContext) -> bytes:
            metadata = {m.key: m.value for m in context.invocation_metadata()}
            try:
                return fn(request, metadata, context)
            except Refused as exc:
                log.info("refused %s: %s", context.peer(), exc)
                context.abort(exc.code, str(exc))
            except Exception as exc:  # one bad request never takes the server down
                log.exception("failed %s", context.peer())
                context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

        return grpc.unary_unary_rpc_method_handler(run)  # bytes in, bytes out

    def info(request, metadata, context):
        service.authorize(metadata)
        return json.dumps(service.info()).encode()

    def forward(request, metadata, context):
        answer, seconds = service.forward(request, metadata)
        context.set_trailing_metadata((("fedslim-server-s", f"{seconds:.6f}"),))
        return answer

    return grpc.method_handlers_generic_handler(
        SERVICE, {"Info": call(info), "Forward": call(forward),
                  "Generate": grpc.stream_stream_rpc_method_handler(_generate(service))},
    )  # fmt: skip


def _generate(service: TailService):
    """The streaming method: the prompt's activations, then one token's per step, up; one
    token message per step down. The session lives as long as the stream."""
    idle_s = service.limits.idle_s

    def run(requests, context: grpc.ServicerContext):
        metadata = {m.key: m.value for m in context.invocation_metadata()}
        try:
            session = service.open_session(metadata)
        except Refused as exc:
            log.info("refused %s: %s", context.peer(), exc)
            context.abort(exc.code, str(exc))
        context.add_callback(lambda: service.sessions.close(session.id))  # however it ends
        context.send_initial_metadata((("fedslim-session", session.id),))
        inbox: queue.Queue = queue.Queue()
        threading.Thread(target=_read, args=(requests, inbox), daemon=True).start()
        try:
            while not session.done:
                try:
                    message = inbox.get(timeout=idle_s)
                except queue.Empty:  # the finally below frees it before the status goes
                    context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                  f"session {session.id} idle for {idle_s:g} s: expired, "
                                  "its cache freed")  # fmt: skip
                if message is None:  # the device closed its side, or went away
                    return
                try:
                    yield service.sessions.step(session, message)
                except Refused as exc:
                    log.info("refused %s in session %s: %s", context.peer(), session.id, exc)
                    context.abort(exc.code, str(exc))
        finally:
            service.sessions.close(session.id)

    return run


def _read(requests, inbox: queue.Queue) -> None:
    """Move a stream's requests to a queue the session can wait on with a timeout; None
    when the device closes its side or the call ends (cancelled, gone)."""
    try:
        for message in requests:
            inbox.put(message)
    except Exception:  # noqa: BLE001  the call ended under us: the session learns from None
        pass
    inbox.put(None)


def serve(
    service: TailService,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: tuple[bytes, bytes] | None = None,
    workers: int = 8,
) -> tuple[grpc.Server, int]:
    """Start serving; returns (server, bound port). ``tls`` is (certificate chain, key)."""
    size = service.limits.max_message(service.hidden, service.width)
    streams = service.limits.max_sessions if service.sessions is not None else 0
    server = grpc.server(  # a generation stream holds a thread for its life
        futures.ThreadPoolExecutor(max_workers=workers + streams, thread_name_prefix="split"),
        handlers=[_handler(service)],
        options=[
            ("grpc.max_receive_message_length", size),
            ("grpc.max_send_message_length", size),
        ],  # fmt: skip
        maximum_concurrent_rpcs=service.limits.max_in_flight + streams,
    )
    probes = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(probes, server)
    address = f"{host}:{port}"
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            creds = grpc.ssl_server_credentials([(tls[1], tls[0])])
            bound = server.add_secure_port(address, creds)
    except RuntimeError as exc:  # grpcio's "Failed to bind": in use, or not an address here
        raise OSError(f"cannot listen on {address} (in use, or not here): {exc}") from None
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
    server.start()
    for name in ("", SERVICE):
        probes.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, bound
