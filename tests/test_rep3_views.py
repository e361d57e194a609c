"""A party's view is independent of the secrets (passive security, empirically).

For each primitive we record every message one party receives, for two very
different secrets, and check that (a) the received bytes are uniform and (b)
the two views are statistically indistinguishable. Everything is seeded, so the
outcome is deterministic; the thresholds are loose (p > 1e-4) yet the same
statistic flags an unmasked message (see ``test_statistic_has_power``).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fedsyn.engines.rep3 import InProcessNetwork, Party, run_parties, share_array
from fedsyn.engines.rep3.compare import ltz
from fedsyn.engines.rep3.shuffle import shuffle

N = 64 * 256  # elements per run (a multiple of 64: no padding in bit planes)
P_MIN = 1e-4


class RecordingTransport:
    """Wraps a transport and keeps every array received (the party's view)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.index = inner.index
        self.received: list[tuple[int, np.ndarray]] = []

    @property
    def bytes_sent(self) -> int:
        return self.inner.bytes_sent

    @property
    def messages_sent(self) -> int:
        return self.inner.messages_sent

    def send(self, to, array) -> None:
        self.inner.send(to, array)

    def recv(self, frm, *, timeout=None):
        arr = self.inner.recv(frm, timeout=timeout)
        self.received.append((frm, arr.copy()))
        return arr

    def close(self) -> None:
        self.inner.close()


def view_of(observer: int, program, secret: np.ndarray, *, seed: int) -> list[np.ndarray]:
    """Messages party ``observer`` receives while running ``program(party, share)`` (after set-up)."""
    pairs = share_array(secret, rng=np.random.default_rng(seed))
    views: dict[int, list] = {}

    def body(i, t):
        rec = RecordingTransport(t)
        p = Party.setup(i, rec, seed=seed)
        rec.received.clear()
        program(p, pairs[i])
        views[i] = [a for _, a in rec.received]

    run_parties(body, network=InProcessNetwork(timeout=20))
    return views[observer]


def byte_hist(msgs: list[np.ndarray]) -> np.ndarray:
    data = np.concatenate([np.ascontiguousarray(m).view(np.uint8).ravel() for m in msgs])
    return np.bincount(data, minlength=256)


def assert_uniform_and_indistinguishable(v1: list[np.ndarray], v2: list[np.ndarray]) -> None:
    assert [m.shape for m in v1] == [m.shape for m in v2]  # same message pattern
    h1, h2 = byte_hist(v1), byte_hist(v2)
    assert stats.chisquare(h1).pvalue > P_MIN
    assert stats.chisquare(h2).pvalue > P_MIN
    assert stats.chi2_contingency(np.stack([h1, h2])).pvalue > P_MIN
    # top bits as reals in [0, 1): Kolmogorov-Smirnov against uniform
    for v in (v1, v2):
        words = np.concatenate([m.ravel() for m in v if m.dtype == np.uint64])
        assert stats.kstest(words.astype(np.float64) / 2.0**64, "uniform").pvalue > P_MIN


SECRETS = (np.full(N, 3, dtype=np.int64), np.full(N, -(2**40) - 17, dtype=np.int64))


@pytest.mark.parametrize("observer", [0, 1, 2])
def test_mul_view(observer):
    def prog(p, x):
        p.mul(x, x)

    v1 = view_of(observer, prog, SECRETS[0], seed=1)
    v2 = view_of(observer, prog, SECRETS[1], seed=2)
    assert len(v1) == 1 and v1[0].size == N  # one message of 8 bytes per element
    assert_uniform_and_indistinguishable(v1, v2)


def test_truncate_view():
    def prog(p, x):
        p.truncate(p.mul(x, x), 16)

    for observer in (0, 1, 2):
        v1 = view_of(observer, prog, SECRETS[0], seed=3)
        v2 = view_of(observer, prog, SECRETS[1], seed=4)
        assert_uniform_and_indistinguishable(v1, v2)


def test_reveal_to_other_party_sees_nothing():
    def prog(p, x):
        p.reveal_to(x, 2)

    assert view_of(0, prog, SECRETS[0], seed=5) == []
    assert view_of(1, prog, SECRETS[0], seed=5) == []
    assert len(view_of(2, prog, SECRETS[0], seed=5)) == 1


@pytest.mark.parametrize("bits", [64, 41])
def test_comparison_view(bits):
    def prog(p, x):
        ltz(p, x, bits=bits)

    # a negative and a positive secret: the output bit differs, the view must not
    v1 = view_of(1, prog, SECRETS[1], seed=6)
    v2 = view_of(1, prog, -SECRETS[0], seed=7)
    v3 = view_of(1, prog, SECRETS[0], seed=8)
    assert_uniform_and_indistinguishable(v1, v2)
    assert_uniform_and_indistinguishable(v1, v3)


def test_shuffle_view():
    ordered = np.arange(N, dtype=np.int64)
    constant = np.zeros(N, dtype=np.int64)

    def prog(p, x):
        shuffle(p, [x])

    for observer in (0, 1, 2):
        v1 = view_of(observer, prog, ordered, seed=9)
        v2 = view_of(observer, prog, constant, seed=10)
        assert len(v1) == 2  # each party is in two of the three passes
        assert_uniform_and_indistinguishable(v1, v2)


def test_shares_alone_are_uniform():
    pairs1 = share_array(SECRETS[0], rng=np.random.default_rng(11))
    pairs2 = share_array(SECRETS[1], rng=np.random.default_rng(12))
    for i in range(3):
        assert_uniform_and_indistinguishable([pairs1[i].a, pairs1[i].b], [pairs2[i].a, pairs2[i].b])


def test_statistic_has_power():
    """The same test rejects a message that lacks its PRF mask (the cross terms alone)."""
    pairs = share_array(SECRETS[0], rng=np.random.default_rng(13))
    x = pairs[0]
    unmasked = x.a * (x.a + x.b) + x.b * x.a
    with pytest.raises(AssertionError):
        assert stats.chisquare(byte_hist([unmasked])).pvalue > P_MIN
