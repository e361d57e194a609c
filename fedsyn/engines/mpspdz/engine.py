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
the data and reveals the noisy marginals and the bin means (or noisy sums) to
party 0 only, which this engine reads back. In a local run the three parties
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

from ... import fixedpoint
from ...data import ExpressionData
from ...errors import ConfigError, ProtocolError
from ...measurements import NoisyMeasurements, means_from_noisy_sums
from ...params import ProtocolParams
from ..pooling import align_holders
from . import persistence, runner

logger = logging.getLogger(__name__)

Security = Literal["passive", "active"]
Binning = Literal["select", "sort"]

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


def program_args(n: int, d: int, params: ProtocolParams, binning: str) -> list[object]:
    """Compile-time arguments of ``protocol1.mpc`` for a run."""
    f = params.frac_bits
    sigma_fp = int(round(params.sigma * (1 << f))) if params.noise else 0
    sum_sigma_fp = int(round(params.sum_sigma * (1 << f))) if (params.noise and params.mean_mode == "dp") else 0
    if params.noise and sigma_fp == 0:
        raise ConfigError(f"sigma {params.sigma} rounds to 0 with {f} fractional bits; raise frac_bits.")
    return [n, d, params.n_labels, f, binning, params.mean_mode, sigma_fp, sum_sigma_fp]


class MpSpdzEngine:
    """Runs Protocol 1 with MP-SPDZ party binaries.

    Parameters
    ----------
    security : {"passive", "active"}, default "passive"
        ``replicated-ring-party.x`` (Araki et al. 2016) or
        ``malicious-rep-ring-party.x`` (Dalskov et al. 2020).
    binning : {"select", "sort"} or None, default None
        Overrides ``params.binning``: ``select`` (shuffle-then-compare
        selection, fast) or ``sort`` (per-gene radix sort, as the paper).
    home : path or None, default None
        MP-SPDZ directory; ``$MP_SPDZ_HOME`` when None.
    workdir : path or None, default None
        Run directory (Persistence files, TLS keys, logs, output). A temporary
        directory, removed afterwards, when None. A given one is kept, but the
        Persistence files this engine wrote are deleted after the run: in a
        local run the three parties' shares side by side are the data.
    cache_dir : path or None, default None
        Compiled-program cache (``~/.cache/fedsyn/mp-spdz`` by default).
    timeout : float, default 3600
        Seconds before the parties are killed.
    host : str, default "localhost"
        Host of party 0.
    port : int or None, default None
        Base port (party i uses ``port + i``); a free one when None.
    hosts : sequence of str or None, default None
        ``host[:port]`` of the three parties (MP-SPDZ ``-ip`` file) instead of host/port.
    """

    def __init__(
        self,
        *,
        security: Security = "passive",
        binning: Binning | None = None,
        home=None,
        workdir=None,
        cache_dir=None,
        timeout: float = 3600.0,
        host: str = "localhost",
        port: int | None = None,
        hosts: Sequence[str] | None = None,
    ) -> None:
        if security not in ("passive", "active"):
            raise ConfigError(f"Unknown security {security!r}; use 'passive' or 'active'.")
        if binning not in (None, "select", "sort"):
            raise ConfigError(f"Unknown binning {binning!r}; use 'select' or 'sort'.")
        self.security = security
        self.binning = binning
        self.installation = runner.find_installation(home)
        self.installation.binary(security)  # fail early when the binary is not built
        self.workdir = None if workdir is None else Path(workdir)
        self.cache_dir = cache_dir
        self.timeout = float(timeout)
        self.host, self.port, self.hosts = host, port, hosts
        self.last_report: RunReport | None = None

    @property
    def name(self) -> str:
        return f"mp-spdz-{self.security}"

    def measure(
        self,
        holders: Sequence[ExpressionData],
        params: ProtocolParams,
        *,
        rng: np.random.Generator | None = None,
    ) -> NoisyMeasurements:
        """Share the holders' data, run ``protocol1.mpc`` and read party 0's output.

        Parameters
        ----------
        holders : sequence of ExpressionData
            Preprocessed data of each holder (same genes and label domain).
        params : ProtocolParams
        rng : ignored
            The noise is drawn inside MPC (``sint.get_random_int``); no party,
            and not this process, knows it. Accepted for the Engine interface.

        Returns
        -------
        NoisyMeasurements
            With ``meta["mpspdz"]`` holding the :class:`RunReport`.
        """
        holders = align_holders(holders, params)
        first = holders[0]
        binning = self.binning or params.binning
        blocks = []
        for h in holders:
            values = np.clip(h.values, *params.clip) if params.mean_mode == "dp" else h.values
            x = fixedpoint.encode(values, params.frac_bits, what=f"{h.source} values")
            blocks.append(persistence.holder_rows(x, h.labels, params.n_labels))
        n = sum(b.shape[0] for b in blocks)
        d = first.n_genes
        args = program_args(n, d, params, binning)
        compiled = runner.compile_program(self.installation, PROGRAM, args, security=self.security,
                                          cache_dir=self.cache_dir)
        tmp = None
        work = self.workdir
        if work is None:
            tmp = tempfile.mkdtemp(prefix="fedsyn-mpspdz-")
            work = Path(tmp)
        try:
            runner.prepare_workspace(self.installation, work, compiled)
            # each holder shares its own matrix; files are concatenated per party
            per_party: list[list] = [[], [], []]
            for b in blocks:
                for i, pair in enumerate(persistence.share_matrix(b)):
                    per_party[i].append(pair)
            persistence.write_persistence_shares(per_party, work / "Persistence", security=self.security)
            del per_party
            start = time.perf_counter()
            try:
                reports = runner.run_parties(
                    self.installation, work, compiled.name, security=self.security,
                    host=self.host, port=self.port, hosts=self.hosts, timeout=self.timeout,
                )
            except ProtocolError as exc:
                if tmp is None:
                    raise
                raise ProtocolError(f"{exc}\n(The temporary run directory, logs included, is removed; "
                                    "pass workdir= to keep it.)") from exc
            wall = time.perf_counter() - start
            out_path = work / "Player-Data" / "Binary-Output-P0-0"
            if not out_path.is_file():
                raise ProtocolError(f"MP-SPDZ finished but party 0 wrote no output ({out_path}).")
            out = np.fromfile(out_path, dtype="<i8")
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            else:  # all three parties' shares side by side are the data: keep only logs and output
                for path in (work / "Persistence").glob("Transactions-P*.data"):
                    path.unlink(missing_ok=True)
        L = params.n_labels
        n_counts = 4 * d + L + 4 * d * L
        if out.size != n_counts + 4 * d:
            raise ProtocolError(f"party 0's output has {out.size} values, expected {n_counts + 4 * d}.")
        f = params.frac_bits
        one_way = fixedpoint.decode(out[: 4 * d].reshape(4, d).T, f)
        label = fixedpoint.decode(out[4 * d : 4 * d + L], f)
        two_way = fixedpoint.decode(out[4 * d + L : n_counts].reshape(4, d, L).transpose(1, 0, 2), f)
        last = out[n_counts:].reshape(4, d).T
        if params.mean_mode == "paper":
            means = fixedpoint.decode(last, f)
        else:
            means = means_from_noisy_sums(fixedpoint.decode(last, f), one_way, params.clip)
        p0 = reports[0]
        report = RunReport(
            program=compiled.name,
            security=self.security,
            binning=binning,
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
        self.last_report = report
        logger.info("MP-SPDZ %s run: %.1f s, %s MB sent by party 0", self.security, wall, p0.data_sent_mb)
        return NoisyMeasurements(
            gene_names=first.gene_names,
            label_names=first.label_names,
            n_records=n,
            one_way=one_way,
            label=label,
            two_way=two_way,
            bin_means=means,
            sigma=params.sigma if params.noise else 0.0,
            mean_mode=params.mean_mode,
            engine=self.name,
            meta={"frac_bits": f, "binning": binning, "n_holders": len(holders),
                  "mpspdz": report.to_dict()},
        )
