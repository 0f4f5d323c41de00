"""``fedslim split serve`` and ``fedslim split infer``: the tail on a server, the head on a
device, activations between them over gRPC."""

from __future__ import annotations

import faulthandler
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from ..config import ConfigError
from .common import SetOpt, _fail, console
from .split import AdapterOpt, ModelOpt, load, split_cli
from .split_generate import (
    BatchDecodeOpt,
    DownCodecOpt,
    IdleOpt,
    MaxCacheOpt,
    MaxNewOpt,
    MaxSessionsOpt,
    OutputHereOpt,
    SeedOpt,
    TemperatureOpt,
    TopPOpt,
    generate_all,
    token_text,
)

SHUTDOWN_S = 20.0  # from SIGTERM to exit: gRPC's 2 s grace, then the interpreter's teardown
TlsOpt = Annotated[
    Path | None,
    typer.Option("--tls-dir", help="certificates from `fedslim certs` (server.pem, ca.crt)"),
]
TokenOpt = Annotated[
    Path | None,
    typer.Option("--token-file", help="a shared secret: requests without it are refused"),
]


def _token(path: Path | None) -> str | None:
    if path is None:
        return None
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise ConfigError(f"--token-file {path} is empty")
    return token


@split_cli.command()
def serve(
    model_name: ModelOpt = None,
    adapter: AdapterOpt = None,
    port: Annotated[int, typer.Option("--port", help="0 picks a free port")] = 9094,
    host: Annotated[str, typer.Option("--host", help="0.0.0.0 for other machines")] = "127.0.0.1",
    tls_dir: TlsOpt = None,
    token_file: TokenOpt = None,
    workers: Annotated[int, typer.Option("--workers", help="requests run at once")] = 8,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="per sequence")] = 512,
    max_batch: Annotated[int, typer.Option("--max-batch", help="sequences per request")] = 64,
    max_sessions: MaxSessionsOpt = 16,
    max_cache_mb: MaxCacheOpt = 1024.0,
    idle_s: IdleOpt = 60.0,
    batch_decode: BatchDecodeOpt = True,
    set_: SetOpt = None,
) -> None:
    """Host the tail of a model for devices that run its head, until Ctrl-C or SIGTERM."""
    from ..split.fingerprint import fingerprint
    from ..split.service import Limits, TailService
    from ..split.service import serve as start

    try:
        if min(workers, max_tokens, max_batch, max_sessions) < 1 or not 0 <= port < 65536:
            raise ConfigError(
                "--workers, --max-tokens, --max-batch and --max-sessions must be >= 1, "
                "--port 0..65535"
            )
        if not (max_cache_mb > 0 and idle_s > 0):
            raise ConfigError("--max-cache-mb and --idle-s must be > 0")
        token = _token(token_file)
        tls = None
        if tls_dir is not None:
            tls = ((tls_dir / "server.pem").read_bytes(), (tls_dir / "server.key").read_bytes())
        cfg, model, _ = load(model_name, adapter, set_)
        fp = fingerprint(model)
        limits = Limits(max_tokens=max_tokens, max_batch=max_batch, max_in_flight=8 * workers,
                        max_sessions=max_sessions, max_cache_mb=max_cache_mb,
                        idle_s=idle_s, batch_decode=batch_decode)  # fmt: skip
        service = TailService(model, fp, name=cfg.adapter.model, token=token, limits=limits)
        server, bound = start(service, host=host, port=port, tls=tls, workers=workers)
    except (ConfigError, ValueError, OSError) as exc:
        _fail(exc, 2)
    security = "TLS" if tls else "no TLS"
    if tls is None and host not in ("127.0.0.1", "localhost", "::1"):
        security += " (activations cross the network in the clear: use --tls-dir)"
    console.print(
        f"serving the tail of {cfg.adapter.model} ({service.n} blocks, base {fp.base[:12]}, "
        f"adapter {fp.adapter[:12]}) on {host}:{bound}, {security}"
        + (", token required" if token else "")
    )
    stops: list[int] = []  # a handler that took a lock could find it held by this thread
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda sig, _: stops.append(sig))
    while not stops:  # a handler runs only when this thread runs Python: poll
        time.sleep(0.5)
    # a shutdown (or the interpreter's exit after it) that hangs prints every thread's
    # stack and ends with code 1, instead of waiting for a SIGKILL that says nothing
    faulthandler.dump_traceback_later(SHUTDOWN_S, exit=True)
    server.stop(grace=2).wait()
    console.print("stopped")


def _batches(texts: list[str], tok, max_length: int, size: int):
    import torch

    for s in range(0, len(texts), size):
        rows = [tok.encode(t)[:max_length] for t in texts[s : s + size]]
        if not all(rows):
            raise ConfigError("an input has no tokens")
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, r in enumerate(rows):
            ids[j, : len(r)], mask[j, : len(r)] = torch.tensor(r), 1
        yield texts[s : s + size], ids, mask


@split_cli.command()
def infer(
    server: Annotated[str, typer.Option("--server", help="HOST:PORT of `fedslim split serve`")],
    layer: Annotated[int, typer.Option("--layer", help="k: blocks run here (see split plan)")],
    model_name: ModelOpt = None,
    adapter: AdapterOpt = None,
    codec: Annotated[str, typer.Option("--codec", help="activation codec pipeline")] = "q8",
    text: Annotated[list[str] | None, typer.Option("--text", help="an input, repeatable")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="inputs, one per line")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="inputs per request")] = 1,
    max_new_tokens: MaxNewOpt = 0,
    temperature: TemperatureOpt = 0.0,
    top_p: TopPOpt = 1.0,
    seed: SeedOpt = 0,
    output_here: OutputHereOpt = False,
    down_codec: DownCodecOpt = "q8",
    tls_dir: TlsOpt = None,
    token_file: TokenOpt = None,
    set_: SetOpt = None,
) -> None:
    """Run the first k blocks here, the rest on the server; print each prediction, or with
    --max-new-tokens the generated text as it streams in."""
    import grpc

    from ..compression import build
    from ..split.fingerprint import fingerprint
    from ..split.generate import Sampling
    from ..split.partition import device_head
    from ..split.remote import TailClient
    from ..task.models import build_tokenizer

    try:
        texts = _inputs(text, file)
        if batch_size < 1 or max_new_tokens < 0:
            raise ConfigError("--batch-size must be >= 1, --max-new-tokens >= 0")
        sampling = Sampling(temperature, top_p, seed)  # ValueError names the option
        build(codec), build(down_codec)  # a bad pipeline fails here, before the model loads
        token = _token(token_file)
        ca = (tls_dir / "ca.crt").read_bytes() if tls_dir is not None else None
        cfg, model, task = load(model_name, adapter, set_)
        fp = fingerprint(model)  # of the whole model, as the server's, before the tail goes
        head = device_head(model, layer, keep_output=output_here)  # only what runs here
        del model
        tok = build_tokenizer(cfg.adapter.model)
        if max_new_tokens and task.kind != "sft":
            raise ConfigError(f"--max-new-tokens: {cfg.adapter.model} is a classifier here")
        batches = list(_batches(texts, tok, cfg.task.max_length, batch_size))
    except (ConfigError, ValueError, OSError) as exc:
        _fail(exc, 2)
    with TailClient(server, ca=ca, token=token) as client:
        try:
            if max_new_tokens:
                down = down_codec if output_here else None
                generate_all(client, head, tok, texts, k=layer, codec=codec, fp=fp,
                             max_new_tokens=max_new_tokens, sampling=sampling,
                             down_codec=down)  # fmt: skip
                return
            answers = _run(client, head, batches, task, tok, k=layer, codec=codec, fp=fp)
        except grpc.RpcError as exc:
            _fail(RuntimeError(f"{server} answered {exc.code().name}: {exc.details()}"), 1)
    _summary(answers, len(texts), layer, codec)


def _inputs(text: list[str] | None, file: Path | None) -> list[str]:
    texts = list(text or [])
    if file is not None:
        texts += [line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise ConfigError("nothing to infer: give --text or --file")
    return texts


def _run(client, head, batches, task, tok, **kwargs) -> list:
    from ..split.remote import infer as remote_infer

    answers = []
    for inputs, ids, mask in batches:
        answer = remote_infer(head, client, ids, mask, **kwargs)
        answers.append(answer)
        for text, row in zip(inputs, answer.logits, strict=True):
            best = int(row.argmax())
            label = task.label_names[best] if task.kind == "cls" else token_text(tok, best)
            print(f"{label}\t{text}")
    return answers


def _summary(answers: list, inputs: int, layer: int, codec: str) -> None:
    n = len(answers)

    def ms(attr: str) -> float:
        return 1000 * sum(getattr(a, attr) for a in answers) / n

    up = sum(a.up_bytes for a in answers) / n
    down = sum(a.down_bytes for a in answers) / n
    console.print(
        f"{inputs} inputs in {n} requests, k={layer}, {codec}: per request {up:,.0f} B up, "
        f"{down:,.0f} B down; {ms('total_s'):.1f} ms = head {ms('head_s'):.1f} + encode "
        f"{ms('encode_s'):.1f} + network {ms('network_s'):.1f} + server {ms('server_s'):.1f}"
    )
