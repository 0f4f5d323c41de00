import numpy as np
import pytest

from fedslim.compression import WireFormatError
from fedslim.transport import apply_downlink, digest, make_downlink, reconstruct

RNG = np.random.default_rng(0)
G0 = RNG.normal(size=5000).astype(np.float32)


@pytest.mark.parametrize("spec", ["none", "zstd:3", "q8", "topk:0.1|q4|zstd:3", "recommended"])
def test_both_ends_hold_the_same_bits(spec):
    target = G0 + RNG.normal(scale=0.01, size=G0.size).astype(np.float32)
    down = make_downlink(spec, target, G0, seed=1)
    assert down.base == digest(G0)
    client = apply_downlink(down.blob, down.mode, G0)
    assert np.array_equal(client, down.held)  # what the server believes == what the client has


def test_lossless_downlink_sends_the_state_itself():
    target = G0 * 1.5
    down = make_downlink("none", target, G0, seed=0)
    assert down.mode == "full" and np.array_equal(down.held, target)


def test_nothing_to_send_when_the_client_is_current():
    down = make_downlink("q4", G0, G0.copy(), seed=0)
    assert down.mode == "keep" and down.blob == b""


def test_lossy_downlink_catches_up_by_error_feedback():
    """What a codec drops stays in target - held and is sent next time."""
    target, held = G0 + 0.5, G0.copy()
    errors = []
    for t in range(30):
        down = make_downlink("topk:0.05|q8", target, held, seed=t)
        held = apply_downlink(down.blob, down.mode, held)
        errors.append(np.linalg.norm(target - held))
    assert errors[-1] < 0.05 * errors[0]


def test_bad_blobs_raise_value_errors():
    blob = make_downlink("q8", G0 + 1, G0, seed=0).blob
    with pytest.raises(WireFormatError):
        apply_downlink(blob[:-3], "delta", G0)
    with pytest.raises(ValueError, match="mode"):
        apply_downlink(blob, "sideways", G0)
    short = make_downlink("none", G0[:10] + 1, G0[:10], seed=0).blob
    with pytest.raises(ValueError):
        reconstruct(short, G0)
