"""The MP-SPDZ engine: Protocol 1 on MP-SPDZ's three-party replicated rings.

================  ===========================  ===========  =====================
security          binary                       sharing      adversary
================  ===========================  ===========  =====================
``passive``       ``replicated-ring-party.x``  rep. Z_2^64  semi-honest, 1 of 3
``active``        ``malicious-rep-ring-party.x`` rep. Z_2^64 malicious, 1 of 3 (abort)
================  ===========================  ===========  =====================

Each holder's matrix is secret-shared at the holder (CSPRNG) and written as
MP-SPDZ Persistence files, one per server (:mod:`.persistence`); the holders are
never computing parties. ``mpc_programs/protocol1.mpc`` bins, counts and noises
the data and writes each party's shares of the noisy marginals and the bin
means (or noisy sums) to that party's Persistence file; nothing is opened
inside MPC. This engine (which, in a local run, plays every role) opens them
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

from ...data import ExpressionData
from ...errors import ConfigError, ProtocolError
from ...fixedpoint import MAX_VALUE_BITS
from ...holder import encode_holders, share_holder
from ...measurements import OutputLayout, decode_outputs, privacy_meta
from ...noise import NOISE_FRAC_BITS, GridNoise
from ...params import ProtocolParams
from ...reference import QuartilePlan
from ..base import Measurement
from . import outputs, persistence, runner

logger = logging.getLogger(__name__)

__all__ = ["MpSpdzEngine", "MpSpdzOptions", "RunReport", "program_args"]

Security = Literal["passive", "active"]

PROGRAM = "protocol1"
#: Timer numbers of protocol1.mpc and what they measure.
TIMERS = {1: "input", 2: "order_statistics", 3: "comparison_bits", 4: "marginals", 5: "noise", 6: "bin_means"}


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
        raise ConfigError(f"the MP-SPDZ program implements the paper profile; the {params.profile!r} profile "
                          "runs on the rep3 engine (--engine rep3) for now.")
    count_noise = sum_noise = [0, 0, 0, 0]
    if params.noise:
        c = GridNoise(params.sigma).circuit
        count_noise = [c.a, c.t, c.k, c.q]
    plan = QuartilePlan.for_n(n)
    return [n, d, params.n_labels, params.frac_bits, params.binning, "paper", NOISE_FRAC_BITS,
            *count_noise, *sum_noise, 0, MAX_VALUE_BITS, *plan.lo, *plan.k]


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
        """Share the holders' data, run ``protocol1.mpc`` and open the three parties' output shares.

        The noise is drawn inside MPC (``sint.get_random_int``); no party, and
        not this process, knows it.

        Returns
        -------
        Measurement
            ``stats["mpspdz"]`` holds the :class:`RunReport`.
        """
        opts = self.options
        encoded = encode_holders(holders, n_labels=params.n_labels, frac_bits=params.frac_bits,
                                 clip=params.value_range)
        first = encoded[0]
        n = sum(e.n_samples for e in encoded)
        d = len(first.gene_names)
        args = program_args(n, d, params)
        compiled = runner.compile_program(self.installation, PROGRAM, args, security=opts.security,
                                          cache_dir=opts.cache_dir)
        tmp = None
        work = opts.workdir
        if work is None:
            tmp = tempfile.mkdtemp(prefix="fedsyn-mpspdz-")
            work = Path(tmp)
        work = Path(work)
        try:
            runner.prepare_workspace(self.installation, work, compiled)
            # each holder shares its own matrix; the pairs are written back to back per party
            shared = [share_holder(e) for e in encoded]
            persistence.write_persistence_shares([[s.rows_pair(i) for s in shared] for i in range(3)],
                                                 work / "Persistence", security=opts.security)
            del shared
            start = time.perf_counter()
            try:
                reports = runner.run_parties(
                    self.installation, work, compiled.name, security=opts.security,
                    host=opts.host, port=opts.port, hosts=opts.hosts, timeout=opts.timeout,
                )
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
            del pairs
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            else:  # all three parties' shares side by side are the data: keep only the logs
                for path in (work / "Persistence").glob("Transactions-*.data"):
                    path.unlink(missing_ok=True)
        p0 = reports[0]
        report = RunReport(
            program=compiled.name,
            security=opts.security,
            binning=params.binning,
            compile_seconds=compiled.compile_seconds,
            compile_cached=compiled.cached,
            wall_seconds=wall,
            party_seconds=p0.seconds,
            data_sent_mb=p0.data_sent_mb,
            global_data_mb=p0.global_data_mb,
            rounds=p0.rounds,
            phases={TIMERS.get(k, str(k)): {"seconds": v[0], "mb": v[1], "rounds": v[2]}
                    for k, v in sorted(p0.timers.items())},
        )
        logger.info("MP-SPDZ %s run: %.1f s, %s MB sent by party 0", opts.security, wall, p0.data_sent_mb)
        m = decode_outputs(opened, gene_names=first.gene_names, label_names=first.label_names,
                           params=params, engine=self.name, meta=privacy_meta(privacy))
        return Measurement(measurements=m, stats={"mpspdz": report.to_dict()})
