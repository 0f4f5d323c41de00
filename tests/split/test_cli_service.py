"""`fedslim split serve` as a process and `fedslim split infer` against it, with a trained
adapter from a run directory, TLS from `fedslim certs` and a token, all on 127.0.0.1."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import torch
from typer.testing import CliRunner

from fedslim.cli import cli
from fedslim.client.workload import run_model, run_task
from fedslim.config import RunConfig
from fedslim.deploy.certs import make_certs
from fedslim.server import checkpoint
from fedslim.task.adapters import get_adapter
from fedslim.task.models import build_tokenizer
from fedslim.task.train import encode_batch, train_local


def _trained_run(out):
    """A run directory as `fedslim simulate` leaves it, with an adapter trained here."""
    cfg = RunConfig.of(out=str(out), lora_r=4)
    task = run_task(cfg)
    model = run_model(cfg, task)
    tok = build_tokenizer("tiny")
    train_local(model, task, task.train_idx, tok, steps=200, batch_size=16, lr=0.01,
                max_length=64, seed=0)  # fmt: skip
    ckpt = checkpoint.Checkpoint(
        1, get_adapter(model), cfg.record(), {"rounds": [{"round": 1}]}, {}
    )
    checkpoint.save(out / "checkpoint", ckpt)
    return model.eval(), task, tok


def _serve(*args: str):
    env = os.environ | {"COLUMNS": "300"}
    cmd = [sys.executable, "-m", "fedslim.cli", "split", "serve", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    seen = ""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        if match := re.search(r"127\.0\.0\.1:(\d+)", line):
            return proc, int(match.group(1))
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"the server did not start: {seen}")


def test_serve_and_infer_a_trained_adapter_over_tls_with_a_token(tmp_path):
    model, task, tok = _trained_run(tmp_path / "run")
    make_certs(tmp_path / "tls", ["127.0.0.1"])
    (tmp_path / "token").write_text("s3cret\n")
    idx = task.eval_idx[:40]
    (tmp_path / "inputs.txt").write_text("\n".join(task.inputs[i] for i in idx))
    with torch.inference_mode():
        want = model(**encode_batch(task, idx, tok, 64)).logits.argmax(-1).numpy()
    common = ["--adapter", str(tmp_path / "run"), "--tls-dir", str(tmp_path / "tls")]
    proc, port = _serve(*common, "--token-file", str(tmp_path / "token"))
    try:
        infer = ["split", "infer", "--server", f"127.0.0.1:{port}", "--layer", "1", *common,
                 "--file", str(tmp_path / "inputs.txt"), "--batch-size", "8",
                 "--codec", "none"]  # fmt: skip
        ok = CliRunner().invoke(cli, [*infer, "--token-file", str(tmp_path / "token")])
        assert ok.exit_code == 0, ok.output
        got = [line.split("\t")[0] for line in ok.stdout.splitlines() if "\t" in line]
        assert got == [task.label_names[i] for i in want]  # the unsplit model's answers
        gold = np.asarray([task.targets[i] for i in idx])
        assert (want == gold).mean() > 0.5  # and they are a trained model's
        assert "5 requests" in ok.output and "B up" in ok.output
        refused = CliRunner().invoke(cli, infer)
        assert refused.exit_code == 1 and "UNAUTHENTICATED" in refused.output
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            err = "no exit 60 s after SIGTERM: " + proc.communicate()[1]
    assert proc.returncode == 0 and "stopped" in err, err[-4000:]


def test_bad_arguments_fail_before_any_model_is_built(tmp_path):
    runner = CliRunner()
    for args, says in [
        (["--text", "x", "--codec", "q99"], "q99"),
        ([], "--text or --file"),
        (["--text", "x", "--adapter", str(tmp_path)], "no checkpoint"),
    ]:
        out = runner.invoke(
            cli, ["split", "infer", "--server", "127.0.0.1:1", "--layer", "1", *args]
        )
        assert out.exit_code == 2 and says in out.output, out.output


def test_serve_on_a_port_in_use_is_a_clear_error():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "fedslim.cli", "split", "serve", "--port", str(port)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "cannot listen on 127.0.0.1" in " ".join((done.stdout + done.stderr).split())
    assert "Traceback" not in done.stderr
