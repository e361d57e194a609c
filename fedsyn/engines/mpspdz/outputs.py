"""Output shares of ``protocol1.mpc``: what each party writes, and how they are opened.

The program opens nothing. Each party ``i`` writes its replicated pair
``(s_i, s_{i-1})`` of every output (re-randomized with a fresh zero-sharing)
to its own Persistence file, after its input shares, in
:class:`fedsyn.measurements.OutputLayout` order. This module

* reads one party's pairs (:func:`read_party_outputs`),
* packs them as the release delivery of a computing server -- the arrays
  ``<name>.a`` / ``<name>.b`` that :func:`fedsyn.engines.rep3.server.unpack_outputs`
  reads, so that ``fedsyn release`` opens MP-SPDZ and rep3 outputs with the same
  code (:func:`delivery_arrays`), and
* opens three parties' pairs with the replicated consistency check
  (:func:`open_party_outputs`; a local run, where this process holds all three).

One party's pairs are two of three additive shares of each output, jointly
uniform whatever the outputs: alone they reveal nothing. Two parties' pairs
reveal the outputs; the third pair lets the opener check that no party
changed its shares (each ``s_j`` arrives twice and must be identical).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from ...measurements import Fields, OutputLayout
from .persistence import Security, persistence_path, read_output_shares

__all__ = ["output_start", "read_party_outputs", "read_party_fields", "split_pairs", "delivery_arrays", "open_party_outputs"]


def output_start(n: int, d: int, n_labels: int) -> int:
    """Share position of the first output: after the ``n * (d + L)`` input shares."""
    return int(n) * (int(d) + int(n_labels))


def read_party_outputs(
    persistence_dir: str | os.PathLike, party: int, *, n: int, layout: OutputLayout, security: Security
) -> tuple[np.ndarray, np.ndarray]:
    """Party ``party``'s flat ``(s_i, s_{i-1})`` of the outputs, from its Persistence file."""
    return read_output_shares(persistence_path(Path(persistence_dir), party),
                              start=output_start(n, layout.n_genes, layout.n_labels), count=layout.size,
                              security=security)


def read_party_fields(
    persistence_dir: str | os.PathLike, party: int, *, start: int, layout: Fields, security: Security
) -> tuple[np.ndarray, np.ndarray]:
    """Party ``party``'s flat pairs of ``layout`` written at share position ``start`` (the factor model's phase B,
    :func:`fedsyn.engines.mpspdz.engine.factor_fields_at`)."""
    return read_output_shares(persistence_path(Path(persistence_dir), party), start=start, count=layout.size,
                              security=security)


def split_pairs(a: np.ndarray, b: np.ndarray, layout: OutputLayout | Fields) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Cut a flat pair into the named, shaped outputs of ``layout``."""
    sa = layout.split(a.view(np.int64), what="the output shares")
    sb = layout.split(b.view(np.int64), what="the output shares")
    return {k: (np.ascontiguousarray(sa[k]).view(np.uint64), np.ascontiguousarray(sb[k]).view(np.uint64))
            for k in sa}


def delivery_arrays(a: np.ndarray, b: np.ndarray, layout: OutputLayout | Fields) -> dict[str, np.ndarray]:
    """The arrays a computing server sends the release server (``one_way.a``, ``one_way.b``, ...)."""
    out: dict[str, np.ndarray] = {}
    for name, (pa, pb) in split_pairs(a, b, layout).items():
        out[f"{name}.a"] = pa
        out[f"{name}.b"] = pb
    return out


def open_party_outputs(pairs: Mapping[int, tuple[np.ndarray, np.ndarray]], layout: OutputLayout | Fields) -> np.ndarray:
    """Open the flat outputs (int64) from the three parties' pairs, checking their consistency.

    Raises
    ------
    ProtocolError
        A pair is missing, or two parties' copies of a share differ (a party
        changed its shares, or the files are not from the same run).
    """
    from ..rep3.sharing import AShare, reconstruct

    shares = {i: AShare(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)) for i, (a, b) in pairs.items()}
    if sorted(shares) != [0, 1, 2]:
        from ...errors import ProtocolError

        raise ProtocolError(f"Opening the outputs needs the pairs of parties 0, 1, 2, got {sorted(shares)}.")
    flat = reconstruct(shares).view(np.int64)
    if flat.size != layout.size:
        from ...errors import ProtocolError

        raise ProtocolError(f"The output shares hold {flat.size} values, expected {layout.size}.")
    return flat
