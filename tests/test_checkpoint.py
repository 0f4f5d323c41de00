"""Checkpoints survive a crash at any point of their writing, and refuse damage clearly."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fedslim.server import checkpoint
from fedslim.server.checkpoint import Checkpoint


def _ckpt(rnd: int) -> Checkpoint:
    rows = [{"round": r, "accuracy": 0.1 * r, "loss": 1.0} for r in range(rnd + 1)]
    adapter = {"b": np.full((3, 2), rnd, np.float32), "a": np.arange(4, dtype=np.float32) + rnd}
    server = {"m_t/a": np.full(4, rnd, np.float32)}
    return Checkpoint(rnd, adapter, {"seed": 0}, {"rounds": rows, "clients": []}, server)


def test_a_round_trip_keeps_two_generations(tmp_path):
    for rnd in range(4):
        checkpoint.save(tmp_path, _ckpt(rnd))
    got = checkpoint.load(tmp_path)
    assert got.round == 3 and list(got.adapter) == ["b", "a"]
    assert np.array_equal(got.adapter["a"], _ckpt(3).adapter["a"])
    assert np.array_equal(got.server["m_t/a"], np.full(4, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST", "round-000002", "round-000003"]


CRASH = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from fedslim.server import checkpoint
    from fedslim.server.checkpoint import Checkpoint
    sys.path.insert(0, sys.argv[3])
    from test_checkpoint import _ckpt
    at, calls = int(sys.argv[2]), [0]
    def crashing(real):
        def call(*args, **kwargs):
            calls[0] += 1
            if calls[0] == at:
                os._exit(9)  # the process dies here, mid-checkpoint
            return real(*args, **kwargs)
        return call
    for name in ("fsync", "rename", "replace"):
        setattr(os, name, crashing(getattr(os, name)))
    checkpoint.save_file = crashing(checkpoint.save_file)
    checkpoint.save(__import__("pathlib").Path(sys.argv[1]), _ckpt(2))
    print("completed")
    """
)


def _calls_in_one_save(tmp_path, monkeypatch) -> int:
    """How many fsync / rename / replace / save_file calls one checkpoint write makes:
    the points where a crash can strike."""
    calls = [0]

    def counting(real):
        def call(*args, **kwargs):
            calls[0] += 1
            return real(*args, **kwargs)

        return call

    with monkeypatch.context() as m:
        for name in ("fsync", "rename", "replace"):
            m.setattr(os, name, counting(getattr(os, name)))
        m.setattr(checkpoint, "save_file", counting(checkpoint.save_file))
        checkpoint.save(tmp_path, _ckpt(1))
        calls[0] = 0
        checkpoint.save(tmp_path, _ckpt(2))  # a later round: old generations to drop too
    return calls[0]


def test_a_crash_at_any_point_of_a_write_leaves_a_consistent_checkpoint(tmp_path, monkeypatch):
    points = _calls_in_one_save(tmp_path / "count", monkeypatch)
    assert points >= 5  # files, their directory, the LATEST pointer
    here = str(__import__("pathlib").Path(__file__).parent)
    for point in range(1, points + 2):  # every call, then one past the last: no crash
        directory = tmp_path / f"crash-{point}"
        checkpoint.save(directory, _ckpt(1))
        proc = subprocess.run(
            [sys.executable, "-c", CRASH, str(directory), str(point), here],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == (9 if point <= points else 0), (point, proc.stderr)
        got = checkpoint.load(directory)  # never a half checkpoint
        assert got.round in (1, 2), point
        assert np.array_equal(got.adapter["a"], _ckpt(got.round).adapter["a"])
        checkpoint.save(directory, _ckpt(2))  # the resumed run writes the round again
        assert checkpoint.load(directory).round == 2


def _damage(path):
    path.write_bytes(path.read_bytes()[:20])


@pytest.mark.parametrize(
    ("harm", "says"),
    [
        (lambda d: _damage(d / "round-000001" / "adapter.safetensors"), "damaged"),
        (lambda d: (d / "round-000001" / "state.json").write_text("{"), "damaged"),
        (lambda d: (d / "LATEST").write_text("round-000009\n"), "not there"),
        (
            lambda d: (d / "round-000001" / "state.json").write_text(
                json.dumps(
                    {**json.loads((d / "round-000001" / "state.json").read_text()), "round": 0}
                )  # fmt: skip
            ),
            "inconsistent",
        ),
    ],
)
def test_a_damaged_checkpoint_is_refused_with_a_clear_message(tmp_path, harm, says):
    checkpoint.save(tmp_path, _ckpt(0))
    checkpoint.save(tmp_path, _ckpt(1))
    harm(tmp_path)
    with pytest.raises(ValueError, match=says) as err:
        checkpoint.load(tmp_path)
    assert "--resume" in str(err.value)
    if says != "not there":
        assert "round-000000" in str(err.value)  # how to continue from the previous one


def test_no_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.load(tmp_path)
