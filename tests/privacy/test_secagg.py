"""Secure aggregation: both ends of SecAgg+ run here in one process, with real keys."""

import dataclasses

import numpy as np
import pytest

from fedslim.config import ConfigError, RunConfig
from fedslim.privacy.secagg import crypto
from fedslim.privacy.secagg.encoding import Encoding, pack, unpack
from fedslim.privacy.secagg.protocol import ClientSession, graph, holders, threshold
from fedslim.privacy.secagg.server import ServerSession

SIZE = 3000


def _updates(ids, seed=0):
    rng = np.random.default_rng(seed)
    # norms 0.33 to 2: three within the clip of 1, three clipped
    return {u: rng.normal(size=SIZE) * 0.006 * (1 + i) for i, u in enumerate(ids)}


def _round(ids, *, drop=(), neighbors=0, count=False, seed=0):
    """Run one round; returns (server, encoding, each client's codes, clients)."""
    enc = Encoding(size=SIZE, clip=1.0, bits=8, clients=len(ids), seed=seed, count=count)
    clients = {u: ClientSession(rnd=4, me=u) for u in ids}
    server = ServerSession(rnd=4, neighbors=neighbors, seed=seed)
    keys = server.advertised({u: c.advertise() for u, c in clients.items()})
    routed = server.route({u: c.share(keys[u]) for u, c in clients.items()})
    rng, codes = np.random.default_rng(seed + 1), {}
    for u, x in _updates(ids, seed).items():
        codes[u] = enc.encode(x, rng)
        masked = clients[u].mask(codes[u], enc, routed[u])
        if u not in drop:  # a client that drops after sharing: its input never arrives
            server.add(u, masked, enc)
    survivors, dropped = server.request()
    answers = {u: clients[u].unmask(survivors, dropped) for u in survivors}
    server.finish(answers, enc)
    return server, enc, codes, clients


def _plain(enc, codes, ids):
    total = np.zeros(enc.length, np.uint32)
    for u in ids:
        total = enc.add(total, codes[u])
    return total


def test_the_unmasked_sum_equals_the_plain_sum_within_the_quantization_error():
    ids = [3, 5, 8, 13, 21, 34]
    server, enc, codes, _ = _round(ids, count=True)
    assert np.array_equal(server.total, _plain(enc, codes, ids))  # the integers: exact
    total, unclipped = enc.decode_sum(server.total)
    clipped = [x * min(1.0, enc.clip / np.linalg.norm(x)) for x in _updates(ids).values()]
    want = np.sum(clipped, axis=0)
    # stochastic rounding: at most scale^2 / 4 variance per value and client
    bound = enc.scale / 2 * np.sqrt(len(ids) * enc.padded)
    assert np.linalg.norm(total - want) < 2 * bound < 0.05 * np.linalg.norm(want)
    assert unclipped == sum(np.linalg.norm(x) <= 1.0 for x in _updates(ids).values()) == 3


@pytest.mark.parametrize("neighbors", [0, 4], ids=["all", "ring-4"])
def test_dropped_clients_masks_are_recovered(neighbors):
    ids = list(range(10, 20))
    server, enc, codes, _ = _round(ids, drop=(12, 17), neighbors=neighbors)
    survivors = [u for u in ids if u not in (12, 17)]
    assert server.survivors == set(survivors)
    assert np.array_equal(server.total, _plain(enc, codes, survivors))


def _arrays(obj, seen=None):
    """Every numpy array reachable from ``obj``'s attributes and containers."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return [obj]
    if dataclasses.is_dataclass(obj):
        obj = vars(obj)
    if isinstance(obj, dict):
        obj = [*obj.keys(), *obj.values()]
    if isinstance(obj, list | tuple | set):
        return [a for item in obj for a in _arrays(item, seen)]
    return []


def test_the_server_never_holds_an_individual_update():
    ids = [1, 2, 3, 4, 5]
    server, enc, codes, _ = _round(ids, drop=(4,))
    held = _arrays(server)
    assert len(held) == 1  # the sum, and nothing else
    survivors = [1, 2, 3, 5]
    assert np.array_equal(held[0], _plain(enc, codes, survivors))
    for u in ids:  # not one client's codes, nor anything decoding near its update
        decoded, _ = enc.decode_sum(held[0])
        x = _updates(ids)[u] * min(1.0, 1 / np.linalg.norm(_updates(ids)[u]))
        assert np.linalg.norm(decoded - x) > 0.5 * np.linalg.norm(x)
    # what did cross the server: a masked input looks uniform whatever the update
    server2 = ServerSession(rnd=1)
    c = {u: ClientSession(rnd=1, me=u) for u in ids}
    keys = server2.advertised({u: s.advertise() for u, s in c.items()})
    routed = server2.route({u: s.share(keys[u]) for u, s in c.items()})
    masked = c[1].mask(codes[1], enc, routed[1]).astype(np.float64)
    assert abs(masked.mean() / 2**enc.mod_bits - 0.5) < 0.02
    assert abs(np.corrcoef(masked, codes[1].astype(np.float64))[0, 1]) < 0.05


def test_a_client_reveals_one_secret_per_client_and_answers_once():
    server, _, _, clients = _round([1, 2, 3, 4])
    fresh = {u: ClientSession(rnd=9, me=u) for u in (1, 2, 3, 4)}
    s9 = ServerSession(rnd=9)
    keys = s9.advertised({u: c.advertise() for u, c in fresh.items()})
    routed = s9.route({u: c.share(keys[u]) for u, c in fresh.items()})
    enc = Encoding(size=SIZE, clip=1.0, bits=8, clients=4, seed=0)
    for u, c in fresh.items():
        c.mask(np.zeros(enc.length, np.uint32), enc, routed[u])
    with pytest.raises(ValueError, match="both secrets"):
        fresh[1].unmask({1, 2, 3}, {3, 4})
    with pytest.raises(ValueError, match="already answered"):
        clients[1].unmask({1, 2, 3, 4}, set())


def test_too_many_dropouts_fail_the_round_naming_the_client():
    with pytest.raises(ValueError, match="too many clients dropped"):
        ids = [1, 2, 3, 4, 5]
        enc = Encoding(size=SIZE, clip=1.0, bits=8, clients=5, seed=0)
        clients = {u: ClientSession(rnd=2, me=u) for u in ids}
        server = ServerSession(rnd=2)
        keys = server.advertised({u: c.advertise() for u, c in clients.items()})
        routed = server.route({u: c.share(keys[u]) for u, c in clients.items()})
        for u in ids:
            server.add(u, clients[u].mask(np.zeros(enc.length, np.uint32), enc, routed[u]), enc)
        survivors, dropped = server.request()
        # only two of five answer the unmask request: a majority (3) is needed
        server.finish({u: clients[u].unmask(survivors, dropped) for u in (1, 2)}, enc)


def test_a_tampered_share_fails_authentication():
    key = crypto.agree(crypto.keypair()[0], crypto.keypair()[1], info=b"x")
    sealed = bytearray(crypto.seal(key, b"share", aad=b"1-2"))
    assert crypto.unseal(key, bytes(sealed), aad=b"1-2") == b"share"
    with pytest.raises(ValueError, match="authentication"):
        crypto.unseal(key, bytes(sealed), aad=b"1-3")  # moved to another receiver
    sealed[-1] ^= 1
    with pytest.raises(ValueError, match="authentication"):
        crypto.unseal(key, bytes(sealed), aad=b"1-2")


def test_shamir_needs_a_majority_and_the_ring_graph_is_symmetric():
    secret = crypto.random_secret()
    shares = crypto.split(secret, threshold=threshold(5), holders=5)
    assert crypto.combine({0: shares[0], 2: shares[2], 4: shares[4]}) == secret
    assert crypto.combine({0: shares[0], 1: shares[1]}) != secret
    nbrs = graph(list(range(12)), 4, seed=1)
    assert all(len(vs) == 4 and all(u in nbrs[v] for v in vs) for u, vs in nbrs.items())
    assert holders(0, nbrs) == sorted([0, *nbrs[0]])


def test_the_rotation_is_orthonormal_and_the_codes_pack_exactly():
    enc = Encoding(size=1000, clip=1.0, bits=6, clients=50, seed=3)
    x = np.random.default_rng(0).normal(size=1000)
    y = enc.rotate(x)
    assert y.size == enc.padded == 1024
    assert np.linalg.norm(y) == pytest.approx(np.linalg.norm(x))
    assert np.allclose(enc.unrotate(y), x)
    codes = np.random.default_rng(1).integers(0, 2**enc.mod_bits, enc.length, dtype=np.uint32)
    blob = pack(codes, enc.mod_bits)
    assert len(blob) == enc.wire_bytes == 1024 * 12 // 8  # 6 bits + 6 for 50 clients
    assert np.array_equal(unpack(blob, enc.mod_bits, enc.length), codes)
    with pytest.raises(ValueError, match="expected"):
        unpack(blob[:-1], enc.mod_bits, enc.length)
    with pytest.raises(ValueError, match="secagg-bits"):
        Encoding(size=10, clip=1.0, bits=24, clients=1000, seed=0)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        (dict(uplink_codec="q8|zstd:3"), "uplink-codec"),
        (dict(strategy="krum"), "strategy"),
        (dict(max_update_norm=5.0), "max-update-norm"),
        (dict(secagg_bits=30), "secagg-bits"),
        (dict(secagg_neighbors=1), "secagg-neighbors"),
    ],
)
def test_combinations_secure_aggregation_cannot_sum_fail_before_the_run(changes, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        RunConfig.of(secagg=True, **changes)
