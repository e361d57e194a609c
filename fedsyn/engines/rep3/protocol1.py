"""Protocol 1 of the paper on the embedded three-party engine.

One server runs :func:`run_protocol1` on its shares of every holder's input:

``Pi_bin`` (:mod:`~fedsyn.engines.rep3.binning`)
    concatenate the holders, select the quartile order statistics (or sort),
    compare every value with the three thresholds;
``Pi_marg`` (:mod:`~fedsyn.engines.rep3.marginals`)
    gene 1-way, label 1-way and (gene, label) 2-way counts;
bin statistics (phase ``means``)
    bin sums by dot products; in ``paper`` mode exact bin means by secure
    division with the empty-bin rule; in ``dp`` mode the sums themselves;
``Pi_noise`` (:mod:`~fedsyn.engines.rep3.noise`)
    every released count (and, in ``dp`` mode, every bin sum rounded to its
    grid unit) plus rounded Irwin-Hall integer noise (:mod:`fedsyn.noise`),
    then one rerandomization of all outputs (fresh shares for the release server).
factor model (``params.model == "factor"``, :mod:`~fedsyn.engines.rep3.factor_protocol`)
    after the noise: the noisy Gram matrix of the anchor genes' bin scores,
    opened with the noisy tables to the servers, the public factor plan, then
    the (factor, label) and (gene, factor) tables; rerandomized with the rest.

The outputs stay secret-shared; each server sends its pairs of output shares
to the release server only (:func:`fedsyn.engines.rep3.server.run_server`),
which reconstructs them with the consistency check of :func:`open_outputs`.
Semantics are those of :func:`fedsyn.reference.protocol1_outputs`: with
``noise=False`` the opened counts equal ``bin_statistics(...).counts`` and the
means ``bin_statistics(...).means`` bit for bit; with noise, every opened
count is the count plus the same integer function of 12 uniforms.

Security: passive adversary corrupting at most one of the three servers. Each
server sees its own pairs of shares, uniformly masked messages, and the
comparison bits of the selection, which are a function of uniformly random
permutations only (see :mod:`~fedsyn.engines.rep3.binning`). Public: ``n``
(the holders' sample counts), ``d``, ``L`` and the parameters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ...errors import InputError, ProtocolError
from ...fixedpoint import MAX_VALUE_BITS
from ...params import ProtocolParams
from ...reference import label_onehot  # noqa: F401  (re-exported for holders)
from . import binning, edges_protocol, marginals, noise
from .edges_protocol import clip_to_range
from .runtime import Party
from .sharing import AShare, concatenate, reconstruct, share_array
from .transport import InProcessNetwork, run_parties

log = logging.getLogger(__name__)

#: Names of the phases recorded in :attr:`Protocol1Shares.stats`.
PHASES = ("clip", "histogram", "binning", "marginals", "means", "noise", "gram", "factor")

#: Genes are processed in blocks of at most this many samples x genes elements,
#: so that memory stays bounded (a few GB per server at 20,000 genes x 4,323
#: samples) at the price of more rounds. Every gene is binned independently, so
#: blocking changes no output.
GENE_BLOCK_ELEMENTS = 1 << 22


@dataclass
class HolderInput:
    """One holder's input as seen by one server.

    Attributes
    ----------
    values : AShare, shape (n_k, d)
        Fixed-point expression values (``|x| < 2^40``).
    labels : AShare, shape (n_k, L)
        One-hot labels (the holder encodes its integer labels before sharing).
    """

    values: AShare
    labels: AShare


@dataclass
class Protocol1Shares:
    """One server's shares of the outputs of Protocol 1.

    Attributes
    ----------
    party_index : int
    label : AShare, shape (L,)
        ``count + noise`` (integers, :mod:`fedsyn.noise`).
    two_way : AShare, shape (d, 4, L)
    one_way : AShare or None, shape (d, 4)
        ``paper`` only.
    means : AShare or None, shape (d, 4)
        ``paper``: exact fixed-point bin means.
    sums : AShare or None, shape (d, 4)
        ``strict``/``public-edges``: ``round(centred sum / 2^k) + noise`` on each bin's grid.
    histogram : ndarray of int64 or None, shape (d, 2^b)
        ``strict``: the noisy histograms opened (to all servers) in phase 1; public.
    gram : ndarray of int64 or None, shape (p (p - 1) / 2,)
        ``factor`` model: the noisy Gram entries of the ``p`` anchor genes, opened to all servers; public.
    factor : dict or None
        ``factor`` model: the agreed public plan (:meth:`fedsyn.factor.FactorPlan.to_public`).
    factor_label, gene_factor, two_way_again : AShare or None
        ``factor`` model: phase B's noisy tables (:mod:`fedsyn.factor`).
    stats : dict
        Per phase: ``seconds``, ``bytes_sent``, ``rounds``, ``messages``; plus
        ``selection_rounds`` and ``selection_comparisons`` (``paper``).
    """

    party_index: int
    label: AShare
    two_way: AShare
    one_way: AShare | None = None
    means: AShare | None = None
    sums: AShare | None = None
    histogram: np.ndarray | None = None
    gram: np.ndarray | None = None
    factor: dict | None = None
    factor_label: AShare | None = None
    gene_factor: AShare | None = None
    two_way_again: AShare | None = None
    stats: dict = field(default_factory=dict)

    def outputs(self) -> dict[str, AShare]:
        """The secret-shared released arrays by name."""
        out = {"label": self.label, "two_way": self.two_way}
        for name in ("one_way", "means", "sums", "factor_label", "gene_factor", "two_way_again"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


def _check_inputs(inputs: Sequence[HolderInput], params: ProtocolParams) -> tuple[int, int]:
    if not inputs:
        raise InputError("Protocol 1 needs at least one holder's input.")
    d = inputs[0].values.shape[1] if inputs[0].values.ndim == 2 else -1
    for k, h in enumerate(inputs):
        if h.values.ndim != 2 or h.values.shape[1] != d:
            raise InputError(f"Holder {k}: values must have shape (n_k, {d}), got {h.values.shape}.")
        if h.labels.shape != (h.values.shape[0], params.n_labels):
            raise InputError(
                f"Holder {k}: labels must be one-hot of shape ({h.values.shape[0]}, {params.n_labels}), "
                f"got {h.labels.shape}."
            )
    n = sum(h.values.shape[0] for h in inputs)
    if n < 1 or d < 1:
        raise InputError(f"Protocol 1 needs at least one sample and one gene (got n={n}, d={d}).")
    if binning.index_bits(n) + MAX_VALUE_BITS + 2 > 63:
        raise InputError(f"{n} samples are too many for 64-bit keys.")
    return n, d


def run_protocol1(
    party: Party,
    inputs: Sequence[HolderInput],
    params: ProtocolParams,
    *,
    gene_block_elements: int | None = None,
) -> Protocol1Shares:
    """Run Protocol 1 (``Pi_bin``, ``Pi_marg``, bin statistics, ``Pi_noise``) as one server.

    Parameters
    ----------
    party : Party
        This server's runtime (the three servers call this with the same
        public arguments and holder order).
    inputs : sequence of HolderInput
        This server's shares of every holder's input, in the agreed holder order.
    params : ProtocolParams
        Public parameters.
    gene_block_elements : int, optional
        Default :data:`GENE_BLOCK_ELEMENTS` (2^22).
        Genes are binned in blocks of at most ``max(1, this // n)`` genes (public;
        bounds memory; the outputs do not depend on it).

    Returns
    -------
    Protocol1Shares
        Shares of the outputs; nothing has been opened.
    """
    n, d = _check_inputs(inputs, params)
    values: AShare = concatenate([h.values for h in inputs], axis=0)
    labels: AShare = concatenate([h.labels for h in inputs], axis=0)
    limit = GENE_BLOCK_ELEMENTS if gene_block_elements is None else int(gene_block_elements)
    block = max(1, min(d, limit // n))
    blocks = [(g0, min(d, g0 + block)) for g0 in range(0, d, block)]
    if params.value_range is not None:
        with party.phase("clip"):  # block by block: the comparisons' temporaries stay within a gene block
            values = concatenate([clip_to_range(party, values[:, g0:g1], params) for g0, g1 in blocks], axis=1)
    if params.profile == "paper":
        result = _paper(party, values, labels, params, blocks, n)
    else:
        result = _edge_profiles(party, values, labels, params, blocks)
    stats: dict[str, Any] = {k: vars(v).copy() for k, v in party.stats.phases.items() if k in PHASES}
    stats.update(result.pop("extra_stats", {}))
    stats["gene_blocks"] = len(blocks)
    log.debug(
        "party %d: protocol 1 (%s) on n=%d, d=%d done (%s)", party.index, params.profile, n, d,
        ", ".join(f"{k} {stats[k]['seconds']:.2f} s" for k in PHASES if k in stats),
    )
    return Protocol1Shares(party_index=party.index, stats=stats, **result)


def _paper(party: Party, values: AShare, labels: AShare, params: ProtocolParams, blocks, n: int) -> dict:
    """The paper's profile: quartiles by selection or sort, 1-way and 2-way tables, exact bin means."""
    parts: list[tuple] = []
    selection_rounds = selection_comparisons = 0
    for b, (g0, g1) in enumerate(blocks):
        vb = values[:, g0:g1]
        with party.phase("binning"):
            br = binning.bin(party, vb, binning=params.binning)
        with party.phase("marginals"):
            marg = marginals.marginals(party, br.bits, labels)
        with party.phase("means"):
            s = binning.bin_sums(party, br.bits, vb)
        parts.append((marg.counts, marg.two_way, s, marg.label, br.bits if params.model == "factor" else None))
        _log_block(party, "paper", b, blocks)
        selection_rounds += br.selection_rounds
        selection_comparisons += br.selection_comparisons
    one_way = concatenate([p[0] for p in parts], axis=0)
    two_way = concatenate([p[1] for p in parts], axis=0)
    with party.phase("means"):  # one division for every gene: its ~410 rounds are paid once, not per block
        means = binning.bin_means(party, concatenate([p[2] for p in parts], axis=0), one_way, n=n)
    label = parts[0][3]
    two_way_exact = two_way
    with party.phase("noise"):
        if params.noise:
            one_way, label, two_way = noise.release_on_grid(party, [one_way, label, two_way], params.sigma)
    out = _finish(party, {"one_way": one_way, "label": label, "two_way": two_way, "means": means},
                  [p[4] for p in parts], labels, two_way_exact, params)
    out["extra_stats"] = {"selection_rounds": selection_rounds, "selection_comparisons": selection_comparisons}
    return out


def _finish(party: Party, outputs: dict[str, AShare], bits_blocks: list, labels: AShare, two_way_exact: AShare,
            params: ProtocolParams) -> dict:
    """After the profile's noise: the factor model's phases (if any), then ONE rerandomization of every output.

    ``outputs`` holds the profile's noisy outputs by field name; the factor
    model (:mod:`~fedsyn.engines.rep3.factor_protocol`) opens the noisy
    ``label`` and ``two_way`` among the servers, adds its phase-B tables to the
    outputs and its public Gram entries and plan to the returned fields.
    """
    fields: dict = {}
    if params.model == "factor":
        from .factor_protocol import run_factor

        res = run_factor(party, concatenate(bits_blocks, axis=2), labels, label_noisy=outputs["label"],
                         two_way_noisy=outputs["two_way"], two_way_exact=two_way_exact, params=params)
        outputs = {**outputs, **res.outputs}
        fields = {"gram": res.gram, "factor": res.plan.to_public()}
    with party.phase("noise"):
        fresh = _rerandomize_outputs(party, list(outputs.values()))
    return {**dict(zip(outputs, fresh)), **fields}


def _edge_profiles(party: Party, values: AShare, labels: AShare, params: ProtocolParams, blocks) -> dict:
    """``strict`` (DP edges from noisy histograms, opened in phase 1) and ``public-edges``."""
    from ...edges import bin_geometry, edges_from_histogram, public_edges_fp

    hist_open = None
    if params.profile == "strict":
        with party.phase("histogram"):
            hists = []
            for b, (g0, g1) in enumerate(blocks):
                hists.append(edges_protocol.histogram(party, values[:, g0:g1], params))
                _log_block(party, "histogram", b, blocks)
            hist = concatenate(hists, axis=0)
            if params.noise:
                (hist,) = noise.release_on_grid(party, [hist], params.hist_sigma)
            # phase-1 release: DP, opened to every server (all compute the same edges from it)
            hist_open = party.reveal(hist).view(np.int64)
        edges = edges_from_histogram(hist_open, params)
    else:
        edges = public_edges_fp(params)
    geometry = bin_geometry(edges, params)
    parts = []
    with party.phase("marginals"):
        for b, (g0, g1) in enumerate(blocks):
            sub = _geometry_block(geometry, g0, g1)
            parts.append(edges_protocol.edge_statistics(party, values[:, g0:g1], labels, sub, params,
                                                        keep_bits=params.model == "factor"))
            _log_block(party, "bin statistics", b, blocks)
    label = parts[0][0]
    two_way = concatenate([p[1] for p in parts], axis=0)
    sums = concatenate([p[2] for p in parts], axis=0)
    two_way_exact = two_way
    with party.phase("noise"):
        sums = noise.round_to_unit(party, sums, geometry.unit_bits)
        if params.noise:
            label, two_way = noise.release_on_grid(party, [label, two_way], params.sigma)
            (sums,) = noise.release_on_grid(party, [sums], params.sum_sigma)
    out = _finish(party, {"label": label, "two_way": two_way, "sums": sums}, [p[3] for p in parts], labels,
                  two_way_exact, params)
    return {**out, "histogram": hist_open}


def _log_block(party: Party, what: str, b: int, blocks) -> None:
    """One progress line per gene block (block sizes and counts are public)."""
    g0, g1 = blocks[b]
    log.info("party %d: %s: gene block %d of %d done (genes %d-%d of %d)", party.index, what, b + 1, len(blocks),
             g0 + 1, g1, blocks[-1][1])


def _geometry_block(geometry, g0: int, g1: int):
    from ...edges import BinGeometry

    return BinGeometry(edges=geometry.edges[g0:g1], bounds=geometry.bounds[g0:g1], centers=geometry.centers[g0:g1],
                       unit_bits=geometry.unit_bits[g0:g1])


def _rerandomize_outputs(party: Party, outputs: list[AShare]) -> list[AShare]:
    """Fresh replicated sharings of the outputs (one reshare of all of them, 1 round).

    The release server receives all three shares of every output (two copies
    of each, for the consistency check). Rerandomizing makes those shares
    uniform given the output values, so they reveal nothing about the
    intermediate values of the computation -- also when the release server is
    one of the three computing servers: its neighbour's share of an output
    then carries a fresh PRF mask it does not know.
    """
    flat = concatenate([o.ravel() for o in outputs], axis=0)
    fresh = party.rerandomize(flat)
    out, pos = [], 0
    for o in outputs:
        out.append(fresh[pos : pos + o.size].reshape(o.shape))
        pos += o.size
    return out


def open_outputs(shares: Sequence[Protocol1Shares], params: ProtocolParams) -> dict[str, Any]:
    """Reconstruct the outputs from the three servers' shares (release side).

    Parameters
    ----------
    shares : sequence of three Protocol1Shares
        Indexed by party.
    params : ProtocolParams

    Returns
    -------
    dict of str to ndarray of int64
        As :func:`fedsyn.reference.protocol1_outputs`: integer counts
        ``one_way`` (d, 4), ``label`` (L,), ``two_way`` (d, 4, L), and fixed-point
        ``means`` (paper profile) or integer ``sums`` (strict, public-edges);
        ``strict``: ``histogram``; ``factor`` model: ``gram``, ``factor`` (the
        public plan, a dict) and phase B's tables
        (:meth:`fedsyn.measurements.OutputLayout.factor_fields`).

    Raises
    ------
    ProtocolError
        If the replicated shares are inconsistent (a server's copy of a share
        differs from its neighbour's) or a server's output is missing.
    """
    from ...measurements import OutputLayout

    shares = list(shares)
    if len(shares) != 3 or sorted(s.party_index for s in shares) != [0, 1, 2]:
        raise ProtocolError("Opening the outputs needs the shares of the three servers 0, 1, 2.")
    shares.sort(key=lambda s: s.party_index)
    out: dict[str, Any] = {}
    for name, _ in OutputLayout(1, params.n_labels, params.profile).fields():
        pairs = [s.outputs().get(name) for s in shares]
        if any(p is None for p in pairs):
            raise ProtocolError(f"A server did not return {name!r} ({params.profile} profile).")
        out[name] = reconstruct(pairs).view(np.int64)
    if params.profile == "strict":
        hists = [s.histogram for s in shares]
        first = hists[0]
        if first is None or any(h is None or not np.array_equal(h, first) for h in hists[1:]):
            raise ProtocolError("The servers opened different phase-1 histograms (or none).")
        out["histogram"] = np.asarray(first, dtype=np.int64)
    if getattr(params, "model", "star") == "factor":
        grams, plans = [s.gram for s in shares], [s.factor for s in shares]
        if grams[0] is None or any(g is None or not np.array_equal(g, grams[0]) for g in grams[1:]):
            raise ProtocolError("The servers opened different Gram entries (or none).")
        if plans[0] is None or any(p != plans[0] for p in plans[1:]):
            raise ProtocolError("The servers report different factor plans (or none).")
        out["gram"], out["factor"] = np.asarray(grams[0], dtype=np.int64), plans[0]
        from ...factor import FactorPlan

        layout = OutputLayout(1, params.n_labels, params.profile, model="factor")
        for name, _ in layout.factor_fields(FactorPlan.from_public(plans[0]).found):
            pairs = [s.outputs().get(name) for s in shares]
            if any(p is None for p in pairs):
                raise ProtocolError(f"A server did not return {name!r} (factor model).")
            out[name] = reconstruct(pairs).view(np.int64)
    return out


def run_in_process(
    values_fp_list: Sequence[np.ndarray],
    onehot_list: Sequence[np.ndarray],
    params: ProtocolParams,
    *,
    seed: int | None = None,
    timeout: float = 600.0,
) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Share plaintext holders' arrays and run the three servers in threads.

    For tests and for plaintext-vs-rep3 comparisons on one machine: the
    in-process network offers no secrecy between the threads.

    Parameters
    ----------
    values_fp_list : sequence of ndarray of int64, shape (n_k, d)
        Each holder's fixed-point values (clipped to the value range inside the MPC).
    onehot_list : sequence of ndarray, shape (n_k, L)
        Each holder's one-hot labels.
    params : ProtocolParams
    seed : int or None, default None
        Seed for the share randomness and the servers' PRF keys (reproducible
        tests only); fresh CSPRNG randomness by default.
    timeout : float, default 600.0
        Seconds a server waits for a message before failing.

    Returns
    -------
    outputs : dict of str to ndarray of int64
        As :func:`open_outputs`.
    stats : list of dict
        Per server: ``phases`` (as :attr:`Protocol1Shares.stats`), ``bytes_sent``,
        ``rounds``.
    """
    if len(values_fp_list) != len(onehot_list):
        raise InputError(f"{len(values_fp_list)} value matrices but {len(onehot_list)} label matrices.")
    rng = None if seed is None else np.random.default_rng(seed)
    shared = []
    for k, (x, y) in enumerate(zip(values_fp_list, onehot_list)):
        x = np.asarray(x)
        if x.dtype != np.int64:
            raise InputError(f"Holder {k}: values must be fixed-point int64 (fedsyn.fixedpoint.encode).")
        shared.append((share_array(x, rng=rng), share_array(np.asarray(y, dtype=np.int64), rng=rng)))

    def server(i: int, transport) -> tuple[Protocol1Shares, dict]:
        party = Party.setup(i, transport, seed=seed)
        inputs = [HolderInput(values=xs[i], labels=ys[i]) for xs, ys in shared]
        res = run_protocol1(party, inputs, params)
        return res, {"phases": res.stats, "bytes_sent": party.stats.bytes_sent, "rounds": party.stats.rounds}

    results = run_parties(server, network=InProcessNetwork(timeout=timeout))
    outputs = open_outputs([r for r, _ in results], params)
    return outputs, [s for _, s in results]
