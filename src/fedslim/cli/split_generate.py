"""Split generation in the ``fedslim split`` commands: the options of ``serve`` (session
limits) and ``infer`` (``--max-new-tokens`` and sampling), printing tokens as they stream
in, and ``plan --answer`` (prefill and decode priced apart)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..config import ConfigError
from .common import console

MaxSessionsOpt = Annotated[
    int, typer.Option("--max-sessions", help="generation sessions open at once")
]
MaxCacheOpt = Annotated[
    float, typer.Option("--max-cache-mb", help="the sessions' KV caches together")
]
IdleOpt = Annotated[
    float, typer.Option("--idle-s", help="a session idle longer expires, its cache freed")
]
BatchDecodeOpt = Annotated[
    bool,
    typer.Option("--batch-decode/--no-batch-decode",
                 help="run concurrent sessions' decode steps as one batch"),
]  # fmt: skip
MaxNewOpt = Annotated[
    int, typer.Option("--max-new-tokens", help="generate up to N tokens per input (LMs)")
]
TemperatureOpt = Annotated[float, typer.Option("--temperature", help="0: greedy; else sample")]
TopPOpt = Annotated[float, typer.Option("--top-p", help="nucleus sampling's mass")]
SeedOpt = Annotated[int, typer.Option("--seed", help="the sampler's seed")]
OutputHereOpt = Annotated[
    bool, typer.Option("--output-here", help="U-shape: the output head and sampling run here")
]
DownCodecOpt = Annotated[
    str, typer.Option("--down-codec", help="U-shape: codec of the states sent back")
]
AnswerOpt = Annotated[
    int, typer.Option("--answer", help="plan generation of N tokens (causal LMs)")
]


def token_text(tok, token_id: int, unknown: str = "token {}") -> str:
    inner = getattr(tok, "_tok", None)  # a hashed vocabulary has no way back to text
    return inner.decode([token_id]) if inner is not None else unknown.format(token_id)


def generate_all(client, head, tok, texts: list[str], *, k: int, codec: str,
                 **kwargs) -> None:  # fmt: skip
    """One session per input, its tokens printed as they come, then a summary line."""
    import torch

    from ..split.remote import generate

    runs = []
    for text in texts:
        ids = tok.encode(text)
        if not ids:
            raise ConfigError("an input has no tokens")
        print(text, end="", flush=True)

        def show(token: int) -> None:
            print(token_text(tok, token, " <{}>"), end="", flush=True)

        runs.append(generate(head, client, torch.tensor([ids]), k=k, codec=codec, **kwargs,
                             on_token=show))  # fmt: skip
        print(flush=True)
    tokens = sum(len(r.tokens) for r in runs)
    first = 1000 * sum(r.first_token_s for r in runs) / len(runs)
    steps = [s for r in runs for s in r.token_s]
    per = 1000 * sum(steps) / max(len(steps), 1)
    up = sum(b for r in runs for b in r.up_bytes[1:]) / max(len(steps), 1)
    console.print(
        f"{len(runs)} prompts, {tokens} tokens, k={k}, {codec}: first token {first:.1f} ms, "
        f"then {per:.1f} ms per token; per token {up:,.0f} B up, "
        f"{runs[0].down_bytes / max(len(runs[0].tokens), 1):.0f} B down"
    )


def check_objective(answer: int, objective: str) -> None:
    from ..split.plan_generation import OBJECTIVES

    if answer < 0 or (answer and objective not in OBJECTIVES):
        raise ConfigError(
            f"--answer must be >= 0; with it --objective is one of {', '.join(OBJECTIVES)}"
        )


def plan_generation(model, profile, bpv: float, where, *, prompt: int, answer: int,
                    objective: str, min_layer: int, timed: bool):  # fmt: skip
    """Price every placement; returns what prints the table and the decision."""
    from ..client.memory import RUNTIME_MB
    from ..split.plan_generation import choose_generation, generation_costs
    from ..split.profile import decode

    device, link, server_flops = where
    steps = decode(model, profile, context=prompt, reps=20 if timed else 0)
    plan = generation_costs(profile, steps, device, link, server_flops=server_flops,
                            prompt=prompt, answer=answer, bytes_per_value=bpv,
                            runtime_mb=RUNTIME_MB)  # fmt: skip
    chosen = choose_generation(plan, objective, answer, min_k=min_layer)

    def show(title: str) -> None:
        title += f", {prompt}-token prompt, {answer}-token answer"
        Console(width=120).print(_table(title, plan, answer))
        _decision(plan, chosen, objective, answer)

    return show


def _table(title: str, plan, answer: int) -> Table:
    table = Table(title=title)
    for col in ("placement", "first token s", "per token s", "answer s", "device J", "MB",
                "up B", "down B"):  # fmt: skip
        table.add_column(col, justify="right")
    for c in plan:
        mark = "" if c.fits else " (does not fit)"
        table.add_row(c.label, f"{c.ttft_s:.4f}", f"{c.tpot_s:.4f}", f"{c.total_s(answer):.3f}",
                      f"{c.device_j:.3f}", f"{c.device_mb:.0f}{mark}", f"{c.up_bytes:,}",
                      f"{c.down_bytes:,}")  # fmt: skip
    return table


def _decision(plan, chosen, objective: str, answer: int) -> None:
    from ..split.plan_generation import score

    gains = ", ".join(
        f"{score(end, objective, answer) / max(score(chosen, objective, answer), 1e-12):.2f}x "
        f"over all on the {end.mode}"
        for end in plan
        if end.mode in ("device", "server") and end.fits
    )
    console.print(
        f"decision: {chosen.label} ({objective} {score(chosen, objective, answer):.4g}; {gains})"
    )
