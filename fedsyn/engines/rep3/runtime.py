"""One computing server's runtime: correlated randomness and the basic protocols.

Security model: three parties, at most one passively corrupted (honest
majority, semi-honest), replicated secret sharing over Z_2^64 (Araki, Furukawa,
Lindell, Nof, Ohara, CCS 2016). A corrupted party sees its own pairs of shares
and the messages it receives; every protocol here keeps that view independent
of the secrets, except for the values a primitive explicitly reveals (stated in
its docstring). Nothing here protects against a party that deviates from the
protocol (use the MP-SPDZ active engine for that).

Correlated randomness: at set-up party ``i`` draws a fresh AES key ``k_i`` and
sends it to party ``i+1``, so party ``i`` holds ``k_i`` ("own") and ``k_{i-1}``
("prev"). Key ``k_j`` is thus known to exactly parties ``j`` and ``j+1`` -- the two
holders of share ``s_j``. This gives, without communication, random sharings
(``s_j = F(k_j)``) and zero-sharings (``alpha_i = F(k_i) - F(k_{i-1})``, which sum
to zero). The two holders of a key stay in step because all parties run the same
sequence of primitives on the same shapes.

Message direction: unless stated otherwise, party ``i`` sends to ``i+1`` and
receives from ``i-1``; one such exchange is one round.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from ...errors import ProtocolError
from .prf import KEY_BYTES, PRF, derive_key, new_key
from .sharing import AShare, BShare
from .transport import Transport

__all__ = ["Party", "PartyStats", "PhaseStats"]

logger = logging.getLogger(__name__)

_U64 = np.uint64


@dataclass
class PhaseStats:
    """Cost of one named phase (accumulated over all its ``with`` blocks)."""

    seconds: float = 0.0
    bytes_sent: int = 0
    rounds: int = 0
    messages: int = 0


@dataclass
class PartyStats:
    """Communication counters of one party.

    ``rounds`` counts protocol rounds (sequential message exchanges), the same
    number on all three parties even when a party sends nothing in a round.
    """

    rounds: int = 0
    phases: dict[str, PhaseStats] = field(default_factory=dict)
    _transport: Transport | None = field(default=None, repr=False)

    @property
    def bytes_sent(self) -> int:
        return 0 if self._transport is None else int(self._transport.bytes_sent)

    @property
    def messages_sent(self) -> int:
        return 0 if self._transport is None else int(self._transport.messages_sent)

    def as_dict(self) -> dict:
        return {
            "bytes_sent": self.bytes_sent,
            "messages_sent": self.messages_sent,
            "rounds": self.rounds,
            "phases": {k: vars(v).copy() for k, v in self.phases.items()},
        }


class Party:
    """One of the three computing parties of the replicated scheme.

    Create with :meth:`setup`. All primitives are vectorized over arbitrary
    shapes and must be called by the three parties in the same order with the
    same shapes and public arguments.

    Attributes
    ----------
    index : int
        0, 1 or 2.
    transport : Transport
        Channels to the two other parties.
    stats : PartyStats
        Bytes, rounds and per-phase costs.
    compare_chunk : int
        Elements per comparison run (default 65536; cache efficiency versus
        rounds, see :func:`fedsyn.engines.rep3.compare.ltz`).
    """

    compare_chunk: int = 1 << 16

    def __init__(self, index: int, transport: Transport, own_key: bytes, prev_key: bytes) -> None:
        if index not in (0, 1, 2):
            raise ValueError(f"Party index must be 0, 1 or 2, got {index}.")
        self.index = index
        self.transport = transport
        self.prf_own = PRF(own_key)  # k_i, shared with party i+1
        self.prf_prev = PRF(prev_key)  # k_{i-1}, shared with party i-1
        self.stats = PartyStats(_transport=transport)
        self.next = (index + 1) % 3
        self.prev = (index - 1) % 3

    # ------------------------------------------------------------------ set-up
    @classmethod
    def setup(cls, index: int, transport: Transport, *, seed: int | None = None) -> "Party":
        """Exchange PRF keys with the neighbours (one message of 16 bytes).

        Parameters
        ----------
        index : int
            This party's index.
        transport : Transport
            Its channels.
        seed : int or None, default None
            Derive the keys from this seed (reproducible tests ONLY). By default
            each key is fresh from ``secrets.token_bytes``.
        """
        if getattr(transport, "index", index) != index:
            raise ProtocolError(f"Transport belongs to party {transport.index}, not party {index}.")
        own = new_key() if seed is None else derive_key(seed, "party-key", index)
        transport.send((index + 1) % 3, np.frombuffer(own, dtype=np.uint8))
        got = transport.recv((index - 1) % 3)
        if not (isinstance(got, np.ndarray) and got.dtype == np.uint8 and got.shape == (KEY_BYTES,)):
            raise ProtocolError(f"Party {index}: malformed PRF key from party {(index - 1) % 3}.")
        prev = got.tobytes()
        party = cls(index, transport, own, prev)
        party.stats.rounds += 1
        return party

    def prf_for_key(self, j: int) -> PRF:
        """The PRF of key ``k_j`` (held by parties ``j`` and ``j+1``)."""
        j %= 3
        if j == self.index:
            return self.prf_own
        if j == self.prev:
            return self.prf_prev
        raise ProtocolError(f"Party {self.index} does not hold key k_{j}.")

    # ---------------------------------------------------------------- phases
    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[PhaseStats]:
        """Record seconds, bytes, messages and rounds spent inside the block under ``name``."""
        ps = self.stats.phases.setdefault(name, PhaseStats())
        t0, b0, r0, m0 = time.perf_counter(), self.stats.bytes_sent, self.stats.rounds, self.stats.messages_sent
        try:
            yield ps
        finally:
            ps.seconds += time.perf_counter() - t0
            ps.bytes_sent += self.stats.bytes_sent - b0
            ps.rounds += self.stats.rounds - r0
            ps.messages += self.stats.messages_sent - m0

    # ---------------------------------------------------------- communication
    def count_round(self, k: int = 1) -> None:
        """Count ``k`` protocol rounds (for rounds in which this party sends nothing)."""
        self.stats.rounds += k

    def exchange(self, arrays: Sequence[np.ndarray], *, to: int | None = None, frm: int | None = None) -> list[np.ndarray]:
        """Send uint64 arrays (as one message) to ``to`` and receive same-shaped ones from ``frm``.

        Defaults: send to ``i+1``, receive from ``i-1``. Counts one round.
        """
        to = self.next if to is None else to
        frm = self.prev if frm is None else frm
        arrays = [np.asarray(x, dtype=np.uint64) for x in arrays]
        self.send_to(to, arrays)
        got = self.transport.recv(frm)
        self.stats.rounds += 1
        return self._split(got, [x.shape for x in arrays], frm)

    def _split(self, got: np.ndarray, shapes, frm: int) -> list[np.ndarray]:
        total = sum(int(np.prod(s, dtype=np.int64)) for s in shapes)
        if got.dtype != np.uint64 or got.ndim != 1 or got.size != total:
            raise ProtocolError(
                f"Party {self.index}: malformed message from party {frm} "
                f"(expected {total} uint64 words, got {got.size} {got.dtype})."
            )
        out, pos = [], 0
        for s in shapes:
            k = int(np.prod(s, dtype=np.int64))
            out.append(got[pos : pos + k].reshape(s))
            pos += k
        return out

    def send_to(self, to: int, arrays: Sequence[np.ndarray]) -> None:
        """Send uint64 arrays as ONE flat message to ``to`` (no round counted)."""
        arrays = [np.asarray(x, dtype=np.uint64) for x in arrays]
        if len(arrays) == 1:
            flat = arrays[0].ravel()
        else:
            flat = np.concatenate([x.ravel() for x in arrays]) if arrays else np.zeros(0, np.uint64)
        self.transport.send(to, flat)

    def recv_from(self, frm: int, shapes) -> list[np.ndarray]:
        return self._split(self.transport.recv(frm), shapes, frm)

    # ---------------------------------------------------------- randomness
    def zero_ring(self, shape) -> np.ndarray:
        """This party's term ``alpha_i`` of a fresh 3-out-of-3 sharing of zero (no communication)."""
        return self.prf_own.ring(shape) - self.prf_prev.ring(shape)

    def zero_words(self, shape) -> np.ndarray:
        """XOR analogue of :meth:`zero_ring`."""
        return self.prf_own.ring(shape) ^ self.prf_prev.ring(shape)

    def random_ring(self, shape) -> AShare:
        """Uniform secret in Z_2^64 unknown to every party.

        Protocol: ``s_j = F(k_j)`` (Araki et al. 2016, Sec. 2.2). Rounds 0, bytes 0.
        Each party knows two of the three summands; the third is uniform to it.
        """
        return AShare(self.prf_own.ring(shape), self.prf_prev.ring(shape))

    def random_words(self, shape) -> BShare:
        """Uniform XOR-shared 64-bit words (``x_j = F(k_j)``). Rounds 0, bytes 0."""
        return BShare(self.prf_own.ring(shape), self.prf_prev.ring(shape))

    def pair_components(self, a: np.ndarray, b: np.ndarray) -> tuple[AShare, AShare, AShare]:
        """Arithmetic sharings ``[v_0], [v_1], [v_2]`` of the three components of a pair.

        If ``v_j`` is known to parties ``j`` and ``j+1`` (this party holds ``a = v_i``
        and ``b = v_{i-1}``), ``[v_j]`` with ``s_j = v_j`` and other shares zero is
        a valid replicated sharing obtained locally.
        """
        z = np.zeros(np.shape(a), dtype=np.uint64)
        out: list[AShare | None] = [None, None, None]
        out[self.index] = AShare(np.asarray(a, dtype=np.uint64), z)
        out[self.prev] = AShare(z, np.asarray(b, dtype=np.uint64))
        out[self.next] = AShare(z, z)
        return tuple(out)  # type: ignore[return-value]

    # --------------------------------------------------------- multiplication
    def mul_local(self, x: AShare, y: AShare) -> np.ndarray:
        """``z_i = a_x a_y + a_x b_y + b_x a_y + alpha_i``: a 3-out-of-3 sharing of ``x*y``."""
        shape = np.broadcast_shapes(x.shape, y.shape)
        z = self.prf_own.ring(shape)
        z -= self.prf_prev.ring(shape)
        z += x.a * (y.a + y.b)
        z += x.b * y.a
        return z

    def reshare(self, z: np.ndarray) -> AShare:
        """Turn 3-out-of-3 terms into a replicated sharing: send ``z_i`` to ``i+1`` (1 round)."""
        (got,) = self.exchange([z])
        return AShare(np.asarray(z, dtype=np.uint64), got)

    def mul(self, x: AShare, y: AShare) -> AShare:
        """Elementwise product (broadcasting).

        Protocol: Araki et al. CCS 2016, Sec. 2.3 (passive). Rounds 1; bytes per
        element per party 8. Party ``i`` receives ``z_{i-1}``, masked by
        ``F(k_{i-1}) - F(k_{i+1})`` whose second key it lacks: uniform.
        Reveals nothing.
        """
        return self.reshare(self.mul_local(x, y))

    def matmul(self, x: AShare, y: AShare) -> AShare:
        """Matrix product ``(m, n) @ (n, k)`` with one reshare of the ``m*k`` result.

        Local cross terms ``a_x (a_y + b_y) + b_x a_y`` then one reshare
        (Araki et al. 2016; as in ABY3's dot products). Rounds 1; bytes 8 per
        OUTPUT element per party. Each party sees one uniformly masked reshare
        (as in :meth:`mul`). Reveals nothing.
        """
        if x.ndim == 2 and y.ndim == 2:  # one product of twice the inner size (BLAS for large ones)
            z = ring_matmul(np.concatenate([x.a, x.b], axis=-1), np.concatenate([y.a + y.b, y.a], axis=-2))
        else:  # batched: numpy's integer matmul takes strided operands as they are, no concatenated copies
            z = np.matmul(x.a, y.a + y.b)
            z += np.matmul(x.b, y.a)
        return self.reshare(z + self.zero_ring(z.shape))

    def dot(self, x: AShare, y: AShare, axis: int = -1) -> AShare:
        """``sum(x * y, axis)`` with one reshare of the reduced result.

        Local cross terms summed over ``axis``, then one reshare (Araki et al.
        2016; ABY3 dot product). Rounds 1; 8 bytes per OUTPUT element per party.
        Each party sees one uniformly masked reshare. Reveals nothing.
        """
        z = (x.a * (y.a + y.b) + x.b * y.a).sum(axis=axis, dtype=np.uint64)
        z = np.asarray(z, dtype=np.uint64)
        return self.reshare(z + self.zero_ring(z.shape))

    def and_local(self, x: BShare, y: BShare) -> np.ndarray:
        """Boolean analogue of :meth:`mul_local` on 64-bit words."""
        shape = np.broadcast_shapes(x.shape, y.shape)
        return (x.a & (y.a ^ y.b)) ^ (x.b & y.a) ^ self.zero_words(shape)

    def and_(self, x: BShare, y: BShare) -> BShare:
        """Bitwise AND of XOR-shared words.

        Boolean version of :meth:`mul` (Araki et al. 2016) with an XOR
        zero-sharing from the PRF keys. Rounds 1; 8 bytes per word (64 bits) per
        party. Each party sees a uniformly masked reshare. Reveals nothing.
        """
        (got,) = self.exchange([z := self.and_local(x, y)])
        return BShare(z, got)

    # ---------------------------------------------------------------- opening
    def reveal(self, x: AShare) -> np.ndarray:
        """Open ``x`` to all three parties.

        Party ``i`` sends ``b = s_{i-1}`` to ``i+1``, which lacks exactly that share.
        Rounds 1; 8 bytes per element per party. Reveals ``x`` to everybody.
        """
        (got,) = self.exchange([x.b])
        return x.a + x.b + got

    def reveal_bits(self, x: BShare) -> np.ndarray:
        """Open XOR-shared words to all three parties (1 round, 8 bytes per word)."""
        (got,) = self.exchange([x.b])
        return x.a ^ x.b ^ got

    def reveal_to(self, x: AShare, target: int) -> np.ndarray | None:
        """Open ``x`` to party ``target`` only; the others get ``None``.

        Party ``target - 1`` sends its ``b = s_{target+1}`` to ``target``.
        Rounds 1; 8 bytes per element from one party, 0 from the others. Only
        ``target`` learns ``x``; the others receive nothing.
        """
        if target not in (0, 1, 2):
            raise ValueError(f"target must be 0, 1 or 2, got {target}.")
        self.count_round()
        if self.index == (target - 1) % 3:
            self.send_to(target, [x.b])
            return None
        if self.index == target:
            (got,) = self.recv_from((target - 1) % 3, [x.shape])
            return x.a + x.b + got
        return None

    def input_from_public(self, x) -> AShare:
        """The trivial sharing of a public integer array (no communication)."""
        return AShare.from_public(x, self.index)

    def add_public(self, x: AShare, c) -> AShare:
        return x.add_public(c, self.index)

    def rerandomize(self, x: AShare) -> AShare:
        """Fresh replicated sharing of the same secret (reshare ``s_i + alpha_i``).

        Rounds 1; 8 bytes per element per party; party ``i`` receives a uniformly
        masked share. Reveals nothing.
        """
        return self.reshare(x.a + self.zero_ring(x.shape))

    # ------------------------------------------------------------ truncation
    def truncate(self, x: AShare, f: int) -> AShare:
        """Probabilistic truncation: ``x / 2^f`` for two's-complement ``x``.

        Protocol: ABY3 ``Pi_trunc1`` (Mohassel & Rindal, CCS 2018, Sec. 5.1.1),
        built on SecureML's two-party share truncation (Mohassel & Zhang 2017,
        Thm. 1). The sharing is seen as 2-out-of-2 between ``s0`` (held by
        parties 0, 1) and ``s1 + s2`` (held by party 2). Parties 0 and 1 compute
        ``s0' = s0 >> f`` (logical); party 2 computes
        ``s2' = -((-(s1 + s2)) >> f) - r`` with ``r = s1' = F(k_1)`` known to
        parties 1 and 2, and sends ``s2'`` to party 0.

        Rounds 1; 8 bytes per element from party 2, 0 from parties 0 and 1.
        Party 0 receives ``s2'``, masked by ``r`` it does not know; parties 1 and
        2 receive nothing. Reveals nothing itself, but the rounding error (the
        ``+1``) is a carry that depends on ``x`` and the shares, so OPENING a
        value truncated this way leaks a little about its low bits: Protocol 1
        uses :meth:`truncate_exact` only.

        Error: the result is ``floor(x / 2^f)`` or ``floor(x / 2^f) + 1`` (at most
        1 ulp), except with probability at most ``2^(l_x + 1 - 64)`` when
        ``|x| < 2^l_x`` and ``s0`` is uniform (e.g. ``2^-7`` for ``|x| < 2^56``,
        ``2^-23`` for ``|x| < 2^40``), in which case the result is garbage.
        The bound assumes ``s0`` uniform, true for outputs of :meth:`mul`,
        :meth:`matmul`, :meth:`dot`, shuffles and holders' shares; a trivially
        shared value (:meth:`input_from_public`) must first be
        :meth:`rerandomize`-d (or truncated in the clear). Use
        :meth:`truncate_exact` where no failure is acceptable.
        """
        if not 0 <= f < 64:
            raise ValueError(f"Truncation by {f} bits is out of range 0..63.")
        if f == 0:
            return x.copy()
        fs = _U64(f)
        i = self.index
        self.count_round()
        if i == 0:
            s0 = x.a >> fs
            (s2,) = self.recv_from(2, [x.shape])
            return AShare(s0, s2)
        if i == 1:
            r = self.prf_own.ring(x.shape)
            return AShare(r, x.b >> fs)
        r = self.prf_prev.ring(x.shape)
        s2 = np.negative(np.negative(x.a + x.b) >> fs) - r
        self.send_to(0, [s2])
        return AShare(s2, r)

    def truncate_exact(self, x: AShare, f: int) -> AShare:
        """Exact ``floor(x / 2^f)`` for two's-complement ``|x| < 2^62``, no failure event.

        Protocol (masked opening with wrap correction, in the spirit of the
        exact truncation of Escudero et al., CRYPTO 2020, adapted to replicated
        sharing): ``x' = x + 2^62 >= 0``; a uniform mask ``r = H 2^f + L`` with
        ``H = h0 + h1 + h2``, ``h_j`` uniform in ``[0, 2^(64-f))`` and
        ``L = l0 + l1 + l2``, ``l_j`` uniform in ``[0, 2^f)``, each from key ``k_j``
        (free); open ``c = x' + r`` (uniform: every party misses one ``h_j`` and one
        ``l_j``). With ``c = c_h 2^f + c_l``, ``u = c_h - H`` and ``D = c_l - L``::

            floor(x'/2^f) = u + e + w 2^(64-f),  e = -sum_k [D < -k 2^f],  w = sum_k [u < -k 2^(64-f)]

        for ``k = 0, 1, 2``: six comparisons batched in one call.

        Rounds 1 + 9; bytes per element per party about 8 + 6 x (comparison of
        ``max(f + 3, 67 - f)`` bits), ~250 for ``f = 16``. Each party sees the
        uniform ``c`` and the comparisons' uniform messages. Reveals nothing.
        Requires ``3 <= f <= 60``.
        """
        if not 3 <= f <= 60:
            raise ValueError(f"Exact truncation needs 3 <= f <= 60, got {f}.")
        from .compare import ltz

        big = 64 - f
        mh = _U64((1 << big) - 1)
        ml = _U64((1 << f) - 1)
        h = AShare(self.prf_own.ring(x.shape) & mh, self.prf_prev.ring(x.shape) & mh)
        lo = AShare(self.prf_own.ring(x.shape) & ml, self.prf_prev.ring(x.shape) & ml)
        H = sum(self.pair_components(h.a, h.b), AShare.zeros(x.shape))
        L = sum(self.pair_components(lo.a, lo.b), AShare.zeros(x.shape))
        xp = x.add_public(1 << 62, self.index)
        c = self.reveal(xp + (H << f) + L)
        c_h, c_l = c >> _U64(f), c & ml
        u = (-H).add_public(c_h, self.index)
        D = (-L).add_public(c_l, self.index)
        tests = [D.add_public(k << f, self.index) for k in range(3)]
        tests += [u.add_public(k << big, self.index) for k in range(3)]
        lt = ltz(self, _concat_leading(tests), bits=max(f + 3, big + 3))
        e = -(lt[0] + lt[1] + lt[2])
        w = lt[3] + lt[4] + lt[5]
        y = u + e + w * (1 << big)
        return y.sub_public(1 << (62 - f), self.index)

    # ------------------------------------------------------ random bits
    def dabit_steps(self, shape):
        """Generator protocol for random bits shared both ways (daBits).

        Yields 3-out-of-3 terms to be reshared (twice) and receives the
        partner terms via ``send``; returns ``(bool_words, AShare)`` where
        ``bool_words`` is a BShare of the bits packed 64 per word (the last
        axis of ``shape`` flattened, see :func:`fedsyn.engines.rep3.compare.pack`).

        Used by :meth:`random_bits` and, piggybacked on other rounds, by the
        comparison. The bit is ``r = r_0 ^ r_1 ^ r_2`` with ``r_j`` from ``k_j``;
        arithmetic ``[r] = [r_0 ^ r_1 ^ r_2]`` by two products
        (``u ^ v = u + v - 2uv``). Rounds 2; 16 bytes per bit per party.
        """
        n = int(np.prod(shape, dtype=np.int64))
        m = -(-n // 64)
        own = self.prf_own.ring(m)
        prev = self.prf_prev.ring(m)
        a_bits = _unpack_bits(own, n).reshape(shape)
        b_bits = _unpack_bits(prev, n).reshape(shape)
        r0, r1, r2 = self.pair_components(a_bits, b_bits)
        z = self.mul_local(r0, r1)
        got = yield z
        t = r0 + r1 - AShare(z, got) * 2
        z = self.mul_local(t, r2)
        got = yield z
        r = t + r2 - AShare(z, got) * 2
        return BShare(own, prev), r

    def _run_steps(self, gen):
        """Drive a ``*_steps`` generator alone, one round per yielded term."""
        try:
            z = next(gen)
            while True:
                (got,) = self.exchange([z])
                z = gen.send(got)
        except StopIteration as stop:
            return stop.value

    def random_bits(self, shape) -> AShare:
        """Uniform secret bits in {0, 1}, unknown to every party.

        XOR of three PRF bits (one per key, each known to two parties),
        converted to arithmetic shares by two multiplications. Rounds 2; 16
        bytes per bit per party. Reveals nothing.
        """
        _, r = self._run_steps(self.dabit_steps(_shape(shape)))
        return r

    def random_uniform_bits(self, shape, nbits: int) -> AShare:
        """Uniform secret integers in ``[0, 2^nbits)``.

        ``v = (v_0 + v_1 + v_2) mod 2^nbits`` with ``v_j`` uniform in
        ``[0, 2^nbits)`` from key ``k_j``: uniform, and unknown to each party
        (each misses one ``v_j``). The reduction subtracts ``2^nbits`` times
        ``[v_0+v_1+v_2 >= 2^nbits] + [... >= 2^(nbits+1)]``, two comparisons of
        ``nbits + 3`` bits batched together. Rounds: one comparison's; bytes about
        two ``(nbits+3)``-bit comparisons. ``nbits = 64`` is :meth:`random_ring`
        (free). Reveals nothing.
        """
        if nbits == 64:
            return self.random_ring(shape)
        if not 1 <= nbits <= 60:
            raise ValueError(f"nbits must be in 1..60 or 64, got {nbits}.")
        from .compare import ltz

        mask = _U64((1 << nbits) - 1)
        v = AShare(self.prf_own.ring(shape) & mask, self.prf_prev.ring(shape) & mask)
        total = sum(self.pair_components(v.a, v.b), AShare.zeros(v.shape))
        both = _concat_leading(
            [total.sub_public(1 << nbits, self.index), total.sub_public(1 << (nbits + 1), self.index)]
        )
        below = ltz(self, both, bits=nbits + 3)
        wraps = (below[0] + below[1]).rsub_public(2, self.index)
        return total - wraps * (1 << nbits)


#: Below this many multiply-adds :func:`ring_matmul` uses numpy's integer matmul directly.
_BLAS_MIN_WORK = 1 << 27
#: ... and when both output sides have at least this many entries: the limb conversion costs O(m k + k n),
#: which a thin product (e.g. 3 d x n times n x 5 labels: 2.3 s on BLAS, 0.13 s in numpy) never earns back.
_BLAS_MIN_SIDE = 32
#: 16-bit limbs: a product of two limbs is below 2^32, so an inner dimension below 2^21 keeps every
#: float64 dot product exact (< 2^53).
_LIMB_BITS = 16
_MAX_BLAS_INNER = 1 << 20


def ring_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` over Z_2^64 for uint64 matrices, on float64 BLAS when it is large.

    numpy's integer matmul has no BLAS and runs ~50x slower than float64 on
    large products (thin ones, below :data:`_BLAS_MIN_SIDE` rows or columns,
    stay on numpy: the conversion would dominate). Each
    operand is split into four 16-bit limbs, ``a = sum_i a_i 2^(16 i)``; the
    product mod 2^64 is ``sum_{i + j <= 3} (a_i @ b_j) 2^(16 (i + j))``: ten
    float64 products, each exact (entries below ``2^32 K < 2^53`` for an inner
    dimension ``K < 2^21``), converted back to uint64 and combined with
    wrap-around. Bit-identical to ``np.matmul`` on uint64 (tested).
    """
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        return np.matmul(a, b)
    m, k = a.shape
    n = b.shape[1]
    if m * k * n < _BLAS_MIN_WORK or k > _MAX_BLAS_INNER or min(m, n) < _BLAS_MIN_SIDE:
        return np.matmul(a, b)
    mask = np.uint64((1 << _LIMB_BITS) - 1)
    la = [((a >> np.uint64(_LIMB_BITS * i)) & mask).astype(np.float64) for i in range(4)]
    lb = [((b >> np.uint64(_LIMB_BITS * j)) & mask).astype(np.float64) for j in range(4)]
    out = np.zeros((m, n), dtype=np.uint64)
    for i in range(4):
        for j in range(4 - i):
            out += np.rint(la[i] @ lb[j]).astype(np.uint64) << np.uint64(_LIMB_BITS * (i + j))
    return out


def _shape(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(s) for s in shape)


def _unpack_bits(words: np.ndarray, n: int) -> np.ndarray:
    """Bits ``0..n-1`` of packed little-endian words as uint64 0/1 values."""
    words = np.ascontiguousarray(words, dtype=np.uint64)
    return np.unpackbits(words.view(np.uint8), bitorder="little")[:n].astype(np.uint64)


def _concat_leading(shares: list[AShare]) -> AShare:
    return AShare(np.stack([s.a for s in shares]), np.stack([s.b for s in shares]))
