"""Secure shuffle of replicated sharings by three reshare-permute passes.

Protocol (the resharing-based 3PC shuffle of Laur, Willemson & Zhang 2011, as
used for replicated sharing by Araki et al. 2021, "Secure graph analysis at
scale", and Mohassel, Rindal & Rosulek 2020): for ``p = 0, 1, 2`` the pair
``(p, p+1)``, which shares key ``k_p``, applies a permutation ``pi_p`` derived
from ``k_p`` (argsort of AES-CTR output):

* The pair holds a 2-out-of-2 sharing without talking: party ``p`` has
  ``y_A = s_p + s_{p-1}``, party ``p+1`` has ``y_B = s_{p+1}``. Both permute.
* The new shares ``t_{p+1} = F(k_{p+1})`` and ``t_{p+2} = F(k_{p+2})`` are random
  and known to the third party ``p+2`` (each also to one member of the pair).
* Party ``p`` sends ``pi(y_A) - t_{p+2}`` to ``p+1``; party ``p+1`` sends
  ``pi(y_B) - t_{p+1}`` to ``p``; both set ``t_p`` to the sum of the two
  messages. Each message is masked by a share the receiver does not know.

The composition ``pi_2 o pi_1 o pi_0`` is uniform to every single party, since
each party misses one of the three passes; the output sharing is fresh.

Cost: 3 rounds; 16 bytes per element per party (a party is in two passes,
sending 8 bytes per element in each). Each party sees: uniformly masked
messages. Reveals nothing (the permutation stays secret).
"""

from __future__ import annotations

import numpy as np

from .runtime import Party
from .sharing import AShare

__all__ = ["shuffle"]


def _permutation(party: Party, key_index: int, n: int, rows: int | None) -> np.ndarray:
    """The pair's permutation(s) of ``n`` positions: shape ``(n,)``, or ``(rows, n)`` (one per row)."""
    keys = party.prf_for_key(key_index).ring((n,) if rows is None else (rows, n))
    # With distinct keys every sorting algorithm gives the same permutation, so the
    # fast (platform-dispatched) introsort is safe; on a tie (probability about
    # n^2 / 2^65) both holders see the same keys and fall back to the stable sort.
    # The shuffled axis is the last one, so every sort and gather runs on contiguous rows.
    perm = np.argsort(keys, axis=-1)
    ordered = np.take_along_axis(keys, perm, axis=-1)
    if n > 1 and np.any(ordered[..., 1:] == ordered[..., :-1]):
        perm = np.argsort(keys, axis=-1, kind="stable")
    return perm


def _apply(perm: np.ndarray, arr: np.ndarray, independent: bool) -> np.ndarray:
    # arr has the shuffled axis last.
    if independent:
        return np.take_along_axis(arr, perm, axis=-1)
    return arr[..., perm]


def shuffle(party: Party, xs: list[AShare], *, axis: int = 0, independent_columns: bool = False) -> list[AShare]:
    """Permute the arrays ``xs`` along ``axis`` by one secret uniform permutation.

    Parameters
    ----------
    party : Party
    xs : list of AShare
        Arrays with the same length along ``axis``; all get the same permutation.
    axis : int, default 0
        The axis permuted.
    independent_columns : bool, default False
        If True, the arrays must be 2-D and every index of the OTHER axis (a
        "column" when ``axis = 0``) gets its own independent permutation, shared
        by all arrays in ``xs``. Needed when elements of different columns are
        later compared, so that no cross-column rank structure leaks.

    Returns
    -------
    list of AShare
        Fresh sharings of the permuted arrays.

    Notes
    -----
    The work is done with the shuffled axis last: arrays already laid out that
    way (e.g. ``(genes, samples)`` shuffled along ``axis=1``) are permuted row by
    row in place of a strided gather.

    Three reshare-permute passes (see the module docstring): rounds 3; bytes
    per element per party 16; each party sees two uniformly masked messages;
    nothing is revealed and no party learns the composed permutation.
    """
    if not xs:
        return []
    # The shuffled axis goes last (a view, no copy, when it already is, e.g. axis=1 of 2-D arrays).
    moved = [x.moveaxis(axis, -1) for x in xs]
    n = moved[0].shape[-1]
    if any(m.shape[-1] != n for m in moved):
        raise ValueError("All arrays to shuffle must have the same length along the shuffled axis.")
    cols = None
    if independent_columns:
        if any(m.ndim != 2 for m in moved) or len({m.shape for m in moved}) != 1:
            raise ValueError("independent_columns needs 2-D arrays of the same shape.")
        cols = moved[0].shape[0]
    shapes = [m.shape for m in moved]
    a = [np.ascontiguousarray(m.a) for m in moved]
    b = [np.ascontiguousarray(m.b) for m in moved]
    i = party.index
    for p in range(3):
        first, second, third = p, (p + 1) % 3, (p + 2) % 3
        party.count_round()
        if i == third:
            # t_{p+2} from own key k_{p+2}; t_{p+1} from prev key k_{p+1}.
            a = [party.prf_own.ring(s) for s in shapes]
            b = [party.prf_prev.ring(s) for s in shapes]
            continue
        perm = _permutation(party, p, n, cols)
        if i == first:
            t_third = [party.prf_prev.ring(s) for s in shapes]  # k_{p-1} = k_{p+2}
            msg = [_apply(perm, x + y, cols is not None) - t for x, y, t in zip(a, b, t_third)]
            party.send_to(second, msg)
            got = party.recv_from(second, shapes)
            a = [u + v for u, v in zip(msg, got)]
            b = t_third
        else:  # second
            t_second = [party.prf_own.ring(s) for s in shapes]  # k_{p+1}
            msg = [_apply(perm, x, cols is not None) - t for x, t in zip(a, t_second)]
            party.send_to(first, msg)
            got = party.recv_from(first, shapes)
            b = [u + v for u, v in zip(msg, got)]
            a = t_second
    return [AShare(x, y).moveaxis(-1, axis) for x, y in zip(a, b)]
