"""Every rep3 primitive against plaintext numpy, over the in-process network."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fedsyn.engines.rep3 import (
    AShare,
    BShare,
    InProcessNetwork,
    Party,
    b2a,
    concatenate,
    divide_floor,
    eqz,
    geq,
    lt_public,
    ltz,
    reconstruct,
    reconstruct_bits,
    run_parties,
    share_array,
    share_bits,
    shuffle,
)
from fedsyn.engines.rep3.compare import pack, top_bits, unpack
from fedsyn.engines.rep3.prf import PRF, derive_key
from fedsyn.errors import InputError, ProtocolError

I64 = np.int64
EDGE = np.array([0, -1, 1, 2**63 - 1, -(2**63), 2**62, -(2**62)], dtype=I64)


def run(program, *shared, seed: int = 7):
    """Run ``program(party, *pairs_of_that_party)`` on the three parties; return the three results."""

    def body(i, t):
        p = Party.setup(i, t, seed=seed)
        return program(p, *(s[i] for s in shared))

    return run_parties(body, network=InProcessNetwork(timeout=20))


def opened(results):
    """All three parties must have opened the same values; return party 0's."""
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    return results[0]


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# ------------------------------------------------------------------ sharing
def test_share_reconstruct_round_trip(rng):
    x = np.concatenate([EDGE, rng.integers(-(2**63), 2**63 - 1, size=100)])
    pairs = share_array(x, rng=rng)
    np.testing.assert_array_equal(reconstruct(pairs).view(I64), x)
    for drop in range(3):
        some = {i: p for i, p in enumerate(pairs) if i != drop}
        np.testing.assert_array_equal(reconstruct(some).view(I64), x)
    # Each party's own share is random, not the secret.
    assert not np.array_equal(pairs[1].a.view(I64), x)


def test_share_array_default_randomness_is_fresh():
    x = np.arange(10)
    p1, p2 = share_array(x), share_array(x)
    assert not np.array_equal(p1[1].a, p2[1].a)
    np.testing.assert_array_equal(reconstruct(p1), reconstruct(p2))


def test_reconstruct_detects_inconsistency(rng):
    pairs = list(share_array(np.arange(5), rng=rng))
    pairs[2] = AShare(pairs[2].a, pairs[2].b + np.uint64(1))
    with pytest.raises(ProtocolError, match="Inconsistent"):
        reconstruct(pairs)
    with pytest.raises(ProtocolError):
        reconstruct([pairs[0], None, None])


def test_share_array_rejects_floats():
    with pytest.raises(InputError, match="fixed point"):
        share_array(np.array([0.5]))


def test_local_linear_operations(rng):
    x = rng.integers(-(2**40), 2**40, size=(4, 6))
    y = rng.integers(-(2**40), 2**40, size=(4, 6))
    px, py = share_array(x, rng=rng), share_array(y, rng=rng)
    c = rng.integers(-100, 100, size=(4, 6))

    def op(i):
        a, b = px[i], py[i]
        out = (a + b) - (-a) * 3 + a * c
        out = out.add_public(5, i).sub_public(np.arange(6), i)
        return out

    res = [op(i) for i in range(3)]
    assert np.array_equal(reconstruct([c * px[i] for i in range(3)]).view(I64), c * x)  # numpy on the left
    expect = (x + y) + x * 3 + x * c + 5 - np.arange(6)
    np.testing.assert_array_equal(reconstruct(res).view(I64), expect)
    # shape manipulation
    np.testing.assert_array_equal(reconstruct([r.T for r in res]).view(I64), expect.T)
    np.testing.assert_array_equal(reconstruct([r[1:3, ::2] for r in res]).view(I64), expect[1:3, ::2])
    np.testing.assert_array_equal(reconstruct([r.sum(axis=0) for r in res]).view(I64), expect.sum(axis=0))
    np.testing.assert_array_equal(
        reconstruct([r.reshape(-1) for r in res]).view(I64), expect.reshape(-1)
    )
    cat = [concatenate([r, r[:1]], axis=0) for r in res]
    np.testing.assert_array_equal(reconstruct(cat).view(I64), np.concatenate([expect, expect[:1]]))
    assert cat[0].shape == (5, 6)
    assert "shape" in repr(res[0]) and str(int(res[0].a[0, 0])) not in repr(res[0])


def test_bshare_xor_and_public(rng):
    x = rng.integers(0, 2**64, size=20, dtype=np.uint64)
    y = rng.integers(0, 2**64, size=20, dtype=np.uint64)
    px, py = share_bits(x, rng=rng), share_bits(y, rng=rng)
    res = [(px[i] ^ py[i]).xor_public(np.uint64(0xFF), i).and_public(np.uint64(0xF0F0)) for i in range(3)]
    np.testing.assert_array_equal(reconstruct_bits(res), ((x ^ y) ^ np.uint64(0xFF)) & np.uint64(0xF0F0))


def test_prf_streams_agree_and_advance():
    p, q = PRF(derive_key(3, "k")), PRF(derive_key(3, "k"))
    a1, a2 = p.ring(100), p.ring(100)
    np.testing.assert_array_equal(a1, q.ring(100))
    assert not np.array_equal(a1, a2)
    assert p.ring((2, 3)).shape == (2, 3)
    assert set(np.unique(p.bits(1000))) == {0, 1}
    with pytest.raises(ValueError):
        PRF(b"short")


# ---------------------------------------------------------------- transport
def test_transport_fifo_copy_and_counters():
    net = InProcessNetwork(timeout=5)
    t0, t1 = net.transport(0), net.transport(1)
    buf = np.arange(4, dtype=np.uint64)
    t0.send(1, buf)
    buf[:] = 9
    t0.send(1, buf)
    np.testing.assert_array_equal(t1.recv(0), np.arange(4))
    np.testing.assert_array_equal(t1.recv(0), np.full(4, 9))
    assert t0.bytes_sent == 64 and t0.messages_sent == 2


def test_transport_timeout_and_close():
    net = InProcessNetwork(timeout=5)
    with pytest.raises(ProtocolError, match="no message"):
        net.transport(2).recv(0, timeout=0.05)
    net.transport(0).close()
    with pytest.raises(ProtocolError, match="closed"):
        net.transport(1).recv(0)


def test_run_parties_fails_fast():
    def body(i, t):
        if i == 1:
            raise ValueError("party 1 broke")
        t.recv((i + 1) % 3)  # would wait 60 s without the abort
        return i

    start = time.monotonic()
    with pytest.raises(ValueError, match="party 1 broke"):
        run_parties(body, timeout=60)
    assert time.monotonic() - start < 10


# ------------------------------------------------------------ mul / reveal
def test_mul_reveal_and_bytes(rng):
    x = np.concatenate([EDGE, rng.integers(-(2**63), 2**63 - 1, size=993)])
    y = np.concatenate([EDGE[::-1], rng.integers(-(2**63), 2**63 - 1, size=993)])
    n = x.size

    def prog(p, a, b):
        b0, r0 = p.stats.bytes_sent, p.stats.rounds
        z = p.mul(a, b)
        mul_bytes, mul_rounds = p.stats.bytes_sent - b0, p.stats.rounds - r0
        with p.phase("reveal"):
            out = p.reveal(z)
        return out, mul_bytes, mul_rounds, p.stats.phases["reveal"]

    res = run(prog, share_array(x, rng=rng), share_array(y, rng=rng))
    np.testing.assert_array_equal(opened([r[0] for r in res]).view(I64), x * y)
    for r in res:
        assert r[1] == 8 * n and r[2] == 1  # exactly 8 bytes per element, one round
        assert r[3].bytes_sent == 8 * n and r[3].rounds == 1 and r[3].seconds >= 0


def test_matmul_dot_and_broadcast(rng):
    x = rng.integers(-1000, 1000, size=(5, 7))
    y = rng.integers(-1000, 1000, size=(7, 3))
    v = rng.integers(-1000, 1000, size=(5, 7))

    def prog(p, a, b, c):
        b0 = p.stats.bytes_sent
        m = p.matmul(a, b)
        mm_bytes = p.stats.bytes_sent - b0
        d = p.dot(a, c, axis=1)
        s = p.mul(a, c[0:1])  # broadcasting
        return p.reveal(m), p.reveal(d), p.reveal(s), mm_bytes

    res = run(prog, share_array(x, rng=rng), share_array(y, rng=rng), share_array(v, rng=rng))
    np.testing.assert_array_equal(opened([r[0] for r in res]).view(I64), x @ y)
    np.testing.assert_array_equal(opened([r[1] for r in res]).view(I64), (x * v).sum(axis=1))
    np.testing.assert_array_equal(opened([r[2] for r in res]).view(I64), x * v[0:1])
    assert all(r[3] == 8 * 5 * 3 for r in res)  # one reshare of the m*k outputs


def test_reveal_to_only_target(rng):
    x = rng.integers(-(2**63), 2**63 - 1, size=50)

    def prog(p, a):
        b0 = p.stats.bytes_sent
        return p.reveal_to(a, 2), p.stats.bytes_sent - b0

    res = run(prog, share_array(x, rng=rng))
    assert res[0][0] is None and res[1][0] is None
    np.testing.assert_array_equal(res[2][0].view(I64), x)
    assert [r[1] for r in res] == [0, 8 * 50, 0]


def test_input_from_public_and_random(rng):
    def prog(p):
        pub = p.input_from_public(np.array([-3, 0, 2**63 - 1]))
        rr = p.random_ring((1000,))
        rb = p.random_bits((4000,))
        ru = p.random_uniform_bits((4000,), 5)
        return p.reveal(pub), p.reveal(rr), p.reveal(rb), p.reveal(ru), p.stats.rounds

    res = run(prog)
    np.testing.assert_array_equal(opened([r[0] for r in res]).view(I64), [-3, 0, 2**63 - 1])
    rr = opened([r[1] for r in res])
    assert len(np.unique(rr)) == 1000 and rr.max() > 2**63  # uniform 64-bit, not small
    rb = opened([r[2] for r in res])
    assert set(np.unique(rb)) == {0, 1} and 1800 < rb.sum() < 2200
    ru = opened([r[3] for r in res])
    counts = np.bincount(ru.astype(np.int64), minlength=32)
    assert ru.max() < 32 and counts.size == 32 and counts.min() > 70  # ~125 each


def test_random_is_independent_of_seedless_setup():
    def prog(i, t):
        return Party.setup(i, t).reveal(Party.setup(i, t).random_ring((4,)))

    # Two parties objects per index (fresh keys each) still agree within a run.
    a = run_parties(prog)
    b = run_parties(prog)
    assert not np.array_equal(a[0], b[0])


def test_truncate_within_one_ulp(rng):
    f = 16
    x = np.concatenate([[0, -1, 1, 2**39, -(2**39), 65535, -65536], rng.integers(-(2**40), 2**40, size=3000)])

    def prog(p, a):
        t = p.truncate(a, f)
        pub = p.truncate(p.rerandomize(p.input_from_public(np.array([-(2**20) - 1, 2**20 + 5]))), f)
        return p.reveal(t), p.reveal(pub), p.stats.bytes_sent

    res = run(prog, share_array(x, rng=rng))
    got = opened([r[0] for r in res]).view(I64)
    err = got - (x >> f)
    assert set(np.unique(err)) <= {0, 1}  # |x| < 2^40: failure probability 2^-23 per element
    assert 0 < err.sum() < err.size  # genuinely probabilistic
    assert np.abs(opened([r[1] for r in res]).view(I64) - [(-(2**20) - 1) >> f, (2**20 + 5) >> f]).max() <= 1


def test_truncate_costs():
    def prog(p):
        x = p.random_ring((100,))
        b0 = p.stats.bytes_sent
        p.truncate(x, 16)
        return p.stats.bytes_sent - b0

    assert run(prog) == [0, 0, 800]  # only party 2 sends, 8 bytes per element


def test_truncate_failure_rate_matches_bound(rng):
    # |x| < 2^60: the documented failure probability is at most 2^(61 - 64) = 1/8.
    x = rng.integers(-(2**60), 2**60, size=4000)

    def prog(p, a):
        return p.reveal(p.truncate(a, 8))

    err = opened(run(prog, share_array(x, rng=rng))).view(I64) - (x >> 8)
    bad = np.abs(err) > 1
    assert 0 < bad.mean() <= 1 / 8 + 0.02


def test_truncate_exact(rng):
    x = np.concatenate([[0, -1, 1, 2**62 - 1, -(2**62) + 1, 65535, -65536, 65536], rng.integers(-(2**62), 2**62, size=2000)])

    def prog(p, a):
        return p.reveal(p.truncate_exact(a, 16)), p.reveal(p.truncate_exact(a, 3))

    res = run(prog, share_array(x, rng=rng))
    np.testing.assert_array_equal(opened([r[0] for r in res]).view(I64), x >> 16)
    np.testing.assert_array_equal(opened([r[1] for r in res]).view(I64), x >> 3)


# --------------------------------------------------------------- comparison
def test_pack_unpack_round_trip(rng):
    v = rng.integers(0, 2**64, size=200, dtype=np.uint64)
    planes = pack(v, 64)
    assert planes.shape == (64, 4)
    ref = (v[None, :] >> np.arange(64, dtype=np.uint64)[:, None]) & np.uint64(1)
    np.testing.assert_array_equal(unpack(planes, 200), ref)
    np.testing.assert_array_equal(pack(v, 13), planes[:13])


@pytest.mark.parametrize("bits", [64, 41, 17, 3, 2])
def test_ltz_against_numpy(rng, bits):
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    edge = np.array([0, -1, 1, lo, hi, lo + 1, hi - 1], dtype=I64)
    x = np.concatenate([edge, rng.integers(lo, hi, size=700, endpoint=True)])

    def prog(p, a):
        r0 = p.stats.rounds
        out = p.reveal(ltz(p, a, bits=bits))
        return out, p.stats.rounds - r0 - 1

    res = run(prog, share_array(x, rng=rng))
    np.testing.assert_array_equal(opened([r[0] for r in res]), (x < 0).astype(np.uint64))
    if bits == 64:
        assert res[0][1] == 9


@pytest.mark.parametrize("bits,count", [(22, 5), (22, 1), (8, 7), (3, 2), (2, 1), (64, 6)])
def test_top_bits_against_numpy(rng, bits, count):
    edge = np.array([0, 1, 2**bits - 1, 2 ** (bits - 1), 2 ** (bits - count) - 1, 2 ** (bits - count)],
                    dtype=np.uint64)
    x = np.concatenate([edge, rng.integers(0, 2**bits - 1, size=300, endpoint=True, dtype=np.uint64)])
    x = x.reshape(6, 51)

    def prog(p, a):
        return p.reveal(top_bits(p, a, bits=bits, count=count)), p.reveal(top_bits(p, a, bits=bits, count=count,
                                                                                    chunk=64))

    res = run(prog, share_array(x.astype(I64) if bits < 64 else x.view(I64), rng=rng))
    want = np.stack([(x >> np.uint64(k)) & np.uint64(1) for k in range(bits - count, bits)])
    np.testing.assert_array_equal(opened([r[0] for r in res]), want)
    np.testing.assert_array_equal(opened([r[1] for r in res]), want)


def test_ltz_shapes_chunks_and_cost(rng):
    x = rng.integers(-(2**63), 2**63 - 1, size=(3, 50))
    n = x.size

    def prog(p, a):
        b0 = p.stats.bytes_sent
        s = ltz(p, a)
        cost = p.stats.bytes_sent - b0
        chunked = ltz(p, a, chunk=64)
        return p.reveal(s), p.reveal(chunked), cost

    res = run(prog, share_array(x, rng=rng))
    np.testing.assert_array_equal(opened([r[0] for r in res]), (x < 0))
    np.testing.assert_array_equal(opened([r[1] for r in res]), (x < 0))
    for r in res:  # 16 B daBit + packed AND layers (~33 B at 64 bits, padded to 64-element words)
        assert 16 * n < r[2] < 60 * n


def test_geq_eqz_lt_public_with_ties(rng):
    x = rng.integers(-50, 50, size=400)
    y = rng.integers(-50, 50, size=400)
    y[:100] = x[:100]  # ties

    def prog(p, a, b):
        return (
            p.reveal(geq(p, a, b, bits=10)),
            p.reveal(eqz(p, a - b, bits=10)),
            p.reveal(lt_public(p, a, 7, bits=10)),
            p.reveal(eqz(p, a)),
        )

    res = run(prog, share_array(x, rng=rng), share_array(y, rng=rng))
    np.testing.assert_array_equal(opened([r[0] for r in res]), x >= y)
    np.testing.assert_array_equal(opened([r[1] for r in res]), x == y)
    np.testing.assert_array_equal(opened([r[2] for r in res]), x < 7)
    np.testing.assert_array_equal(opened([r[3] for r in res]), x == 0)


def test_b2a(rng):
    bits = rng.integers(0, 2, size=500).astype(np.uint64)

    def prog(p, b):
        r0 = p.stats.rounds
        out = b2a(p, b)
        rounds = p.stats.rounds - r0
        return p.reveal(out), rounds

    res = run(prog, share_bits(bits, rng=rng))
    np.testing.assert_array_equal(opened([r[0] for r in res]), bits)
    assert res[0][1] == 2


# ----------------------------------------------------------------- shuffle
def test_shuffle_is_secret_permutation(rng):
    n = 300
    x = np.arange(n) * 3 - 100
    y = np.arange(n)

    def prog(p, a, b):
        b0, r0 = p.stats.bytes_sent, p.stats.rounds
        sa, sb = shuffle(p, [a, b])
        cost = (p.stats.bytes_sent - b0, p.stats.rounds - r0)
        return p.reveal(sa), p.reveal(sb), cost

    res = run(prog, share_array(x, rng=rng), share_array(y, rng=rng))
    sx = opened([r[0] for r in res]).view(I64)
    sy = opened([r[1] for r in res]).view(I64)
    np.testing.assert_array_equal(np.sort(sy), y)  # a permutation
    assert (sy != y).sum() > n - 10  # far from the identity
    np.testing.assert_array_equal(sx, sy * 3 - 100)  # same permutation for all arrays
    assert all(r[2] == (2 * 16 * n, 3) for r in res)  # 16 bytes per element per party, 3 rounds


def test_shuffle_axis1_and_independent_columns(rng):
    m = rng.integers(0, 10**6, size=(64, 5))
    tag = np.tile(np.arange(64)[:, None], (1, 5))

    def prog(p, a, t):
        sm, st = shuffle(p, [a, t], independent_columns=True)
        (ax1,) = shuffle(p, [a.T], axis=1)
        return p.reveal(sm), p.reveal(st), p.reveal(ax1)

    res = run(prog, share_array(m, rng=rng), share_array(tag, rng=rng))
    sm = opened([r[0] for r in res]).view(I64)
    st = opened([r[1] for r in res]).view(I64)
    np.testing.assert_array_equal(np.sort(sm, axis=0), np.sort(m, axis=0))
    np.testing.assert_array_equal(np.take_along_axis(m, st, axis=0), sm)  # arrays share the permutation
    assert len({tuple(st[:, j]) for j in range(5)}) == 5  # columns permuted independently
    ax1 = opened([r[2] for r in res]).view(I64)
    perm = [int(np.flatnonzero(m[:, 0] == v)[0]) for v in ax1[0]]
    np.testing.assert_array_equal(ax1, m[perm].T)  # whole columns of m.T move together


def test_shuffle_differs_between_runs(rng):
    y = np.arange(100)

    def prog(i, t):
        p = Party.setup(i, t)  # fresh keys
        return p.reveal(shuffle(p, [y_sh[i]])[0])

    y_sh = share_array(y, rng=rng)
    a, b = run_parties(prog)[0], run_parties(prog)[0]
    assert not np.array_equal(a, b)


# ---------------------------------------------------------------- division
def test_divide_floor_exact(rng):
    den = np.concatenate([[1, 1, 1, 7, 1023, 1023], rng.integers(1, 1024, size=200)])
    q = rng.integers(0, 2**12, size=den.size)
    num = q * den + rng.integers(0, den)  # remainder in [0, den)
    num[:6] = [0, 4095, 0, 7 * 4095 + 6, 1023 * 4095 + 1022, 5]

    def prog(p, a, b):
        return p.reveal(divide_floor(p, a, b, quotient_bits=12, den_bits=10))

    res = run(prog, share_array(num, rng=rng), share_array(den, rng=rng))
    np.testing.assert_array_equal(opened(res).view(I64), num // den)


def test_divide_by_zero_gives_bounded_garbage(rng):
    def prog(p, a, b):
        return p.reveal(divide_floor(p, a, b, quotient_bits=8, den_bits=4))

    res = run(prog, share_array(np.array([0, 3, 200]), rng=rng), share_array(np.array([0, 0, 0]), rng=rng))
    q = opened(res)
    assert q[0] == 255 and q[1] == 255 and q[2] < 256


def test_divide_floor_rejects_too_wide():
    def prog(p):
        z = AShare.zeros((2,))
        return divide_floor(p, z, z, quotient_bits=40, den_bits=30)

    with pytest.raises(ValueError, match="no room"):
        run(prog)


def test_misc_bshare_types():
    with pytest.raises(TypeError):
        AShare(np.zeros(2, np.int64), np.zeros(2, np.int64))
    with pytest.raises(TypeError):
        concatenate([AShare.zeros(2), BShare.zeros(2)])


def test_setup_refuses_a_malformed_prf_key():
    from fedsyn.engines.rep3.transport import InProcessNetwork

    net = InProcessNetwork(timeout=5)
    t0, t2 = net.transport(0), net.transport(2)
    t2.send(0, np.arange(16, dtype=np.uint64))  # 16 words, not 16 bytes: was silently cast
    with pytest.raises(ProtocolError, match="malformed PRF key"):
        Party.setup(0, t0)
