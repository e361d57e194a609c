"""The MP-SPDZ engine: Protocol 1 on MP-SPDZ's three-party replicated rings.

================  ===========================  ===========  =====================
security          binary                       sharing      adversary
================  ===========================  ===========  =====================
``passive``       ``replicated-ring-party.x``  rep. Z_2^64  semi-honest, 1 of 3
``active``        ``malicious-rep-ring-party.x`` rep. Z_2^64 malicious, 1 of 3 (abort)
================  ===========================  ===========  =====================

Each holder's matrix is secret-shared at the holder (CSPRNG) and written as
MP-SPDZ Persistence files, one per server (:mod:`.persistence`); the holders are
never computing parties. ``mpc_programs/protocol1.mpc`` (``paper``) bins, counts
and noises the data and writes each party's shares of the noisy marginals and
the bin means to that party's Persistence file; nothing is opened inside MPC.
``mpc_programs/protocol1_edges.mpc`` (``strict``, ``public-edges``) runs in two
phases: ``hist`` opens the noisy histograms to the parties (the profile's DP
phase-1 release), the edges and bin geometry are computed from them in Python
(:mod:`fedsyn.edges`, as the rep3 engine does) and passed as public input to
``bins``, which writes the output shares as ``protocol1.mpc`` does. The factor
model of co-expression (``--model factor``, :mod:`fedsyn.factor`) adds
``mpc_programs/protocol1_factor.mpc``: phase ``gram`` opens the noisy Gram
entries of the anchor genes with the profile's noisy tables, every party
computes the public factor plan from them (:func:`fedsyn.factor.plan_factor`),
and phase ``levels`` (a factor was found) or ``again`` (none) writes the
second release's output shares. This engine (which, in a local run, plays every role) opens them
with the replicated consistency check (:mod:`.outputs`); ``fedsyn serve
--engine mp-spdz`` sends each party's shares to the release server instead
(:mod:`.server`). In a local run the three parties
are processes on this machine; see ``docs/mp-spdz-engine.md`` for three hosts.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from ...data import ExpressionData
from ...errors import ConfigError, ProtocolError
from ...factor import LOADING_FRAC_BITS, FactorPlan, anchor_genes, plan_factor
from ...fixedpoint import MAX_VALUE_BITS
from ...holder import encode_holders, share_holder
from ...measurements import Fields, OutputLayout, decode_outputs, privacy_meta
from ...noise import NOISE_FRAC_BITS, GridNoise
from ...params import ProtocolParams
from ...reference import QuartilePlan
from ..base import Measurement
from . import outputs, persistence, runner

logger = logging.getLogger(__name__)

__all__ = ["MpSpdzEngine", "MpSpdzOptions", "RunReport", "program_args", "edges_program_args",
           "factor_program_args", "factor_public_input", "opened_phase_a", "factor_plan", "factor_fields_at",
           "geometry_public_input", "geometry_digest", "run_geometry", "programs_for"]

Security = Literal["passive", "active"]

PROGRAM = "protocol1"
EDGES_PROGRAM = "protocol1_edges"
FACTOR_PROGRAM = "protocol1_factor"
#: The factor model's phases after the profile's program: ``gram``, then ``levels`` (factor found) or ``again``.
FACTOR_PHASES = ("gram", "levels", "again")
#: Timer numbers of protocol1.mpc and what they measure.
TIMERS = {1: "input", 2: "order_statistics", 3: "comparison_bits", 4: "marginals", 5: "noise", 6: "bin_means"}
#: Timers of protocol1_edges.mpc and protocol1_factor.mpc, per phase.
PHASE_TIMERS = {
    "hist": {1: "hist_input", 2: "hist_cells", 3: "histogram", 4: "hist_noise"},
    "bins": {1: "input", 2: "comparison_bits", 3: "marginals", 4: "noise", 5: "bin_sums"},
    "gram": {1: "gram_input", 2: "gram", 4: "gram_noise"},
    "levels": {1: "factor_input", 2: "factor_levels", 3: "factor_tables", 4: "factor_noise"},
    "again": {1: "factor_input", 3: "factor_tables", 4: "factor_noise"},
}


@dataclass(frozen=True)
class RunReport:
    """Cost of one MP-SPDZ run (from party 0's log unless stated)."""

    program: str
    security: str
    binning: str
    compile_seconds: float
    compile_cached: bool
    wall_seconds: float
    party_seconds: float | None
    data_sent_mb: float | None
    global_data_mb: float | None
    rounds: int | None
    phases: dict = field(default_factory=dict)  # name -> {"seconds", "mb", "rounds"}

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


@dataclass(frozen=True)
class MpSpdzOptions:
    """Options of the MP-SPDZ engine.

    Parameters
    ----------
    security : {"passive", "active"}, default "passive"
        ``replicated-ring-party.x`` (Araki et al. 2016) or
        ``malicious-rep-ring-party.x`` (Dalskov et al. 2020).
    timeout : float, default 3600
        Seconds before the parties are killed.
    home : path or None, default None
        MP-SPDZ directory; ``$MP_SPDZ_HOME`` when None.
    workdir : path or None, default None
        Run directory (Persistence files, TLS keys, logs, output). A temporary
        directory, removed afterwards, when None. A given one is kept, but the
        Persistence files this engine wrote are deleted after the run: in a
        local run the three parties' shares side by side are the data.
    cache_dir : path or None, default None
        Compiled-program cache (``~/.cache/fedsyn/mp-spdz`` by default).
    host : str, default "localhost"
        Host of party 0.
    port : int or None, default None
        Base port (party i uses ``port + i``); a free one when None.
    hosts : sequence of str or None, default None
        ``host[:port]`` of the three parties (MP-SPDZ ``-ip`` file) instead of host/port.
    """

    security: Security = field(default="passive", metadata={
        "help": "replicated-ring-party.x (passive) or malicious-rep-ring-party.x (active)"})
    timeout: float = field(default=3600.0, metadata={"help": "seconds before the parties are killed"})
    home: Path | None = field(default=None, metadata={"cli": False})
    workdir: Path | None = field(default=None, metadata={"cli": False})
    cache_dir: Path | None = field(default=None, metadata={"cli": False})
    host: str = field(default="localhost", metadata={"cli": False})
    port: int | None = field(default=None, metadata={"cli": False})
    hosts: tuple[str, ...] | None = field(default=None, metadata={"cli": False})

    def __post_init__(self) -> None:
        if self.security not in ("passive", "active"):
            raise ConfigError(f"Unknown security {self.security!r}; use 'passive' or 'active'.")
        if not self.timeout > 0:
            raise ConfigError("The MP-SPDZ timeout must be positive.")


def _arg(v: int) -> str:
    """A compile-time integer as an argument ``compile.py`` does not take for an option (``-5`` -> ``m5``)."""
    return f"m{-int(v)}" if int(v) < 0 else str(int(v))


def _circuit(sigma: float) -> list[int]:
    c = GridNoise(sigma).circuit
    return [c.a, c.t, c.k, c.q]


def sum_round_bits(params: ProtocolParams) -> int:
    """``U`` of ``protocol1_edges.mpc``: every bin's sum unit ``2^k`` of the geometry has ``k < U``.

    A bin spans at most the value range (``< 2^W`` ulps), so its half width is
    below ``2^(W-1)`` and :func:`fedsyn.params.sum_unit_bits` gives ``k <= W - 5``.
    """
    return max(1, params.grid_bits - 4)


def edges_program_args(phase: str, n: int, d: int, params: ProtocolParams) -> list[object]:
    """Compile-time arguments of ``protocol1_edges.mpc`` for ``phase`` (``hist`` or ``bins``).

    ``PHASE N D L VB LO HI W H U NF A T K Q A2 T2 K2 Q2``; arguments a phase
    does not use are 0, so that ``strict`` and ``public-edges`` runs of the same
    shapes share the compiled ``bins`` program (the per-run geometry is its
    public input, :func:`geometry_public_input`).
    """
    if params.profile not in ("strict", "public-edges"):
        raise ConfigError(f"protocol1_edges.mpc implements the strict and public-edges profiles, not {params.profile!r}.")
    if phase not in ("hist", "bins"):
        raise ConfigError(f"unknown phase {phase!r} of protocol1_edges.mpc")
    zero = [0, 0, 0, 0]
    w, u = params.grid_bits, sum_round_bits(params)
    if phase == "hist":
        lo, hi = params.range_fp
        noise = _circuit(params.hist_sigma) if params.noise else zero
        body = [lo, hi, w, params.hist_bits, 0, NOISE_FRAC_BITS, *noise, *zero]
    else:
        # |centred sum| <= n 2^(W-1); scaled by 2^U it must stay below 2^62 for the exact truncation
        if max(n, 1).bit_length() + (w - 1) + u + 1 > 62:
            raise ConfigError(f"{n} samples on a {w}-bit value grid are too many for the 64-bit bin sums "
                              "of the MP-SPDZ program; narrow the value range or lower frac_bits.")
        counts = _circuit(params.sigma) if params.noise else zero
        sums = _circuit(params.sum_sigma) if params.noise else zero
        body = [0, 0, w, 0, u, NOISE_FRAC_BITS, *counts, *sums]
        if params.model == "factor":  # KEEP_BITS: the comparison bits for protocol1_factor.mpc
            body.append(1)
    return [phase, *(_arg(v) for v in [n, d, params.n_labels, MAX_VALUE_BITS, *body])]


def geometry_public_input(geometry, params: ProtocolParams) -> list[int]:
    """The public input of the ``bins`` phase: ``e1 e2 e3 a0 b3`` (d each), the 4 centres, the 4 scales.

    Raises
    ------
    ProtocolError
        A bin's sum unit does not fit the compiled rounding (cannot happen for a
        geometry of :func:`fedsyn.edges.bin_geometry` inside the value range).
    """
    u = sum_round_bits(params)
    k = np.asarray(geometry.unit_bits, dtype=np.int64)
    if k.min() < 0 or k.max() >= u:
        raise ProtocolError(f"bin sum units 2^{int(k.max())} exceed the compiled rounding 2^{u - 1}.")
    e = np.asarray(geometry.edges, dtype=np.int64)
    b = np.asarray(geometry.bounds, dtype=np.int64)
    c = np.asarray(geometry.centers, dtype=np.int64)
    parts = [e[:, 0], e[:, 1], e[:, 2], b[:, 0], b[:, 4], *(c[:, j] for j in range(4)),
             *((np.int64(1) << (u - k[:, j])) for j in range(4))]
    return [int(v) for v in np.concatenate(parts)]


def geometry_digest(geometry) -> str:
    """SHA-256 of a bin geometry (edges, bounds, centres, units), for the servers' agreement check."""
    import hashlib

    h = hashlib.sha256()
    for name in ("edges", "bounds", "centers", "unit_bits"):
        arr = np.ascontiguousarray(getattr(geometry, name), dtype="<i8")
        h.update(name.encode() + str(arr.shape).encode() + arr.tobytes())
    return h.hexdigest()


def run_geometry(params: ProtocolParams, histogram=None):
    """The public bin geometry of phase 2: from the opened noisy histogram (strict) or the given edges."""
    from ...edges import bin_geometry, edges_from_histogram, public_edges_fp

    edges = edges_from_histogram(histogram, params) if params.profile == "strict" else public_edges_fp(params)
    return bin_geometry(edges, params)


def program_args(n: int, d: int, params: ProtocolParams) -> list[object]:
    """Compile-time arguments of ``protocol1.mpc``: the whole public plan, computed here.

    ``N D L F BINNING MEAN_MODE NF A T K Q A_SUM T_SUM K_SUM Q_SUM SUM_BITS VB LO1 LO2 LO3 K1 K2 K3``:
    shapes, fixed point, the noise circuit of :mod:`fedsyn.noise`
    (``Z = floor((R + T) A / 2^K) - Q``) for the counts and for the bin sums
    (``A = 0``: no noise), the
    bin sums' grid unit ``2^SUM_BITS``, the value bound ``|x| < 2^VB``
    (:data:`fedsyn.fixedpoint.MAX_VALUE_BITS`) and the quartile plan
    (:class:`fedsyn.reference.QuartilePlan`); the program derives none of
    these itself, and writes its outputs in :class:`fedsyn.measurements.OutputLayout` order.
    """
    if params.profile != "paper":
        raise ConfigError(f"protocol1.mpc implements the paper profile; the {params.profile!r} profile runs "
                          "protocol1_edges.mpc (edges_program_args).")
    count_noise = sum_noise = [0, 0, 0, 0]
    if params.noise:
        c = GridNoise(params.sigma).circuit
        count_noise = [c.a, c.t, c.k, c.q]
    plan = QuartilePlan.for_n(n)
    keep = [1] if params.model == "factor" else []  # KEEP_BITS: the comparison bits for protocol1_factor.mpc
    return [n, d, params.n_labels, params.frac_bits, params.binning, "paper", NOISE_FRAC_BITS,
            *count_noise, *sum_noise, 0, MAX_VALUE_BITS, *plan.lo, *plan.k, *keep]


def _factor_offsets(n: int, d: int, params: ProtocolParams) -> dict[str, int]:
    """Share positions in a party's Persistence file: the profile's noisy label and (gene, label) tables,
    the comparison bits the profile's program kept (``3 d n``) and phase B's outputs."""
    from .outputs import output_start

    start = output_start(n, d, params.n_labels)
    layout = OutputLayout(d, params.n_labels, params.profile)
    pos, at = start, {}
    for name, shape in layout.fields():
        at[name] = pos
        pos += int(np.prod(shape))
    bits = start + layout.size
    return {"label": at["label"], "two_way": at["two_way"], "bits": bits, "out": bits + 3 * n * d}


def factor_compare_bits(p: int) -> int:
    """``CB`` of ``protocol1_factor.mpc``: ``|z - t| < 2^(CB - 1)`` for every plan of ``p`` anchors.

    ``|V_k| <= 2^12`` (a unit vector's entries, rounded), so ``|z| <= 3 p 2^12``;
    the thresholds are checked against the same bound (:func:`factor_public_input`).
    """
    return (2 * 3 * int(p) << LOADING_FRAC_BITS).bit_length() + 2


def factor_program_args(phase: str, n: int, d: int, params: ProtocolParams) -> list[object]:
    """Compile-time arguments of ``protocol1_factor.mpc`` for ``phase`` (``gram``, ``levels`` or ``again``).

    ``PHASE N D L P WIDTH OFF_LAB OFF_TW OFF_BITS OFF_OUT NF CB A T K Q A2 T2 K2 Q2``:
    shapes, the share positions of :func:`_factor_offsets`, the comparison width
    of the level bits and the noise circuits (``gram``: the Gram noise;
    ``levels``: the count noise of the (factor, label) table and the ``pair``
    noise of the (gene, factor) tables; ``again``: the ``pair`` noise). The
    plan itself (anchors, loadings, thresholds) is public input, so one compiled
    program serves every plan.
    """
    if params.model != "factor":
        raise ConfigError("protocol1_factor.mpc implements the factor model only.")
    if phase not in FACTOR_PHASES:
        raise ConfigError(f"unknown phase {phase!r} of protocol1_factor.mpc")
    zero = [0, 0, 0, 0]
    on = params.noise
    first = {"gram": _circuit(params.gram_sigma) if on else zero,
             "levels": _circuit(params.sigma) if on else zero, "again": zero}[phase]
    second = zero if phase == "gram" or not on else _circuit(params.pair_sigma)
    p = int(anchor_genes(d, params.factor_anchors).size)
    off = _factor_offsets(n, d, params)
    return [phase, *(_arg(v) for v in [n, d, params.n_labels, p, d + params.n_labels, off["label"], off["two_way"],
                                       off["bits"], off["out"], NOISE_FRAC_BITS, factor_compare_bits(p),
                                       *first, *second])]


def factor_public_input(phase: str, d: int, params: ProtocolParams, plan=None) -> list[int]:
    """The public input of a factor phase: the anchors (``gram``); anchors, their loadings and the
    thresholds (``levels``); none (``again``).

    Raises
    ------
    ProtocolError
        The plan's level comparisons need more bits than the compiled ``CB``, or
        it loads on a gene that is not an anchor.
    """
    anchors = anchor_genes(d, params.factor_anchors)
    if phase == "gram":
        return [int(a) for a in anchors]
    if phase == "again":
        return []
    if plan is None or not plan.found:
        raise ProtocolError("phase 'levels' needs a plan with a factor.")
    cb = factor_compare_bits(anchors.size)
    if plan.compare_bits > cb:
        raise ProtocolError(f"the factor plan needs {plan.compare_bits}-bit level comparisons; the program was "
                            f"compiled for {cb}.")
    if np.count_nonzero(np.delete(plan.loadings_fp, anchors)):
        raise ProtocolError("the factor plan loads on genes that are not anchors.")
    return [*(int(a) for a in anchors), *(int(v) for v in plan.loadings_fp[anchors]),
            *(int(t) for t in plan.thresholds_fp)]


def _agreed_opening(parts: Sequence, what: str) -> np.ndarray:
    """What the parties opened to all of them (their binary outputs), which must be the same for every party."""
    first = np.asarray(parts[0], dtype=np.int64)
    for k, other in enumerate(parts[1:], start=1):
        if not np.array_equal(np.asarray(other, dtype=np.int64), first):
            raise ProtocolError(f"MP-SPDZ parties 0 and {k} opened different {what}.")
    return first


def opened_phase_a(parts: Sequence, d: int, params: ProtocolParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(gram, label, two_way)`` from what the parties opened in phase ``gram`` (which must agree)."""
    p = int(anchor_genes(d, params.factor_anchors).size)
    L = params.n_labels
    fields = Fields((("gram", (p * (p - 1) // 2,)), ("label", (L,)), ("two_way", (d, 4, L))))
    got = fields.split(_agreed_opening(parts, "phase-A releases"), what="the values phase 'gram' opened")
    return got["gram"].copy(), got["label"].copy(), got["two_way"].copy()


def factor_plan(gram: np.ndarray, label: np.ndarray, two_way: np.ndarray, params: ProtocolParams):
    """The public factor plan from the phase-A release (as rep3's servers compute it)."""
    return plan_factor(gram, two_way, label, gram_sigma=params.gram_sigma if params.noise else 0.0,
                       table_sigma=params.sigma if params.noise else 0.0, n_anchors=params.factor_anchors)


def factor_fields_at(n: int, d: int, params: ProtocolParams, found: bool) -> tuple[int, Fields]:
    """Share position and layout (:meth:`~fedsyn.measurements.OutputLayout.factor_layout`) of phase B's outputs."""
    layout = OutputLayout(d, params.n_labels, params.profile, model="factor")
    return _factor_offsets(n, d, params)["out"], layout.factor_layout(found)


def programs_for(n: int, d: int, params: ProtocolParams) -> list[tuple[str, str, list[object]]]:
    """The MP-SPDZ runs of a profile and model, in order: ``(phase, program, compile-time args)``.

    ``paper``: ``protocol1.mpc``; ``strict``: ``protocol1_edges.mpc`` phase
    ``hist`` (opens the noisy histograms) then ``bins``; ``public-edges``: ``bins`` only.
    The factor model appends ``protocol1_factor.mpc``'s ``gram``, ``levels`` and
    ``again`` (all compiled up front; one of the last two runs, as the public plan says).
    """
    if params.profile == "paper":
        runs = [("paper", PROGRAM, program_args(n, d, params))]
    else:
        phases = ["hist", "bins"] if params.profile == "strict" else ["bins"]
        runs = [(ph, EDGES_PROGRAM, edges_program_args(ph, n, d, params)) for ph in phases]
    if params.model == "factor":
        runs += [(ph, FACTOR_PROGRAM, factor_program_args(ph, n, d, params)) for ph in FACTOR_PHASES]
    return runs


def opened_histogram(parts: Sequence, d: int, params: ProtocolParams):
    """The phase-1 histogram (d, 2^b) from the public outputs of the parties (which must agree)."""
    fields = Fields((("histogram", (d, params.hist_cells)),))
    return fields.split(_agreed_opening(parts, "phase-1 histograms"), what="the opened phase-1 histograms")["histogram"]


@dataclass
class PhaseState:
    """The public steps between the MP-SPDZ phases of one run (every party computes the same from the same
    opened values): the strict profile's bin geometry, the factor model's plan.

    Used alike by a local run (:class:`MpSpdzEngine`) and by a deployment's
    server (:mod:`.server`, which also checks with its peers that they agree).
    """

    n: int
    d: int
    params: ProtocolParams
    histogram: np.ndarray | None = None
    geometry: object = None
    gram: np.ndarray | None = None
    plan: FactorPlan | None = None  # after phase "gram"

    def runs(self, phase: str) -> bool:
        """Whether ``phase`` runs: ``levels`` only with a factor, ``again`` only without one."""
        if phase not in ("levels", "again"):
            return True
        if self.plan is None:
            raise ProtocolError(f"phase {phase!r} before the factor plan")
        return bool(self.plan.found) == (phase == "levels")

    def public_input(self, phase: str) -> list[int] | None:
        """The public input of ``phase`` (None: it reads none)."""
        if phase == "bins":  # from the opened histogram (strict) or the given edges
            self.geometry = run_geometry(self.params, self.histogram)
            return geometry_public_input(self.geometry, self.params)
        if phase in ("gram", "levels"):
            return factor_public_input(phase, self.d, self.params, self.plan)
        return None

    def opened(self, phase: str, parts: Sequence) -> None:
        """Take what ``phase`` opened to the parties (their binary outputs; a server has only its own)."""
        if phase == "hist":
            self.histogram = opened_histogram(parts, self.d, self.params)
        elif phase == "gram":
            self.gram, label, two_way = opened_phase_a(parts, self.d, self.params)
            self.plan = factor_plan(self.gram, label, two_way, self.params)

    def factor_outputs(self) -> tuple[int, Fields] | None:
        """Share position and layout of phase B's outputs (None: the star model)."""
        if self.params.model != "factor":
            return None
        if self.plan is None:
            raise ProtocolError("the factor model's phases did not run")
        return factor_fields_at(self.n, self.d, self.params, bool(self.plan.found))

    def public_outputs(self) -> dict:
        """The public values the release server gets besides the output shares: ``histogram`` (strict),
        ``gram`` and ``factor`` (the plan, :meth:`fedsyn.factor.FactorPlan.to_public`)."""
        out: dict = {}
        if self.histogram is not None:
            out["histogram"] = self.histogram
        if self.params.model == "factor" and self.plan is not None:
            out["gram"], out["factor"] = self.gram, self.plan.to_public()
        return out


def combine_reports(reports: dict) -> dict:
    """Party seconds, data, rounds and per-timer figures of one run or of both phases (summed)."""
    def total(attr):
        vals = [getattr(r, attr) for r in reports.values()]
        if any(v is None for v in vals):
            return None
        return sum(vals) if all(isinstance(v, int) for v in vals) else round(sum(vals), 6)  # MB: to the byte

    phases = {}
    for phase, r in reports.items():
        names = TIMERS if phase == "paper" else PHASE_TIMERS[phase]
        for k, v in sorted(r.timers.items()):
            phases[names.get(k, f"{phase}{k}")] = {"seconds": v[0], "mb": v[1], "rounds": v[2]}
    return {"party_seconds": total("seconds"), "data_sent_mb": total("data_sent_mb"),
            "global_data_mb": total("global_data_mb"), "rounds": total("rounds"), "phases": phases}


class MpSpdzEngine:
    """Runs Protocol 1 with MP-SPDZ party binaries.

    Parameters
    ----------
    options : MpSpdzOptions or None, default None

    Raises
    ------
    EngineUnavailableError
        MP-SPDZ or the needed party binary is not installed.
    """

    def __init__(self, options: MpSpdzOptions | None = None) -> None:
        self.options = options or MpSpdzOptions()
        self.installation = runner.find_installation(self.options.home)
        self.installation.binary(self.options.security)  # fail early when the binary is not built

    @property
    def name(self) -> str:
        return f"mp-spdz-{self.options.security}"

    def measure(
        self, holders: Sequence[ExpressionData], params: ProtocolParams, *, privacy=None
    ) -> Measurement:
        """Share the holders' data, run the profile's MP-SPDZ program(s) and open the output shares.

        ``paper``: ``protocol1.mpc``. ``strict``: ``protocol1_edges.mpc`` twice --
        phase ``hist`` opens the noisy histograms to the parties, the bin
        geometry is computed from them (:func:`run_geometry`) and passed to
        phase ``bins`` as public input. ``public-edges``: phase ``bins`` only.
        The factor model then runs ``protocol1_factor.mpc``: ``gram`` opens the
        phase-A release to the parties, the factor plan is computed from it
        (:class:`PhaseState`) and ``levels`` or ``again`` writes phase B.

        The noise is drawn inside MPC (``sint.get_random_int``); no party, and
        not this process, knows it.

        Returns
        -------
        Measurement
            ``stats["mpspdz"]`` holds the :class:`RunReport`.
        """
        opened, report, (genes, labels) = self.open_outputs(holders, params)
        public = {k: opened.pop(k, None) for k in ("histogram", "gram", "factor")}
        m = decode_outputs(opened, gene_names=genes, label_names=labels, params=params, engine=self.name,
                           meta=privacy_meta(privacy), **public)
        return Measurement(measurements=m, stats={"mpspdz": report.to_dict()})

    def open_outputs(self, holders: Sequence[ExpressionData], params: ProtocolParams):
        """Share, run the profile's program(s), open: ``(opened, RunReport, (gene_names, label_names))``.

        ``opened`` holds the :class:`~fedsyn.measurements.OutputLayout` fields
        of ``params.profile`` as int64 arrays (and ``histogram``, the phase-1
        release, in ``strict``; ``gram``, ``factor`` (the public plan) and phase
        B's :meth:`~fedsyn.measurements.OutputLayout.factor_fields` in the factor
        model): what the release server opens, before decoding.
        """
        opts = self.options
        encoded = encode_holders(holders, n_labels=params.n_labels, frac_bits=params.frac_bits,
                                 clip=params.value_range)
        first = encoded[0]
        n = sum(e.n_samples for e in encoded)
        d = len(first.gene_names)
        compiled = {phase: runner.compile_program(self.installation, program, args, security=opts.security,
                                                  cache_dir=opts.cache_dir)
                    for phase, program, args in programs_for(n, d, params)}
        tmp = None
        work = opts.workdir
        if work is None:
            tmp = tempfile.mkdtemp(prefix="fedsyn-mpspdz-")
            work = Path(tmp)
        work = Path(work)
        state = PhaseState(n, d, params)
        reports: dict[str, list] = {}
        try:
            progs = list(compiled.values())
            runner.prepare_workspace(self.installation, work, progs[0])
            for c in progs[1:]:
                runner.link_program(work, c)
            # each holder shares its own matrix; the pairs are written back to back per party
            shared = [share_holder(e) for e in encoded]
            persistence.write_persistence_shares([[s.rows_pair(i) for s in shared] for i in range(3)],
                                                 work / "Persistence", security=opts.security)
            del shared
            start = time.perf_counter()
            try:
                for phase, c in compiled.items():
                    if not state.runs(phase):
                        continue
                    public = state.public_input(phase)
                    if public is not None:
                        runner.write_public_input(work, c.name, public)
                    reports[phase] = runner.run_parties(
                        self.installation, work, c.name, security=opts.security,
                        host=opts.host, port=opts.port, hosts=opts.hosts, timeout=opts.timeout,
                    )
                    if phase in ("hist", "gram"):  # opened to every party
                        state.opened(phase, [runner.read_binary_output(work, i) for i in range(3)])
            except ProtocolError as exc:
                if tmp is None:
                    raise
                raise ProtocolError(f"{exc}\n(The temporary run directory, logs included, is removed; "
                                    "pass workdir= to keep it.)") from exc
            wall = time.perf_counter() - start
            layout = OutputLayout(d, params.n_labels, params.profile)
            # each party wrote only its own pair of every output; this process holds all three
            pairs = {i: outputs.read_party_outputs(work / "Persistence", i, n=n, layout=layout,
                                                   security=opts.security) for i in range(3)}
            opened = layout.split(outputs.open_party_outputs(pairs, layout), what="the opened outputs")
            factor = state.factor_outputs()
            if factor is not None:  # the factor model's phase B, written after the comparison bits
                at, fields = factor
                pairs = {i: outputs.read_party_fields(work / "Persistence", i, start=at, layout=fields,
                                                      security=opts.security) for i in range(3)}
                opened.update(fields.split(outputs.open_party_outputs(pairs, fields), what="the factor outputs"))
            del pairs
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            else:  # all three parties' shares side by side are the data: keep only the logs
                for path in (work / "Persistence").glob("Transactions-*.data"):
                    path.unlink(missing_ok=True)
        report = RunReport(
            program="+".join(c.name for phase, c in compiled.items() if phase in reports),
            security=opts.security,
            binning=params.binning if params.profile == "paper" else params.profile,
            compile_seconds=sum(c.compile_seconds for c in compiled.values()),
            compile_cached=all(c.cached for c in compiled.values()),
            wall_seconds=wall,
            **combine_reports({phase: r[0] for phase, r in reports.items()}),
        )
        logger.info("MP-SPDZ %s run: %.1f s, %s MB sent by party 0", opts.security, wall, report.data_sent_mb)
        opened.update(state.public_outputs())
        return opened, report, (first.gene_names, first.label_names)
