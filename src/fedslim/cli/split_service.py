"""``fedslim split serve`` and ``fedslim split infer``: the tail on a server, the head on a
device, activations between them over gRPC."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from ..config import ConfigError
from .common import SetOpt, _fail, console
from .split import AdapterOpt, ModelOpt, load, split_cli

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
    max_sessions: Annotated[
        int, typer.Option("--max-sessions", help="generation sessions open at once")
    ] = 16,
    max_cache_mb: Annotated[
        float, typer.Option("--max-cache-mb", help="the sessions' KV caches together")
    ] = 1024.0,
    idle_s: Annotated[
        float, typer.Option("--idle-s", help="a session idle longer expires, its cache freed")
    ] = 60.0,
    batch_decode: Annotated[
        bool,
        typer.Option(
            "--batch-decode/--no-batch-decode",
            help="run concurrent sessions' decode steps as one batch",
        ),
    ] = True,
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
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
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
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", help="generate up to N tokens per input (LMs)")
    ] = 0,
    temperature: Annotated[
        float, typer.Option("--temperature", help="0: greedy; else sample")
    ] = 0.0,
    top_p: Annotated[float, typer.Option("--top-p", help="nucleus sampling's mass")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="the sampler's seed")] = 0,
    output_here: Annotated[
        bool,
        typer.Option("--output-here", help="U-shape: the output head and sampling run here"),
    ] = False,
    down_codec: Annotated[
        str, typer.Option("--down-codec", help="U-shape: codec of the states sent back")
    ] = "q8",
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
        texts = list(text or [])
        if file is not None:
            texts += [
                line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()
            ]
        if not texts:
            raise ConfigError("nothing to infer: give --text or --file")
        if batch_size < 1 or max_new_tokens < 0:
            raise ConfigError("--batch-size must be >= 1, --max-new-tokens >= 0")
        sampling = Sampling(temperature, top_p, seed)  # ValueError names the option
        build(codec)  # a bad pipeline fails here, not after the model is loaded
        build(down_codec)
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
                runs = [_generate(client, head, tok, text, k=layer, codec=codec, fp=fp,
                                  max_new_tokens=max_new_tokens, sampling=sampling,
                                  down_codec=down) for text in texts]  # fmt: skip
                _generation_summary(runs, layer, codec)
                return
            answers = _run(client, head, batches, task, tok, k=layer, codec=codec, fp=fp)
        except grpc.RpcError as exc:
            _fail(RuntimeError(f"{server} answered {exc.code().name}: {exc.details()}"), 1)
    _summary(answers, len(texts), layer, codec)


def _generate(client, head, tok, text: str, **kwargs):
    import torch

    from ..split.remote import generate

    ids = tok.encode(text)
    if not ids:
        raise ConfigError("an input has no tokens")
    print(text, end="", flush=True)

    def show(token: int) -> None:
        print(_token_text(tok, token, " <{}>"), end="", flush=True)

    run = generate(head, client, torch.tensor([ids]), **kwargs, on_token=show)
    print(flush=True)
    return run


def _generation_summary(runs: list, layer: int, codec: str) -> None:
    tokens = sum(len(r.tokens) for r in runs)
    first = 1000 * sum(r.first_token_s for r in runs) / len(runs)
    steps = [s for r in runs for s in r.token_s]
    per = 1000 * sum(steps) / max(len(steps), 1)
    up = sum(b for r in runs for b in r.up_bytes[1:]) / max(len(steps), 1)
    console.print(
        f"{len(runs)} prompts, {tokens} tokens, k={layer}, {codec}: first token {first:.1f} ms, "
        f"then {per:.1f} ms per token; per token {up:,.0f} B up, "
        f"{runs[0].down_bytes / max(len(runs[0].tokens), 1):.0f} B down"
    )


def _run(client, head, batches, task, tok, **kwargs) -> list:
    from ..split.remote import infer as remote_infer

    answers = []
    for inputs, ids, mask in batches:
        answer = remote_infer(head, client, ids, mask, **kwargs)
        answers.append(answer)
        for text, row in zip(inputs, answer.logits, strict=True):
            best = int(row.argmax())
            label = task.label_names[best] if task.kind == "cls" else _token_text(tok, best)
            print(f"{label}\t{text}")
    return answers


def _token_text(tok, token_id: int, unknown: str = "token {}") -> str:
    inner = getattr(tok, "_tok", None)  # a hashed vocabulary has no way back to text
    return inner.decode([token_id]) if inner is not None else unknown.format(token_id)


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
