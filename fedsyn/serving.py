"""What every computing server checks and agrees on, whatever engine computes.

A computing server -- ``fedsyn serve`` with the embedded rep3 engine or with an
MP-SPDZ party binary -- does the same things around the secure computation:

1. refuses parameters whose noise does not give the guarantee their privacy
   plan states for the holders' inputs (:func:`check_run_params`);
2. records the run in its privacy-budget ledger, refusing sharings used before
   unless reuse is allowed (:func:`admit_run`, :class:`fedsyn.ledger.Ledger`);
3. checks with the two other servers, before any computation, that all three
   hold the same public inputs (:func:`server_metadata`, :func:`agree_on_metadata`);
4. tells the release server, beside its output shares, only what the release
   needs (:func:`release_metadata`): never a sample count.

A server's *inputs* are any objects with a ``manifest``
(:class:`fedsyn.bundle.BundleManifest`: holder id, shapes, genes, labels,
fractional bits, run id, sharing id) and ``n_samples``: rep3 bundles
(:class:`fedsyn.bundle.Bundle`) or MP-SPDZ Persistence inputs
(:class:`fedsyn.engines.mpspdz.persistence.PersistenceInput`), sorted by holder id.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

from .bundle import gene_digest
from .errors import ConfigError, ProtocolError
from .params import ProtocolParams, RunParams

if TYPE_CHECKING:
    from .bundle import BundleManifest
    from .ledger import Ledger

logger = logging.getLogger(__name__)

__all__ = [
    "ServerInput",
    "check_run_params",
    "admit_run",
    "server_metadata",
    "release_metadata",
    "metadata_digest",
    "agree_on_metadata",
]


class ServerInput(Protocol):
    """One holder's input at one server (a rep3 bundle or an MP-SPDZ Persistence input)."""

    @property
    def manifest(self) -> "BundleManifest": ...

    @property
    def n_samples(self) -> int: ...


class _Transport(Protocol):
    def send(self, to: int, array: np.ndarray) -> None: ...

    def recv(self, frm: int) -> np.ndarray: ...


def check_run_params(run_params: RunParams, bundles: Sequence[ServerInput], *, insecure_no_noise: bool = False):
    """Refuse parameters whose noise does not give the guarantee they state for these bundles.

    Checks, before any connection is opened: the noise is on (or the loudly
    named testing flag was given); a privacy plan is present, made for the
    bundles' number of genes and labels, describing exactly the tables this
    run releases with the noise ``params`` will add; and its noise spends no
    more than its epsilon (recomputed here with the accountant).

    Returns
    -------
    fedsyn.accounting.PrivacyPlan or None
        The checked plan (``None`` only for an allowed noise-free test run).

    Raises
    ------
    ConfigError
        Naming what is wrong and what to do.
    """
    from .accounting import check_budget, release_templates

    params, plan = run_params.protocol, run_params.privacy
    m = bundles[0].manifest
    d, n_labels = m.n_genes, m.n_labels
    if not params.noise:
        if not insecure_no_noise:
            raise ConfigError("the parameters switch the noise off: exact counts would be released. Refused; "
                              "--insecure-no-noise exists for testing engines only.")
        logger.warning("NO NOISE: this run releases exact counts (--insecure-no-noise); it is not private")
        return None
    if plan is None:
        raise ConfigError("the parameters carry no privacy plan; write params.json with `fedsyn plan`.")
    if (plan.n_genes, plan.n_labels) != (d, n_labels) or (params.n_genes not in (None, d)):
        raise ConfigError(
            f"the privacy plan was made for {plan.n_genes} genes and {plan.n_labels} labels, but the bundles "
            f"hold {d} genes and {n_labels} labels: its noise would not give its epsilon. Write a plan for these "
            "shapes with `fedsyn plan`."
        )
    want = {(t.name, t.tables, t.shift) for t in release_templates(
        n_genes=d, n_labels=n_labels, profile=params.profile, model=params.model,
        factor_anchors=params.factor_anchors)}
    have = {(f.name, f.tables, f.shift) for f in plan.families}
    sigmas = params.family_sigmas()
    if want != have or any(abs(f.sigma - sigmas.get(f.name, -1.0)) > 1e-9 * max(1.0, f.sigma)
                           for f in plan.families):
        raise ConfigError("the privacy plan does not describe what these parameters release (tables, "
                          "sensitivities or noise differ); write params.json with `fedsyn plan`.")
    spent = check_budget(plan)
    logger.info("server: privacy plan checked: epsilon %.4g (spent %.4g) at delta %g", plan.epsilon, spent,
                plan.delta)
    return plan


def admit_run(ledger: "Ledger | None", index: int, inputs: Sequence[ServerInput], plan, *,
              session: str = "", allow_reuse: bool = False) -> None:
    """Record this run in server ``index``'s ledger (refusing sharings used before).

    ``plan`` is what :func:`check_run_params` returned (``None``: an allowed
    noise-free test run, recorded with epsilon 0). ``ledger=None`` keeps no
    ledger (tests).

    Raises
    ------
    ConfigError
        The ledger shows these sharings were used before and ``allow_reuse`` is false.
    """
    if ledger is None:
        return
    total = ledger.admit(
        run_id=session or inputs[0].manifest.run_id,
        sharings={b.manifest.holder_id: b.manifest.sharing_id or "" for b in inputs},
        epsilon=plan.epsilon if plan is not None else 0.0, delta=plan.delta if plan is not None else 0.0,
        plan_digest=plan.digest() if plan is not None else None, allow_reuse=allow_reuse,
    )
    logger.info("server %d: ledger %s: epsilon %.4g, delta %.3g spent on these sharings in total",
                index, ledger.path, *total)


def server_metadata(bundles: Sequence[ServerInput], params: ProtocolParams) -> dict:
    """Public facts the three servers must agree on before computing (never sent to the release server).

    Holds each holder's sample count and sharing id: the servers learn them
    from the shapes anyway (``docs/security.md``), the release server must not.
    """
    m = bundles[0].manifest
    return {
        "gene_names": list(m.gene_names),
        "gene_digest": gene_digest(m.gene_names),
        "label_names": list(m.label_names),
        "holders": {b.manifest.holder_id: b.n_samples for b in bundles},
        "sharings": [[b.manifest.holder_id, b.manifest.sharing_id] for b in bundles],
        "n_records": int(sum(b.n_samples for b in bundles)),
        "frac_bits": m.frac_bits,
        "run_id": m.run_id,
        "params": params.to_dict(),
    }


def release_metadata(bundles: Sequence[ServerInput], params: ProtocolParams, privacy=None) -> dict:
    """What a server tells the release server beside its output shares (the three must agree).

    Nothing about the number of records: under add/remove adjacency ``n`` and
    every holder's ``n_k`` are private (the release server takes the total
    from the noisy label table).
    """
    m = bundles[0].manifest
    return {
        "gene_names": list(m.gene_names),
        "gene_digest": gene_digest(m.gene_names),
        "label_names": list(m.label_names),
        "frac_bits": m.frac_bits,
        "run_id": m.run_id,
        "params": params.to_dict(),
        "privacy": None if privacy is None else privacy.to_dict(),
    }


def metadata_digest(meta: dict) -> bytes:
    """SHA-256 of the public metadata in canonical JSON (key order and holder order fixed)."""
    return hashlib.sha256(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8")).digest()


def agree_on_metadata(index: int, transport: _Transport, meta: dict) -> None:
    """Check, before any computation, that the three servers hold the same public inputs.

    Each server sends its :func:`server_metadata` itself (canonical JSON:
    holders in pooling order with their sample counts and sharing ids, genes,
    labels, fractional bits, run id, parameters -- public facts the servers
    learn from their bundles anyway; nothing about values) to both peers and
    compares it field by field. Bundles of different sharings, another holder
    order or other parameters would make the servers compute on inconsistent
    shares (and open comparison bits of garbage keys); they are refused here
    instead, with the first differences named (:func:`fedsyn.metadata.metadata_differences`).

    Raises
    ------
    ProtocolError
        A peer's metadata differs (saying what differs) or is malformed.
    """
    from .metadata import metadata_differences

    mine = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8")
    peers = [j for j in range(3) if j != index]
    for j in peers:
        transport.send(j, np.frombuffer(mine, dtype=np.uint8))
    got: dict[int, bytes] = {}
    for j in peers:
        msg = transport.recv(j)
        if not (isinstance(msg, np.ndarray) and msg.dtype == np.uint8 and msg.ndim == 1):
            raise ProtocolError(f"server {index}: malformed public metadata from server {j}.")
        got[j] = msg.tobytes()
    differ = [j for j in peers if got[j] != mine]
    if not differ:
        return
    theirs: dict[int, dict] = {}
    for j in differ:
        try:
            theirs[j] = json.loads(got[j].decode("utf-8"))
            if not isinstance(theirs[j], dict):
                raise ValueError("not an object")
        except ValueError:
            raise ProtocolError(f"server {index}: malformed public metadata from server {j} (another fedsyn "
                                "version?).") from None

    def listed(diffs: list[str]) -> str:
        return "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more differences" if len(diffs) > 4 else "")

    advice = ("Every server needs the bundles of the same `fedsyn share` runs and the same params.json. "
              "Nothing was computed.")
    j = differ[0]
    if len(differ) == 2 and got[peers[0]] == got[peers[1]]:  # the two others agree: this server is the odd one
        diffs = metadata_differences(theirs[j], meta, here=f"at servers {peers[0]} and {peers[1]}",
                                     there=f"at server {index}")
        raise ProtocolError(f"server {index}: this server holds other public inputs than servers {peers[0]} and "
                            f"{peers[1]}: {listed(diffs)}. {advice}")
    diffs = metadata_differences(meta, theirs[j], here=f"at server {index}", there=f"at server {j}")
    raise ProtocolError(f"server {index}: server {j} holds other public inputs: {listed(diffs)}. {advice}")
