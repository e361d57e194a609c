"""The factor model of co-expression on the embedded engine (:mod:`fedsyn.factor`).

Runs after the profile's bins are known, as two phases around a public step:

phase A (``gram``)
    ``S = 2 (c_1 + c_2 + c_3) - 3`` from the comparison bits (local), the score
    Gram matrix ``G = S_A^T S_A`` of the anchor genes by one matrix product (local cross terms on
    float64 BLAS, :func:`~fedsyn.engines.rep3.runtime.ring_matmul`, one
    reshare of the ``p^2`` result), its ``p (p - 1) / 2`` off-diagonal entries
    plus grid noise (:func:`~fedsyn.engines.rep3.noise.release_on_grid`), then
    ONE opening to the three servers of the noisy Gram entries, label table
    and (gene, label) tables (DP releases; the release server receives the same
    values).
public step (``factor``)
    every server computes :func:`fedsyn.factor.plan_factor`; server 0 sends its
    plan to servers 1 and 2, which check it against their own and adopt it
    (:func:`fedsyn.factor.agree`).
phase B (``factor``)
    found: ``z = S V`` with the public loadings (local), the level bits
    ``[z >= t_j]`` by one batched comparison of ``3 n`` elements
    (:func:`~fedsyn.engines.rep3.compare.ltz`), the (factor, label) table and
    the ``d`` (gene, factor) tables by the products of :mod:`marginals`, grid
    noise; not found: the exact (gene, label) tables plus fresh ``pair`` noise.

Security (passive, one corrupted server): every message is a reshare, a
comparison or the noise protocol, as in Protocol 1; the servers additionally
see the phase-A DP release (the noisy Gram entries, label and (gene, label)
tables) and the public plan computed from it. Nothing else is opened; phase B's
outputs stay shared until the release server opens them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...factor import FactorPlan, agree, anchor_genes, plan_factor, upper_index
from ...params import ProtocolParams
from . import noise
from .compare import ltz
from .marginals import marginals
from .runtime import Party
from .sharing import AShare, concatenate, stack, to_u64

__all__ = ["FactorShares", "run_factor"]


@dataclass
class FactorShares:
    """One server's part of the factor model's release.

    Attributes
    ----------
    gram : ndarray of int64, shape (p (p - 1) / 2,)
        The noisy Gram entries of the ``p`` anchor genes, opened (public).
    plan : FactorPlan
        The agreed public plan.
    outputs : dict of str to AShare
        Phase B's secret-shared noisy tables (``factor_label`` and
        ``gene_factor``, or ``two_way_again``).
    """

    gram: np.ndarray
    plan: FactorPlan
    outputs: dict[str, AShare]


def run_factor(
    party: Party,
    bits: AShare,
    labels: AShare,
    *,
    label_noisy: AShare,
    two_way_noisy: AShare,
    two_way_exact: AShare,
    params: ProtocolParams,
) -> FactorShares:
    """Both phases of the factor model on this server's shares.

    Parameters
    ----------
    party : Party
    bits : AShare, shape (3, n, d)
        The profile's comparison bits ``c_j = [x >= T_j]`` of every gene.
    labels : AShare, shape (n, L)
        One-hot labels.
    label_noisy, two_way_noisy : AShare
        The profile's noisy label and (gene, label) tables (phase A's release).
    two_way_exact : AShare, shape (d, 4, L)
        The exact (gene, label) tables (measured again if no factor is found).
    params : ProtocolParams
    """
    i = party.index
    _, n, d = bits.shape
    with party.phase("gram"):
        scores = (bits.sum(axis=0) * 2).sub_public(3, i)  # (n, d), S = 2 b - 3
        anchors = anchor_genes(d, params.factor_anchors)
        sa = scores[:, anchors]
        gram = party.matmul(sa.T, sa)  # (p, p)
        rows, cols = upper_index(anchors.size)
        upper = gram[rows, cols]
        if params.noise:
            (upper,) = noise.release_on_grid(party, [upper], params.gram_sigma)
        # one opening of the whole phase-A release to the servers (DP outputs)
        flat = party.reveal(concatenate([upper, label_noisy.ravel(), two_way_noisy.ravel()], axis=0)).view(np.int64)
    n_up, n_lab = upper.size, label_noisy.size
    gram_open = flat[:n_up].copy()
    label_open, two_way_open = flat[n_up:n_up + n_lab], flat[n_up + n_lab:].reshape(two_way_noisy.shape)
    with party.phase("factor"):
        own = plan_factor(gram_open, two_way_open, label_open, gram_sigma=params.gram_sigma if params.noise else 0.0,
                          table_sigma=params.sigma if params.noise else 0.0, n_anchors=params.factor_anchors)
        plan = agree(own, _plan_of_server0(party, own))
        if plan.found:
            outputs = _factor_tables(party, scores, bits, labels, plan, params)
        else:
            again = two_way_exact
            if params.noise:
                (again,) = noise.release_on_grid(party, [again], params.pair_sigma)
            outputs = {"two_way_again": again}
    return FactorShares(gram=gram_open, plan=plan, outputs=outputs)


def _plan_of_server0(party: Party, own: FactorPlan) -> FactorPlan:
    """Server 0 sends its plan to servers 1 and 2 (public values; one message each)."""
    d = own.loadings_fp.size
    if party.index == 0:
        words = [np.asarray(own.loadings_fp, np.int64).view(np.uint64), np.asarray(own.thresholds_fp, np.int64).view(np.uint64),
                 np.array([int(own.found)], np.uint64), np.array([own.eigenvalue, own.edge], np.float64).view(np.uint64)]
        for j in (1, 2):
            party.send_to(j, words)
        party.count_round()
        return own
    got = party.recv_from(0, [(d,), (3,), (1,), (2,)])
    party.count_round()
    ev, edge = got[3].view(np.float64)
    return FactorPlan(found=bool(got[2][0]), loadings_fp=got[0].view(np.int64).copy(),
                      thresholds_fp=got[1].view(np.int64).copy(), eigenvalue=float(ev), edge=float(edge))


def _factor_tables(party: Party, scores: AShare, bits: AShare, labels: AShare, plan: FactorPlan,
                   params: ProtocolParams) -> dict[str, AShare]:
    """Levels of ``z = S V`` by public thresholds, then the (factor, label) and (gene, factor) tables."""
    i = party.index
    n = scores.shape[0]
    v = to_u64(plan.loadings_fp)
    z = AShare(scores.a @ v, scores.b @ v)  # (n,): public matrix, local
    diffs = stack([z.sub_public(int(t), i) for t in plan.thresholds_fp])  # (3, n)
    level_bits = ltz(party, diffs, bits=plan.compare_bits).rsub_public(1, i)  # [z >= t_j]
    c1, c2, c3 = level_bits[0], level_bits[1], level_bits[2]
    onehot = stack([c1.rsub_public(1, i), c1 - c2, c2 - c3, c3], axis=-1)  # (n, 4)
    factor_label = marginals(party, level_bits.reshape(3, n, 1), labels).two_way[0]  # (4, L)
    gene_factor = marginals(party, bits, onehot).two_way  # (d, 4, 4): rows the gene's bin
    if params.noise:
        (factor_label,) = noise.release_on_grid(party, [factor_label], params.sigma)
        (gene_factor,) = noise.release_on_grid(party, [gene_factor], params.pair_sigma)
    return {"factor_label": factor_label, "gene_factor": gene_factor}
