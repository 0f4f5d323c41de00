"""The tail service on 127.0.0.1: right answers for every k, clear statuses for bad
requests (and still serving after them), tokens, TLS, health, concurrent clients."""

from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedslim.deploy.certs import make_certs
from fedslim.split.activations import pack
from fedslim.split.fingerprint import Fingerprint, fingerprint
from fedslim.split.partition import Activations, num_blocks, split
from fedslim.split.remote import TailClient, infer
from fedslim.split.service import Limits, TailService, serve
from fedslim.task.models import ModelSpec, build_model

LIMITS = Limits(max_tokens=32, max_batch=8, max_in_flight=32)
H = 128  # the tiny model's hidden size


def _model(seed: int = 0, adapter_seed: int = 0):
    spec = ModelSpec(model="tiny", kind="cls", num_labels=4, lora_r=4, lora_alpha=8,
                     lora_targets="auto", seed=seed)  # fmt: skip
    model = build_model(spec).eval()
    torch.manual_seed(adapter_seed)  # a trained-looking adapter, not LoRA's zero B
    for p in model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    return model


def _inputs(batch: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 4096, (batch, 12), generator=g)
    mask = torch.ones_like(ids)
    ids[0, 9:], mask[0, 9:] = 0, 0
    return ids, mask


@pytest.fixture(scope="module")
def served():
    model = _model()
    fp = fingerprint(model)
    server, port = serve(TailService(model, fp, name="tiny", limits=LIMITS), workers=8)
    yield model, fp, f"127.0.0.1:{port}"
    server.stop(grace=None)


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


def test_every_split_point_answers_exactly_what_the_unsplit_model_does(served):
    model, fp, target = served
    ids, mask = _inputs()
    with torch.inference_mode():
        full = model(input_ids=ids, attention_mask=mask).logits.numpy()
    with TailClient(target) as client:
        assert client.info()["blocks"] == num_blocks(model)
        for k in range(num_blocks(model) + 1):
            head, _ = split(model, k)
            got = infer(head, client, ids, mask, k=k, codec="none", fp=fp)
            assert np.array_equal(got.logits, full), k
            assert got.up_bytes > 3 * 12 * H * 4 and got.down_bytes == 12 + 3 * 4 * 4
            assert 0 < got.server_s < got.call_s


def test_bad_requests_get_clear_statuses_and_the_server_goes_on(served):
    model, fp, target = served
    ids, mask = _inputs()
    head, _ = split(model, 1)
    with torch.inference_mode():
        good = pack(head(ids, mask))
    huge = Activations(torch.zeros(8, 33, H), torch.ones(8, 33, dtype=torch.int64),
                       torch.zeros(8, dtype=torch.int64))  # fmt: skip
    other = fingerprint(_model(adapter_seed=1))
    with TailClient(target) as client:
        cases = [
            (lambda: client.forward(b"garbage" * 9, k=1, fp=fp), "INVALID_ARGUMENT", "not an"),
            (lambda: client.forward(good[:-9], k=1, fp=fp), "INVALID_ARGUMENT", "truncated"),
            (lambda: client.forward(good, k=9, fp=fp), "INVALID_ARGUMENT", "expected 0..2"),
            (lambda: client.forward(pack(huge), k=1, fp=fp), "RESOURCE_EXHAUSTED", "at most"),
            (lambda: client.forward(b"\0" * (LIMITS.max_message(H) + 1), k=1, fp=fp),
             "RESOURCE_EXHAUSTED", ""),
            (lambda: client.forward(good, k=1, fp=other), "FAILED_PRECONDITION",
             "adapter differs"),
            (lambda: client.forward(good, k=1, fp=fingerprint(_model(seed=3))),
             "FAILED_PRECONDITION", "base model differs"),
            (lambda: client.forward(good, k=1, fp=Fingerprint("", "")), "FAILED_PRECONDITION",
             "differs"),
        ]  # fmt: skip
        for call, code, says in cases:
            got, details = _code(call)
            assert (got.name, says in details) == (code, True), details
        answer, _ = client.forward(good, k=1, fp=fp)  # still serving
        assert len(answer) == 12 + 3 * 4 * 4


def test_a_token_gates_the_service_and_health_answers_probes():
    model = _model()
    fp = fingerprint(model)
    server, port = serve(TailService(model, fp, name="tiny", token="s3cret", limits=LIMITS))
    target = f"127.0.0.1:{port}"
    try:
        for token in (None, "wrong"):
            with TailClient(target, token=token) as client:
                assert _code(client.info)[0] == grpc.StatusCode.UNAUTHENTICATED
        with TailClient(target, token="s3cret") as client:
            assert client.info()["model"] == "tiny"
        with grpc.insecure_channel(target) as channel:
            probe = health_pb2_grpc.HealthStub(channel)
            status = probe.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop(grace=None)


def test_tls_with_the_certificates_fedslim_makes(tmp_path):
    files = make_certs(tmp_path, ["127.0.0.1", "localhost"])
    model = _model()
    fp = fingerprint(model)
    tls = (files.cert.read_bytes(), files.key.read_bytes())
    server, port = serve(TailService(model, fp, name="tiny", limits=LIMITS), tls=tls)
    try:
        ids, mask = _inputs()
        with TailClient(f"127.0.0.1:{port}", ca=files.ca.read_bytes()) as client:
            got = infer(split(model, 1)[0], client, ids, mask, k=1, codec="q8", fp=fp)
            assert got.logits.shape == (3, 4)
        with TailClient(f"127.0.0.1:{port}", timeout_s=5) as plain:  # no TLS: no service
            assert _code(plain.info)[0] == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(grace=None)


def test_sixteen_concurrent_clients_all_get_their_own_answers(served):
    model, fp, target = served

    def client_run(i: int) -> bool:
        ids, mask = _inputs(batch=2, seed=100 + i)
        with torch.inference_mode():
            want = model(input_ids=ids, attention_mask=mask).logits.numpy()
        head, _ = split(model, i % 3)
        with TailClient(target, timeout_s=30) as client:
            return all(
                np.array_equal(
                    infer(head, client, ids, mask, k=i % 3, codec="none", fp=fp).logits, want
                )
                for _ in range(5)
            )

    with ThreadPoolExecutor(16) as pool:  # 80 requests, each with a 30 s deadline
        assert all(pool.map(client_run, range(16), timeout=120))
