"""The embedded three-party engine (``--engine rep3``) behind the :class:`~fedsyn.engines.base.Engine` protocol.

:meth:`Rep3Engine.measure` plays every role of a deployment on one machine:

1. **holders** -- each holder's matrix is encoded and secret-shared
   (:mod:`fedsyn.holder`, CSPRNG shares) into three bundles
   (:func:`fedsyn.bundle.write_holder_bundles`);
2. **servers** -- three parties run Protocol 1 on the bundles: as three threads
   over :class:`~fedsyn.engines.rep3.transport.InProcessNetwork`
   (``transport="inprocess"``, for tests) or as three ``fedsyn serve``
   processes talking TCP + TLS 1.3 on loopback (``transport="tcp"``, the
   default; :mod:`fedsyn.engines.rep3.local`);
3. **release** -- the output shares are opened with the replicated consistency
   check and decoded (:func:`fedsyn.measurements.decode_outputs`) into
   :class:`~fedsyn.measurements.NoisyMeasurements`.

Security: passive (honest-but-curious) adversary corrupting at most one of the
three servers (replicated secret sharing, Araki et al. 2016). Run on one
machine, the engine demonstrates and tests the protocol; the security of a real
deployment comes from three institutions each running ``fedsyn serve``
(``docs/deployment.md``).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from ...bundle import write_holder_bundles
from ...data import ExpressionData
from ...errors import ConfigError
from ...holder import encode_holders, share_holder
from ...params import ProtocolParams
from ..base import Measurement
from .config import DeploymentConfig, load_config

logger = logging.getLogger(__name__)

__all__ = ["Rep3Engine", "Rep3Options"]

TransportKind = Literal["tcp", "inprocess"]


@dataclass(frozen=True)
class Rep3Options:
    """Options of the embedded engine.

    Parameters
    ----------
    transport : {"tcp", "inprocess"}, default "tcp"
        ``tcp``: three ``fedsyn serve`` processes over TLS on loopback;
        ``inprocess``: three threads in this process (fast; for tests).
    timeout : float, default 600
        Seconds before a stalled run fails (also each message's timeout).
    workdir : path-like or None, default None
        Where bundles, certificates, the deployment file and the server logs go
        (kept after the run). ``None``: a fresh temporary directory
        ``fedsyn-rep3-*`` (mode 0700), removed whatever happens -- success,
        error or Ctrl-C (a failed run's error shows the tail of every
        server's log); directories left by runs that were killed outright
        are removed by the next run.
    config : DeploymentConfig, path-like or None, default None
        ``tcp`` only: addresses and certificates to use (e.g.
        ``parties/local.toml``) instead of fresh loopback ones.
    seed : int or None, default None
        Reproducible PRF keys and shares: tests ONLY (never for real data).
    """

    transport: TransportKind = field(default="tcp", metadata={
        "help": "three server processes over TLS, or threads in this process"})
    timeout: float = field(default=600.0, metadata={"help": "seconds before a stalled run fails"})
    workdir: Path | None = field(default=None, metadata={"cli": False})
    config: DeploymentConfig | str | Path | None = field(default=None, metadata={"cli": False})
    seed: int | None = field(default=None, metadata={"cli": False})

    def __post_init__(self) -> None:
        if self.transport not in ("tcp", "inprocess"):
            raise ConfigError(f"Unknown rep3 transport {self.transport!r}; use 'tcp' or 'inprocess'.")
        if not self.timeout > 0:
            raise ConfigError("The rep3 timeout must be positive.")
        if self.config is not None and not isinstance(self.config, DeploymentConfig):
            object.__setattr__(self, "config", load_config(self.config))
        if self.workdir is not None:
            object.__setattr__(self, "workdir", Path(self.workdir))


class Rep3Engine:
    """Protocol 1 by the embedded replicated-sharing engine.

    Parameters
    ----------
    options : Rep3Options or None, default None
        Default options when ``None``.
    """

    name = "rep3"

    def __init__(self, options: Rep3Options | None = None) -> None:
        self.options = options or Rep3Options()

    def measure(
        self, holders: Sequence[ExpressionData], params: ProtocolParams, *, privacy=None
    ) -> Measurement:
        """Share each holder's data, run the three servers, open the outputs.

        Parameters
        ----------
        holders : sequence of ExpressionData
            One matrix per holder; same genes (any column order is aligned to
            the first holder's) and labels from one public domain.
        params : ProtocolParams
            The noise is generated inside the MPC from the servers' keys.
        privacy : fedsyn.accounting.PrivacyPlan or None
            The plan behind the noise; the ``tcp`` servers check it as
            ``fedsyn serve`` does (without one, a plan stating what the given
            noise spends is made).

        Returns
        -------
        Measurement
            With ``engine="rep3"``; ``stats["servers"]`` holds each server's
            per-phase seconds, bytes and rounds.
        """
        opts = self.options
        encoded = encode_holders(holders, n_labels=params.n_labels, frac_bits=params.frac_bits,
                                 clip=params.value_range)
        config = opts.config
        assert config is None or isinstance(config, DeploymentConfig)  # loaded in __post_init__
        session = config.session if config is not None else f"run-{secrets.token_hex(6)}"
        own_dir = opts.workdir is None
        if own_dir:
            _sweep_stale_workdirs()
            work = Path(tempfile.mkdtemp(prefix=_WORKDIR_PREFIX))
            (work / _OWNER_FILE).write_text(str(os.getpid()), encoding="utf-8")
        else:
            assert opts.workdir is not None
            work = opts.workdir
        work.mkdir(parents=True, exist_ok=True)
        ok = False
        try:
            share_rng = None if opts.seed is None else np.random.default_rng([opts.seed, 0x7368])
            per_server: list[list[Path]] = [[], [], []]
            for k, e in enumerate(encoded):
                paths = write_holder_bundles(share_holder(e, rng=share_rng), holder_id=f"holder{k}",
                                             out_dir=work / "bundles", run_id=session or None)
                for i, p in enumerate(paths):
                    per_server[i].append(p)
            if privacy is None and params.noise:
                from ...accounting import plan_for_params

                privacy = plan_for_params(params, n_genes=len(encoded[0].gene_names))
            if opts.transport == "inprocess":
                result = self._run_inprocess(per_server, params, session, privacy)
            else:
                from ...params import RunParams
                from .local import read_server_stats, run_local_deployment

                m = run_local_deployment(per_server, RunParams(params, privacy), workdir=work,
                                         timeout=opts.timeout, config=config, session=session)
                stats = {f"server{s['index']}": s for s in read_server_stats(work)}
                result = Measurement(measurements=m, stats={"transport": "tcp", "servers": stats})
            ok = True
            return result
        finally:
            if own_dir:
                _remove_secrets(work)  # the shares and keys first, should the rest fail
                shutil.rmtree(work, ignore_errors=True)
            elif not ok:
                logger.error("rep3: run failed; bundles, certificates and logs kept in %s", work)

    def _run_inprocess(self, per_server: list[list[Path]], params: ProtocolParams, session: str,
                       privacy) -> Measurement:
        from .release_server import check_metadata, measurements_from_shares
        from .server import compute_output_shares, load_bundles_for, release_metadata
        from .transport import InProcessNetwork, run_parties

        bundles = [load_bundles_for(i, per_server[i], params, run_id=session or None) for i in range(3)]
        meta = check_metadata({i: release_metadata(bundles[i], params, privacy) for i in range(3)})

        def party(i: int, transport):
            return compute_output_shares(i, transport, bundles[i], params, seed=self.options.seed)

        results = run_parties(party, network=InProcessNetwork(timeout=self.options.timeout))
        shares = {i: results[i][0] for i in range(3)}
        m = measurements_from_shares(shares, meta, params)
        return Measurement(measurements=m, stats={"transport": "inprocess",
                                                  "servers": {f"server{i}": results[i][1] for i in range(3)}})


_WORKDIR_PREFIX = "fedsyn-rep3-"
_OWNER_FILE = "owner.pid"


def _sweep_stale_workdirs() -> None:
    """Remove ``fedsyn-rep3-*`` temporary directories of this user whose run's process is gone.

    A run killed outright (SIGKILL, power loss) cannot clean up after itself;
    its directory names the process in ``owner.pid``. Directories of live
    processes, of other users, and without that file are left alone.
    """
    uid = getattr(os, "getuid", lambda: None)()
    for d in Path(tempfile.gettempdir()).glob(_WORKDIR_PREFIX + "*"):
        try:
            if not d.is_dir() or d.is_symlink() or (uid is not None and d.stat().st_uid != uid):
                continue
            pid = int((d / _OWNER_FILE).read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        _remove_secrets(d)
        shutil.rmtree(d, ignore_errors=True)
        logger.info("rep3: removed %s, left by an earlier run that was killed", d)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_secrets(work: Path) -> None:
    """Delete the bundles and private keys of a failed run in its own temporary directory."""
    shutil.rmtree(work / "bundles", ignore_errors=True)
    for key in (work / "certs").glob("*.key"):
        key.unlink(missing_ok=True)
