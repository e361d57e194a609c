"""A rep3 computing server: bundles in, Protocol 1 with two peers, output shares to the release server.

:func:`run_server` is what ``fedsyn serve`` runs on each of the three hosts:

1. load and validate every holder's bundle for this server (any number of
   holders; they must agree on genes, labels, fractional bits and run) --
   refused bundles stop the server before it opens a connection; holders are
   pooled in the canonical order of their ids;
2. connect to the two other servers over mutually authenticated TLS 1.3
   (:class:`~fedsyn.engines.rep3.net.TLSTransport`) and check that all three
   hold bundles of the same sharings (holders, sample counts, sharing ids) and
   the same public parameters (:func:`agree_on_metadata`) -- servers that
   disagree stop before any share-dependent message is sent;
3. run Protocol 1 (:func:`fedsyn.engines.rep3.protocol1.run_protocol1`) on the
   replicated shares;
4. send this server's replicated shares of the *outputs* (noisy counts and bin
   means or noisy sums) over a separate TLS connection to the release server
   only, and wait for its receipt.

What a server sees: its two shares of every input and every intermediate value
(each uniformly random on its own), the public metadata (gene list, label
domain, per-holder sample counts) and, by design of the protocols, a few
revealed values that are independent of the data (e.g. comparison bits after a
secret shuffle; see the primitives' docstrings). Its output shares alone reveal
nothing either: the release server needs shares from at least two servers.

No data, share or output value is ever logged; logs carry only sizes, timings
and byte counts.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...bundle import Bundle, load_server_bundles
from ...errors import BundleError, ConfigError, FedsynError, ProtocolError
from ...ledger import Ledger
from ...params import ProtocolParams, RunParams
from ...serving import (
    admit_run,
    agree_on_metadata,
    check_run_params,
    metadata_digest,
    release_metadata,
    server_metadata,
)
from .config import DeploymentConfig
from .transport import Transport

logger = logging.getLogger(__name__)

__all__ = [
    "ServerResult",
    "check_run_params",
    "server_metadata",
    "release_metadata",
    "metadata_digest",
    "agree_on_metadata",
    "compute_output_shares",
    "pack_outputs",
    "unpack_outputs",
    "run_server",
]


@dataclass(frozen=True)
class ServerResult:
    """What one server did (public figures only).

    Attributes
    ----------
    index : int
    n_records : int
        Samples over all holders.
    holders : tuple of str
    seconds : float
        Wall time of the protocol (connection set-up excluded).
    bytes_sent : int
        Payload bytes sent to the other servers.
    stats : dict
        Per-phase timings, bytes and rounds.
    """

    index: int
    n_records: int
    holders: tuple[str, ...]
    seconds: float
    bytes_sent: int
    stats: dict



def load_bundles_for(index: int, paths: Sequence[str | os.PathLike], params: ProtocolParams, *,
                     run_id: str | None = None) -> list[Bundle]:
    """Load all holders' bundles for server ``index`` and check them against ``params``."""
    bundles = load_server_bundles(paths, party=index, frac_bits=params.frac_bits, run_id=run_id or None)
    m = bundles[0].manifest
    if m.n_labels != params.n_labels:
        raise BundleError(
            f"{bundles[0].path}: label domain of {m.n_labels} labels, the run's parameters say {params.n_labels}."
        )
    return bundles



def compute_output_shares(
    index: int,
    transport: Transport,
    bundles: Sequence[Bundle],
    params: ProtocolParams,
    *,
    seed: int | None = None,
):
    """Run Protocol 1 as server ``index`` on its bundles; returns (Protocol1Shares, stats dict).

    First checks with the peers that all hold the same public inputs
    (:func:`agree_on_metadata`), then sets up the PRF keys and runs Protocol 1.

    Parameters
    ----------
    seed : int or None, default None
        Derive the PRF keys from a seed: reproducible tests ONLY.
    """
    from .protocol1 import HolderInput, run_protocol1
    from .runtime import Party
    from .sharing import AShare

    agree_on_metadata(index, transport, server_metadata(bundles, params))
    party = Party.setup(index, transport, seed=seed)
    inputs = [
        HolderInput(values=AShare(b.values[0], b.values[1]), labels=AShare(b.labels[0], b.labels[1]))
        for b in bundles
    ]
    out = run_protocol1(party, inputs, params)
    return out, party.stats.as_dict()


def _jsonable(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _jsonable(getattr(v, f.name)) for f in dataclasses.fields(v) if not f.name.startswith("_")}
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        raise ProtocolError("refusing to serialize an unshared array as public metadata")
    return v


def pack_outputs(shares) -> tuple[dict[str, np.ndarray], dict]:
    """Split a ``Protocol1Shares`` into share arrays (``<field>.a``/``.b``) and public fields."""
    from .sharing import AShare

    arrays: dict[str, np.ndarray] = {}
    public: dict = {}
    for f in dataclasses.fields(shares):
        v = getattr(shares, f.name)
        if isinstance(v, AShare):
            arrays[f"{f.name}.a"] = np.ascontiguousarray(v.a)
            arrays[f"{f.name}.b"] = np.ascontiguousarray(v.b)
        elif isinstance(v, np.ndarray):  # histogram, gram: opened to the servers (DP releases): public
            arrays[f"{f.name}.public"] = np.ascontiguousarray(v, dtype=np.int64)
        else:
            public[f.name] = _jsonable(v)
    return arrays, public


def unpack_outputs(arrays: dict[str, np.ndarray], public: dict):
    """Rebuild a ``Protocol1Shares`` from :func:`pack_outputs`'s parts."""
    from .protocol1 import Protocol1Shares
    from .sharing import AShare

    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(Protocol1Shares):
        if f"{f.name}.a" in arrays:
            a, b = arrays[f"{f.name}.a"], arrays[f"{f.name}.b"]
            if a.dtype != np.uint64 or b.dtype != np.uint64 or a.shape != b.shape:
                raise ProtocolError(f"malformed output shares for {f.name}")
            kwargs[f.name] = AShare(a, b)
        elif f"{f.name}.public" in arrays:
            kwargs[f.name] = np.asarray(arrays[f"{f.name}.public"], dtype=np.int64)
        elif f.name in public:
            kwargs[f.name] = public[f.name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            raise ProtocolError(f"output shares lack the field {f.name}")
    return Protocol1Shares(**kwargs)


def run_server(
    index: int,
    config: DeploymentConfig,
    bundle_paths: Sequence[str | os.PathLike],
    run_params: RunParams,
    *,
    out_dir: str | os.PathLike | None = None,
    seed: int | None = None,
    ledger: Ledger | None = None,
    allow_reuse: bool = False,
    insecure_no_noise: bool = False,
) -> ServerResult:
    """Run computing server ``index`` of a deployment from start to delivery.

    Parameters
    ----------
    index : int
        0, 1 or 2.
    config : DeploymentConfig
        Addresses, certificates, session tag and timeouts.
    bundle_paths : sequence of path-like
        This server's bundle files (one per holder).
    run_params : RunParams
        ``params.json``: the protocol parameters and their privacy plan
        (identical on all servers), checked by :func:`check_run_params`.
    out_dir : path-like or None, default None
        Where to write ``server<i>.stats.json`` (public figures only).
    seed : int or None, default None
        Reproducible PRF keys, for tests ONLY.
    ledger : Ledger or None, default None
        This server's privacy-budget ledger (:mod:`fedsyn.ledger`); ``None``
        keeps no ledger (tests).
    allow_reuse : bool, default False
        Run bundles the ledger has seen before (spending their budget again).
    insecure_no_noise : bool, default False
        Accept noise-free parameters (testing engines only).

    Raises
    ------
    BundleError
        A bundle is refused (before any connection is opened).
    ConfigError
        The parameters or their privacy plan are refused, or the ledger
        shows the bundles were used before (before any connection is opened).
    ProtocolError
        A peer or the release server failed, vanished or timed out.
    """
    if index not in (0, 1, 2):
        raise ConfigError(f"Server index must be 0, 1 or 2, got {index}.")
    from .net import ReleaseLink, TLSTransport, notify_release_abort, protocol1_frame_limit

    params = run_params.protocol
    tls = config.server_tls(index)
    try:
        bundles = load_bundles_for(index, bundle_paths, params, run_id=config.session or None)
        plan = check_run_params(run_params, bundles, insecure_no_noise=insecure_no_noise)
        meta = server_metadata(bundles, params)
        logger.info(
            "server %d: %d holder bundle(s), %d samples x %d genes, %d labels",
            index, len(bundles), meta["n_records"], len(meta["gene_names"]), len(meta["label_names"]),
        )
        admit_run(ledger, index, bundles, plan, session=config.session, allow_reuse=allow_reuse)
    except FedsynError as exc:  # refused before any connection: the release server stops waiting, knowing why
        notify_release_abort(index, config.release.address, tls, str(exc), session=config.session)
        raise
    me = config.servers[index]
    with ReleaseLink.connect(index, config.release.address, tls, session=config.session,
                             timeout=config.connect_timeout) as release:
        transport = TLSTransport.connect(
            index, config.addresses, tls, bind_host=me.bind,
            timeout=config.timeout, connect_timeout=config.connect_timeout, session=config.session,
            max_frame_bytes=protocol1_frame_limit(meta["n_records"], len(meta["gene_names"]),
                                                  len(meta["label_names"])),
            watch=release,
        )
        t0 = time.perf_counter()
        try:
            shares, stats = compute_output_shares(index, transport, bundles, params, seed=seed)
        except BaseException as exc:  # also Ctrl-C: peers and the release server learn it at once
            transport.abort(exc)
            release.abort(exc, origin=transport.failed_peer)
            raise
        transport.close()
        seconds = time.perf_counter() - t0
        arrays, public = pack_outputs(shares)
        public.pop("stats", None)  # cost figures stay with the server (bytes and rounds depend on n)
        delivery = dict(release_metadata(bundles, params, plan), outputs=public, party=index)
        logger.info("server %d: protocol done in %.2f s, %d bytes sent; delivering output shares",
                    index, seconds, transport.bytes_sent)
        release.deliver(delivery, arrays, timeout=config.timeout)
    result = ServerResult(
        index=index, n_records=meta["n_records"], holders=tuple(meta["holders"]), seconds=seconds,
        bytes_sent=int(transport.bytes_sent), stats=stats,
    )
    if out_dir is not None:
        from ...atomic import write_json_atomic

        write_json_atomic(Path(out_dir) / f"server{index}.stats.json",
                          dict(dataclasses.asdict(result), transport="tcp"))
    logger.info("server %d: output shares delivered to the release server", index)
    return result
