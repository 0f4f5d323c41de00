"""Split generation: a KV cache on each side gives the unsplit model's tokens for every
split point, in one process and over the streaming service on 127.0.0.1; the server's
session limits, idle expiry and cancellation free what they should."""

import queue
import time

import grpc
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from fedslim.split.activations import pack_step, unpack_token
from fedslim.split.fingerprint import Fingerprint, fingerprint
from fedslim.split.generate import (
    GREEDY,
    HeadSession,
    Sampling,
    TailSession,
    generate_local,
    kv_bytes_per_token,
)
from fedslim.split.partition import device_head, num_blocks, split
from fedslim.split.remote import TailClient, generate
from fedslim.split.service import Limits, TailService, serve
from fedslim.task.models import ModelSpec, build_model

NEW = 12


def _tiny():
    spec = ModelSpec(model="tiny", kind="sft", num_labels=0, lora_r=4, lora_alpha=8,
                     lora_targets="auto", seed=0)  # fmt: skip
    model = build_model(spec).eval()
    torch.manual_seed(1)  # a trained-looking adapter, not LoRA's zero B
    for p in model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    return model


def _llama():
    """Llama-like: 4 blocks, grouped-query attention (2 key/value heads for 4)."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, eos_token_id=None)  # fmt: skip
    return LlamaForCausalLM(config).eval()


def _prompt(vocab: int, seed: int = 2, length: int = 7) -> torch.Tensor:
    return torch.randint(
        4, min(vocab, 1000), (1, length), generator=torch.Generator().manual_seed(seed)
    )


def _unsplit(model, prompt) -> list[int]:
    with torch.inference_mode():
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                             max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False)  # fmt: skip
    return out[0, prompt.shape[1] :].tolist()


@pytest.mark.parametrize("make", [_tiny, _llama], ids=["tiny", "llama"])
def test_greedy_split_generation_equals_generate_for_every_k(make):
    """Tokens down, and the U-shape (the tail's last state down, the output head here)."""
    model = make()
    prompt = _prompt(model.config.vocab_size)
    want = _unsplit(model, prompt)
    assert len(set(want)) > 2  # not a degenerate repetition that any bug reproduces
    for k in range(num_blocks(model) + 1):
        assert list(generate_local(model, k, prompt, NEW)) == want, k
        assert list(generate_local(model, k, prompt, NEW, u_shape=True)) == want, k


def test_the_tails_cache_needs_its_head_slots_skipped():
    """Per step, the tail's logits equal the unsplit model's, a multi-token continuation
    included (a chat turn); a plain cache for the tail (slot 0 empty: the mask sees no
    past) is measurably wrong there, with no exception."""
    from transformers.cache_utils import DynamicCache

    model, k = _llama(), 2
    prompt = _prompt(300)
    steps = [prompt, torch.tensor([[17, 33, 5]]), torch.tensor([[40]])]
    with torch.inference_mode():
        full = model(input_ids=torch.cat(steps, 1)).logits[0]
    ends = torch.cumsum(torch.tensor([s.shape[1] for s in steps]), 0) - 1
    head, tail = split(model, k)
    errors = {}
    for name in ("dummy slots", "plain cache"):
        device, server = HeadSession(head, k), TailSession(tail, k)
        if name == "plain cache":
            server.cache = DynamicCache(config=model.config)
        errors[name] = max(
            float((server.step(*device.step(ids)) - full[end]).abs().max())
            for ids, end in zip(steps, ends, strict=True)
        )
    assert errors["dummy slots"] < 1e-5 and errors["plain cache"] > 1e-2, errors


def test_a_step_that_does_not_continue_the_session_is_refused():
    model = _tiny()
    head, tail = split(model, 1)
    device, server = HeadSession(head, 1), TailSession(tail, 1)
    hidden, start = device.step(_prompt(4096))
    server.step(hidden, start)
    with pytest.raises(ValueError, match="position 0; the session is at 7"):
        server.step(hidden, start)  # replayed


LIMITS = Limits(max_tokens=64, max_sessions=2, idle_s=0.5)


@pytest.fixture(scope="module")
def served():
    model = _tiny()
    fp = fingerprint(model)
    service = TailService(model, fp, name="tiny", limits=LIMITS)
    server, port = serve(service)
    with TailClient(f"127.0.0.1:{port}") as client:
        yield model, fp, service, client
    server.stop(grace=None)


def test_streamed_generation_equals_generate_for_every_k(served):
    model, fp, service, client = served
    prompt = _prompt(4096)
    want = _unsplit(model, prompt)
    seen = []
    for k in range(num_blocks(model) + 1):
        got = generate(split(model, k)[0], client, prompt, k=k, codec="none", fp=fp,
                       max_new_tokens=NEW, on_token=seen.append)  # fmt: skip
        assert got.tokens == want and got.session, k
        # up: the prompt once, then one token per step; down: a 16-byte token message
        assert got.up_bytes[1:] == [got.up_bytes[1]] * (NEW - 1)
        assert got.up_bytes[1] > 4 * 128 > got.up_bytes[0] / prompt.shape[1] / 2
        assert got.down_bytes == 16 * NEW and 0 < got.server_s < got.first_token_s + sum(
            got.token_s
        )
    assert seen == want * (num_blocks(model) + 1)
    sampled = Sampling(temperature=0.8, top_p=0.9, seed=3)
    remote = generate(split(model, 1)[0], client, prompt, k=1, codec="none", fp=fp,
                      max_new_tokens=NEW, sampling=sampled)  # fmt: skip
    assert remote.tokens == list(generate_local(model, 1, prompt, NEW, sampling=sampled))
    assert remote.tokens != want
    # the U-shape: a device that kept only its head blocks and the output head
    device = device_head(_tiny(), 1, keep_output=True)
    u = generate(device, client, prompt, k=1, codec="none", fp=fp, max_new_tokens=NEW,
                 down_codec="none")  # fmt: skip
    assert u.tokens == want and u.down_bytes == NEW * got.up_bytes[1]  # a state each way
    sampled_u = generate(device, client, prompt, k=1, codec="none", fp=fp, max_new_tokens=NEW,
                         sampling=sampled, down_codec="q8")  # fmt: skip
    assert len(sampled_u.tokens) == NEW and sampled_u.down_bytes < u.down_bytes
    _settle(service)


def _settle(service, deadline_s: float = 5.0) -> None:
    """Sessions end on the server a moment after the device has its last token."""
    end = time.monotonic() + deadline_s
    while service.sessions.open_count() and time.monotonic() < end:
        time.sleep(0.01)
    assert service.sessions.open_count() == 0 and service.sessions.cache_bytes() == 0


def _open(client, model, fp, k: int = 1):
    """A raw session: the prompt sent, the first token read; (call, outbox)."""
    outbox: queue.Queue = queue.Queue()
    head = HeadSession(split(model, k)[0], k)
    outbox.put(pack_step(*head.step(_prompt(4096))))
    call = client.stream(iter(outbox.get, None), k=k, fp=fp, max_new_tokens=NEW,
                         sampling=Sampling())  # fmt: skip
    position, _, _ = unpack_token(next(call))
    assert position == 7
    return call, outbox


def test_sessions_beyond_the_limit_are_refused_and_an_idle_one_expires(served):
    model, fp, service, client = served
    calls = [_open(client, model, fp) for _ in range(LIMITS.max_sessions)]
    per_token = kv_bytes_per_token(model, num_blocks(model) - 1)
    assert service.sessions.cache_bytes() == LIMITS.max_sessions * 7 * per_token
    with pytest.raises(grpc.RpcError) as refused:
        _open(client, model, fp)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at most 2" in refused.value.details()
    for call, _ in calls:  # nobody sends the next step
        with pytest.raises(grpc.RpcError) as expired:
            next(call)
        assert expired.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "idle for 0.5 s: expired" in expired.value.details()
    _settle(service)
    _open(client, model, fp)[0].cancel()  # the slots are free again


def test_a_cancelled_stream_frees_its_session(served):
    model, fp, service, client = served
    call, outbox = _open(client, model, fp)
    assert service.sessions.open_count() == 1 and service.sessions.cache_bytes() > 0
    call.cancel()  # the device goes away mid-session
    _settle(service, deadline_s=LIMITS.idle_s / 2)  # freed by the cancellation, not expiry
    outbox.put(None)


def test_bad_generation_requests_get_clear_statuses(served):
    model, fp, service, client = served
    head = HeadSession(split(model, 1)[0], 1)
    step = pack_step(*head.step(_prompt(4096)))
    cases = {
        "replayed": ([step, step], 1, grpc.StatusCode.INVALID_ARGUMENT, "the session is at 7"),
        "bad k": ([step], 9, grpc.StatusCode.INVALID_ARGUMENT, "expected 0..2"),
        "garbage": ([b"junk"], 1, grpc.StatusCode.INVALID_ARGUMENT, "step message"),
        "bad codec": ([step], 1, grpc.StatusCode.INVALID_ARGUMENT, "unknown codec 'bogus'"),
        "other adapter": ([step], 1, grpc.StatusCode.FAILED_PRECONDITION, "adapter"),
    }
    for name, (messages, k, code, why) in cases.items():
        down = "bogus" if name == "bad codec" else None
        theirs = Fingerprint(fp.base, "0" * len(fp.adapter)) if name == "other adapter" else fp
        call = client.stream(iter(messages), k=k, fp=theirs, max_new_tokens=NEW,
                             sampling=Sampling(), down_codec=down)  # fmt: skip
        with pytest.raises(grpc.RpcError) as err:
            list(call)
        assert err.value.code() == code and why in err.value.details(), name
    _settle(service)


def test_split_infer_streams_generated_tokens_from_the_cli(tmp_path):
    from typer.testing import CliRunner

    from fedslim.cli import cli
    from fedslim.config import parse_assignments
    from fedslim.server.trained import trained_model

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(f'{{"prompt": "a {i}", "response": "b {i}"}}\n' for i in range(20)))
    assign = [f"task=sft:{pairs}"]
    _, model, _ = trained_model(None, None, parse_assignments(assign))
    server, port = serve(TailService(model.eval(), fingerprint(model), name="tiny"))
    try:
        args = ["split", "infer", "--server", f"127.0.0.1:{port}", "--layer", "1",
                "--codec", "none", "--max-new-tokens", "5", "--text", "the cat", "--set",
                assign[0]]  # fmt: skip
        result = CliRunner().invoke(cli, args)
        bad = CliRunner().invoke(cli, [*args[:-2], "--temperature", "-1", "--set", assign[0]])
    finally:
        server.stop(grace=None)
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("the cat"))
    assert len(line.split("<")) == 6  # five tokens, printed as they came
    assert "1 prompts, 5 tokens, k=1, none" in result.output
    assert bad.exit_code == 2 and "temperature must be >= 0" in bad.output


@pytest.mark.parametrize("make", [_tiny, _llama], ids=["tiny", "llama"])
def test_a_batched_decode_step_equals_each_sessions_own(make):
    """Sessions of different lengths, left-padded into one forward, get the logits each
    would alone, and their caches continue as if stepped alone."""
    from fedslim.split.batching import batched_step

    model = make()
    vocab = model.config.vocab_size

    def sessions(k):
        head, tail = split(model, k)
        out = []
        for i, length in enumerate((3, 7, 5)):
            device, server = HeadSession(head, k), TailSession(tail, k)
            server.step(*device.step(_prompt(vocab, seed=i, length=length)))
            out.append((device, server))
        return out

    for k in range(num_blocks(model)):
        batched, alone = sessions(k), sessions(k)
        for step in range(3):
            ids = [torch.tensor([[10 + step + i]]) for i in range(3)]
            hidden = [d.step(t)[0] for (d, _), t in zip(batched, ids, strict=True)]
            got = batched_step([s for _, s in batched], hidden)
            for row, ((d, s), t) in enumerate(zip(alone, ids, strict=True)):
                assert torch.allclose(got[row], s.step(*d.step(t)), atol=1e-5), (k, step, row)


def test_concurrent_sessions_share_batches_and_keep_their_own_tokens():
    from concurrent.futures import ThreadPoolExecutor

    model = _tiny()
    fp = fingerprint(model)
    service = TailService(model, fp, name="tiny", limits=Limits(max_sessions=4))
    server, port = serve(service)
    prompts = [_prompt(4096, seed=s, length=4 + s) for s in range(4)]
    try:
        with TailClient(f"127.0.0.1:{port}") as client:

            def one(prompt):
                return generate(split(model, 1)[0], client, prompt, k=1, codec="none", fp=fp,
                                max_new_tokens=NEW).tokens  # fmt: skip

            with ThreadPoolExecutor(4) as pool:
                got = list(pool.map(one, prompts))
    finally:
        server.stop(grace=None)
    assert got == [_unsplit(model, p) for p in prompts]
    steps, batches = service.sessions.batching()
    assert 1 <= batches <= steps <= 4 * (NEW - 1)  # a lone session's steps go direct


def test_the_token_the_cache_budget_and_the_session_length_are_enforced():
    model = _tiny()
    fp = fingerprint(model)
    per_token = kv_bytes_per_token(model, num_blocks(model) - 1)  # k = 1: one block served
    budget_mb = 10 * per_token / 1e6  # room for 10 tokens of cache in all
    limits = Limits(max_tokens=9, max_cache_mb=budget_mb)
    server, port = serve(TailService(model, fp, name="tiny", token="s3cret", limits=limits))
    head = HeadSession(split(model, 1)[0], 1)
    prompt = pack_step(*head.step(_prompt(4096, length=7)))
    try:
        with TailClient(f"127.0.0.1:{port}") as stranger:
            with pytest.raises(grpc.RpcError) as refused:
                list(stranger.stream(iter([prompt]), k=1, fp=fp, max_new_tokens=2,
                                     sampling=GREEDY))  # fmt: skip
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with TailClient(f"127.0.0.1:{port}", token="s3cret") as client:
            first = client.stream(iter([prompt]), k=1, fp=fp, max_new_tokens=2, sampling=GREEDY)
            assert len(list(first)) == 1  # 7 tokens fit, and the device ended the session
            calls, outboxes = [], [queue.Queue(), queue.Queue()]
            for outbox in outboxes:  # two sessions of 7 tokens: the second would pass 10
                outbox.put(prompt)
                calls.append(client.stream(iter(outbox.get, None), k=1, fp=fp,
                                           max_new_tokens=2, sampling=GREEDY))  # fmt: skip
                if len(calls) == 1:
                    next(calls[0])  # its prompt is in the cache before the second arrives
            with pytest.raises(grpc.RpcError) as over:
                next(calls[1])
            assert over.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "caches would exceed" in over.value.details()
            # the first session goes on with 3 tokens: 10 is past --max-tokens
            step = pack_step(*head.step(torch.tensor([[5, 6, 7]])))
            outboxes[0].put(step)
            with pytest.raises(grpc.RpcError) as long:
                next(calls[0])
            assert long.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "at most 9 per session" in long.value.details()
    finally:
        server.stop(grace=None)
