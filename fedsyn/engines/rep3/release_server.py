"""The release server of a rep3 deployment: output shares in, noisy measurements and synthetic data out.

The release server accepts the three computing servers' output shares over TLS
(each server must present its ``fedsyn-server-<i>`` certificate of the
deployment CA), checks that the three agree on the public metadata and that the
replicated shares are consistent (share ``s_i`` arrives from both server ``i``
and server ``i+1`` and must be identical: a server that alters its copy is
detected), opens only the protocol's outputs -- noisy counts, and bin means
(``paper`` mode) or noisy bin sums (``dp`` mode) -- and builds
:class:`fedsyn.measurements.NoisyMeasurements`. It never receives an input share
or an intermediate value.

In ``dp`` mode the bin means are post-processing of DP outputs:
``mean = noisy_sum / max(noisy_count, 1)``, clipped to the public range.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...errors import ProtocolError
from ...measurements import NoisyMeasurements, decode_outputs, privacy_meta
from ...params import ProtocolParams
from .config import DeploymentConfig

logger = logging.getLogger(__name__)

__all__ = [
    "ReleaseResult",
    "check_metadata",
    "measurements_from_shares",
    "measurements_from_deliveries",
    "collect_measurements",
    "run_release",
]

_AGREE = ("gene_digest", "gene_names", "label_names", "frac_bits", "run_id", "params", "privacy", "engine")


@dataclass(frozen=True)
class ReleaseResult:
    """Files the release command wrote.

    Attributes
    ----------
    measurements : NoisyMeasurements
    files : dict of str to pathlib.Path
        ``measurements`` (npz) and, if synthesized, ``synthetic`` (csv).
    """

    measurements: NoisyMeasurements
    files: dict[str, Path]


def check_metadata(metas: Mapping[int, dict]) -> dict:
    """The public metadata of servers 0, 1, 2, which must be identical; returns server 0's."""
    if sorted(metas) != [0, 1, 2]:
        raise ProtocolError(f"release server: output shares from servers {sorted(metas)}, need 0, 1, 2.")
    ref = metas[0]
    for i in (1, 2):
        for key in _AGREE:
            if metas[i].get(key) != ref.get(key):
                raise ProtocolError(
                    f"release server: servers 0 and {i} disagree on {key.replace('_', ' ')}: "
                    "they computed on different bundles or parameters."
                )
    return ref


def measurements_from_shares(shares: Mapping[int, Any], meta: dict, params: ProtocolParams) -> NoisyMeasurements:
    """Open three servers' ``Protocol1Shares`` (with the replicated consistency check) and decode them."""
    from .protocol1 import open_outputs

    opened = open_outputs([shares[0], shares[1], shares[2]], params)
    return decode_outputs(
        opened, gene_names=tuple(meta["gene_names"]), label_names=tuple(meta["label_names"]),
        params=params, engine=meta.get("engine") or "rep3", histogram=opened.pop("histogram", None),
        gram=opened.pop("gram", None), factor=opened.pop("factor", None),
        meta={"run_id": meta.get("run_id"), **privacy_meta(meta.get("privacy"))},
    )


def measurements_from_deliveries(deliveries: Mapping[int, tuple[dict, dict[str, np.ndarray]]]) -> NoisyMeasurements:
    """:class:`NoisyMeasurements` from what :class:`~fedsyn.engines.rep3.net.ReleaseListener` collected."""
    from .server import unpack_outputs

    meta = check_metadata({i: m for i, (m, _) in deliveries.items()})
    params = ProtocolParams.from_dict(meta["params"])
    shares = {i: unpack_outputs(arrays, m.get("outputs", {})) for i, (m, arrays) in deliveries.items()}
    return measurements_from_shares(shares, meta, params)


def collect_measurements(
    config: DeploymentConfig, *, timeout: float | None = None, abort: threading.Event | None = None,
    ready: threading.Event | None = None,
) -> NoisyMeasurements:
    """Listen at the release address of ``config`` until all three servers delivered; open.

    Parameters
    ----------
    timeout : float or None, default None
        Seconds to wait for all three; ``None``: ``connect_timeout + timeout`` of
        the config plus the protocol's generous allowance (an hour).
    abort : threading.Event or None
        Stop waiting when set (local orchestration sets it when a server fails).
    ready : threading.Event or None
        Set once listening.
    """
    from .net import ReleaseListener

    r = config.release
    listener = ReleaseListener((r.bind or r.host, r.port), config.release_tls(), session=config.session)
    if ready is not None:
        ready.set()
    wait = timeout if timeout is not None else config.connect_timeout + config.timeout + 3600.0
    t0 = time.perf_counter()
    deliveries = listener.collect(timeout=wait, abort=abort)
    logger.info("release server: all output shares received after %.1f s", time.perf_counter() - t0)
    return measurements_from_deliveries(deliveries)


def run_release(
    config: DeploymentConfig,
    *,
    out_dir: str | os.PathLike,
    synthesize: bool = True,
    n_records: int | None = None,
    seed: int | None = None,
    timeout: float | None = None,
) -> ReleaseResult:
    """The release server's whole job: collect, open, save, synthesize.

    Parameters
    ----------
    config : DeploymentConfig
    out_dir : path-like
        A new (or empty) directory; receives ``measurements.npz`` and
        ``synthetic.csv``, written as a whole (:func:`fedsyn.atomic.staged_directory`).
        An earlier release is never replaced: it spent privacy budget.
    synthesize : bool, default True
        Fit Private-PGM, sample and de-bin (:func:`fedsyn.release.synthesize`).
    n_records : int or None, default None
        Synthetic records to sample; default the number of training records.
    seed : int or None, default None
        Seed of the sampling (post-processing; reproducible experiments only).
    timeout : float or None, default None
        See :func:`collect_measurements`.
    """
    from ...accounting import PrivacyPlan, check_budget, privacy_block, privacy_sentence
    from ...atomic import staged_directory, write_json_atomic
    from ...publish import synthesize_and_write
    from ...randomness import sampling_rng

    out = Path(out_dir)
    with staged_directory(out, overwrite=False) as stage:  # refuses an existing release before waiting
        m = collect_measurements(config, timeout=timeout)
        raw = m.meta.get("privacy")
        plan = None if raw is None else PrivacyPlan.from_dict(raw)
        if plan is not None:
            check_budget(plan)  # the release server checks the guarantee it reports, too
        published = synthesize_and_write(m, stage, synthesize_records=synthesize, n_records=n_records,
                                         rng=sampling_rng(seed))
        summary = {"privacy": privacy_block(plan), "statement": privacy_sentence(plan),
                   "run_id": m.meta.get("run_id"), "genes": m.n_genes, "labels": list(m.label_names),
                   "model": m.model_record(),
                   "synthetic_records": None if published.synthetic is None else published.synthetic.n_samples}
        files = dict(published.files, summary=write_json_atomic(stage / "release.json", summary))
        if plan is None or m.profile == "paper":  # not covered by a DP guarantee: owner only
            for path in files.values():
                os.chmod(path, 0o600)
    files = {k: out / p.name for k, p in files.items()}
    logger.info("release server: %s", privacy_sentence(plan))
    logger.info("release server: wrote %s", ", ".join(str(p) for p in files.values()))
    return ReleaseResult(measurements=m, files=files)
