"""The embedded three-party engine (``--engine rep3``) behind the :class:`~fedsyn.engines.base.Engine` protocol.

:meth:`Rep3Engine.measure` plays every role of a deployment on one machine:

1. **holders** -- each holder's matrix is secret-shared into three bundles
   (:func:`fedsyn.bundle.share_holder`, CSPRNG shares);
2. **servers** -- three parties run Protocol 1 on the bundles: as three threads
   over :class:`~fedsyn.engines.rep3.transport.InProcessNetwork`
   (``transport="inprocess"``, for tests) or as three ``fedsyn serve``
   processes talking TCP + TLS 1.3 on loopback (``transport="tcp"``, the
   default; :mod:`fedsyn.engines.rep3.local`);
3. **release** -- the output shares are opened with the replicated consistency
   check into :class:`~fedsyn.measurements.NoisyMeasurements`.

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
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from ...bundle import share_holder
from ...data import ExpressionData
from ...errors import ConfigError
from ...measurements import NoisyMeasurements
from ...params import ProtocolParams
from ..pooling import align_holders
from .config import DeploymentConfig, load_config

logger = logging.getLogger(__name__)

__all__ = ["Rep3Engine"]

TransportKind = Literal["inprocess", "tcp"]


class Rep3Engine:
    """Protocol 1 by the embedded replicated-sharing engine.

    Parameters
    ----------
    transport : {"tcp", "inprocess"}, default "tcp"
        ``tcp``: three server processes over TLS on loopback; ``inprocess``:
        three threads in this process (fast; for tests).
    workdir : path-like or None, default None
        Where bundles, certificates, the deployment file and the server logs go.
        ``None``: a fresh temporary directory (mode 0700), removed after a
        successful run; after a failure only the logs and public files are kept
        (and named in the log): the bundles -- all three shares of every
        holder -- and the private keys are removed.
    config : DeploymentConfig, path-like or None, default None
        ``tcp`` only: addresses and certificates to use (e.g.
        ``parties/local.toml``) instead of fresh loopback ones.
    timeout : float, default 600
        Seconds before a stalled run fails (also each message's timeout).
    seed : int or None, default None
        Reproducible PRF keys and shares: tests ONLY (never for real data).
    """

    name = "rep3"

    def __init__(
        self,
        transport: TransportKind = "tcp",
        *,
        workdir: str | os.PathLike | None = None,
        config: DeploymentConfig | str | os.PathLike | None = None,
        timeout: float = 600.0,
        seed: int | None = None,
    ) -> None:
        if transport not in ("tcp", "inprocess"):
            raise ConfigError(f"Unknown rep3 transport {transport!r}; use 'tcp' or 'inprocess'.")
        if timeout <= 0:
            raise ConfigError("The rep3 timeout must be positive.")
        if config is not None and not isinstance(config, DeploymentConfig):
            config = load_config(config)
        self.transport = transport
        self.workdir = None if workdir is None else Path(workdir)
        self.config = config
        self.timeout = float(timeout)
        self.seed = seed
        self.last_stats: dict = {}

    def measure(
        self,
        holders: Sequence[ExpressionData],
        params: ProtocolParams,
        *,
        rng: np.random.Generator | None = None,
    ) -> NoisyMeasurements:
        """Share each holder's data, run the three servers, open the outputs.

        Parameters
        ----------
        holders : sequence of ExpressionData
            One matrix per holder; same genes (any column order is aligned to
            the first holder's) and labels from one public domain.
        params : ProtocolParams
        rng : ignored
            The noise is generated inside the MPC from the servers' keys; it
            cannot come from a caller's generator.

        Returns
        -------
        NoisyMeasurements
            With ``engine="rep3"``.
        """
        holders = align_holders(holders, params)
        genes = tuple(holders[0].gene_names)
        domain = tuple(holders[0].label_names)
        session = self.config.session if self.config is not None else f"run-{secrets.token_hex(6)}"
        own_dir = self.workdir is None
        work = Path(tempfile.mkdtemp(prefix="fedsyn-rep3-")) if own_dir else self.workdir
        work.mkdir(parents=True, exist_ok=True)
        ok = False
        try:
            share_rng = None if self.seed is None else np.random.default_rng([self.seed, 0x7368])
            per_server: list[list[Path]] = [[], [], []]
            for k, h in enumerate(holders):
                paths = share_holder(
                    h, holder_id=f"holder{k}", out_dir=work / "bundles", frac_bits=params.frac_bits,
                    label_names=domain, gene_names=genes, run_id=session or None,
                    clip=params.clip if params.mean_mode == "dp" else None, rng=share_rng,
                )
                for i, p in enumerate(paths):
                    per_server[i].append(p)
            if self.transport == "inprocess":
                result = self._run_inprocess(per_server, params, session)
            else:
                from .local import run_local_deployment

                result = run_local_deployment(
                    per_server, params, workdir=work, timeout=self.timeout, config=self.config,
                    session=session,
                )
            ok = True
            return result
        finally:
            if own_dir and ok:
                shutil.rmtree(work, ignore_errors=True)
            elif own_dir:
                _remove_secrets(work)
                logger.error("rep3: run failed; server logs kept in %s (bundles and private keys removed)", work)
            elif not ok:
                logger.error("rep3: run failed; bundles, certificates and logs kept in %s", work)

    def _run_inprocess(self, per_server: list[list[Path]], params: ProtocolParams, session: str) -> NoisyMeasurements:
        from .release_server import check_metadata, measurements_from_shares
        from .server import compute_output_shares, load_bundles_for, public_metadata
        from .transport import InProcessNetwork, run_parties

        bundles = [load_bundles_for(i, per_server[i], params, run_id=session or None) for i in range(3)]
        metas = {i: public_metadata(bundles[i], params) for i in range(3)}
        meta = check_metadata(metas)

        def party(i: int, transport):
            return compute_output_shares(i, transport, bundles[i], params, seed=self.seed)

        results = run_parties(party, network=InProcessNetwork(timeout=self.timeout))
        shares = {i: results[i][0] for i in range(3)}
        stats = {f"server{i}": results[i][1] for i in range(3)}
        self.last_stats = stats
        return measurements_from_shares(
            shares, meta, params, extra_meta={"transport": "inprocess", "servers": stats}
        )


def _remove_secrets(work: Path) -> None:
    """Delete the bundles and private keys of a failed run in its own temporary directory."""
    shutil.rmtree(work / "bundles", ignore_errors=True)
    for key in (work / "certs").glob("*.key"):
        key.unlink(missing_ok=True)
