"""A computing server of a deployment that computes with an MP-SPDZ party binary.

:func:`run_server` is what ``fedsyn serve --engine mp-spdz --id i`` runs on
each of the three hosts, from the same deployment file, parameters and release
server as the rep3 engine (``fedsyn serve --engine rep3``):

1. check this server's inputs -- every holder's ``Transactions-P<i>.data`` with
   its manifest (:func:`~fedsyn.engines.mpspdz.persistence.load_server_inputs`)
   -- and the privacy plan (:func:`fedsyn.serving.check_run_params`), compile
   ``protocol1.mpc`` for the public shapes (deterministic: every server
   compiles the same bytecode) and record the run in the ledger
   (:func:`fedsyn.serving.admit_run`); anything refused stops the server
   before it opens a connection, and the release server is told why;
2. connect to the two other servers over fedsyn's mutually authenticated TLS
   link (the control link, :class:`~fedsyn.engines.rep3.net.TLSTransport`,
   the deployment's ``port``) and to the release server; check that all three
   hold the same public inputs *and the same compiled program*
   (:func:`fedsyn.serving.agree_on_metadata`, the program's SHA-256 included);
3. exchange this run's MP-SPDZ certificates over the control link
   (:mod:`.tls`) and start the party binary (``-ip`` file from the deployment's
   hosts and ``mpspdz_port``); the holders' files are concatenated in
   the canonical holder order (sorted by holder id, as rep3 pools them);
4. watch the party, the two peers and the release server: a party that
   exits with an error, a peer that aborts, dies or goes silent (heartbeats),
   or a party that makes no progress (no CPU time, no network traffic) for
   the deployment's ``timeout`` stops this server at once -- its party is
   killed, the peers and the release server are told, and the error names the
   server where the failure started;
5. read this party's shares of the outputs from its Persistence file (the
   program opens nothing) and send them over the release link, where
   ``fedsyn release`` opens them with the replicated consistency check.

What a server sees: its own pair of shares of every input, intermediate value
and output; what the program reveals to all parties (comparison outcomes after
a secure shuffle, independent of the data; see ``protocol1.mpc``); the DP
releases opened between phases (``strict``: the noisy histograms; the factor
model: the noisy Gram entries, label and (gene, label) tables, and the public
factor plan computed from them); the public metadata (genes, labels,
per-holder sample counts). Never an output the release server opens.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import BundleError, ConfigError, FedsynError, ProtocolError
from ...ledger import Ledger
from ...measurements import OutputLayout
from ...params import RunParams
from ...serving import admit_run, agree_on_metadata, check_run_params, release_metadata, server_metadata
from ..rep3.config import DeploymentConfig
from . import outputs, persistence, runner, tls
from .engine import PhaseState, combine_reports, geometry_digest, programs_for
from .runner import Security

logger = logging.getLogger(__name__)

__all__ = ["run_server", "CONTROL_FRAME_BYTES"]

#: Largest frame on the control link: a metadata digest, a certificate.
CONTROL_FRAME_BYTES = 1 << 20
#: After this party's binary failed, how long to wait for a peer's report (a
#: peer's failure is the likelier root cause: a dead peer makes this party fail too).
BLAME_GRACE = 2.0
_POLL = 0.05


def engine_name(security: str) -> str:
    return f"mp-spdz-{security}"


def run_server(
    index: int,
    config: DeploymentConfig,
    sources: Sequence[str | os.PathLike],
    run_params: RunParams,
    *,
    security: Security = "passive",
    out_dir: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    home: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    ledger: Ledger | None = None,
    allow_reuse: bool = False,
    insecure_no_noise: bool = False,
):
    """Run computing server ``index`` of a deployment with MP-SPDZ, from start to delivery.

    Parameters
    ----------
    index : int
        0, 1 or 2 (MP-SPDZ party ``index``).
    config : DeploymentConfig
        The deployment file: fedsyn's addresses and certificates, the MP-SPDZ
        party ports (``mpspdz_port``, default ``port + 100``), timeouts.
    sources : sequence of path-like
        This server's inputs: holder directories (``<holder>/manifest.json``
        and ``Transactions-P<index>.data``, from ``fedsyn share --format
        mp-spdz``) or directories holding such directories.
    run_params : RunParams
        ``params.json`` from ``fedsyn plan`` (identical on all servers).
    security : {"passive", "active"}, default "passive"
        ``replicated-ring-party.x`` or ``malicious-rep-ring-party.x``; all
        three servers must choose the same (they compare it before running).
    out_dir : path-like or None, default None
        Where to write ``server<i>.stats.json`` (public figures only).
    workdir : path-like or None, default None
        The party's run directory (kept: logs, hosts file, this run's
        certificates; the share files and the run's private key are deleted at
        the end). A temporary directory, removed afterwards, when None.
    home, cache_dir : path-like or None
        MP-SPDZ directory (default ``$MP_SPDZ_HOME``) and compile cache.
    ledger, allow_reuse, insecure_no_noise
        As for :func:`fedsyn.engines.rep3.server.run_server`.

    Returns
    -------
    fedsyn.engines.rep3.server.ServerResult
        ``seconds``: the party binary's own time (the MPC phase);
        ``bytes_sent``: what it reports as sent; ``stats``: rounds, per-phase
        figures, the binary's wall time, compile time.

    Raises
    ------
    EngineUnavailableError
        MP-SPDZ or the party binary is missing, or the program does not compile.
    BundleError, ConfigError
        Refused inputs, parameters, privacy plan or ledger (before any connection).
    ProtocolError
        A peer, a link, the party binary or the release server failed; the
        message names the server where it started.
    """
    from ..rep3.net import ReleaseLink, TLSTransport, notify_release_abort
    from ..rep3.server import ServerResult

    if index not in (0, 1, 2):
        raise ConfigError(f"Server index must be 0, 1 or 2, got {index}.")
    if security not in ("passive", "active"):
        raise ConfigError(f"Unknown security {security!r}; use 'passive' or 'active'.")
    params = run_params.protocol
    tls_files = config.server_tls(index)
    try:
        installation = runner.find_installation(home)
        installation.binary(security)
        mp_addresses = config.mpspdz_addresses
        inputs = persistence.load_server_inputs(
            sources, party=index, frac_bits=params.frac_bits, run_id=config.session or None)
        m = inputs[0].manifest
        programs_for(1, m.n_genes, params)  # refuses what the programs do not implement, before connecting
        if m.n_labels != params.n_labels:
            raise BundleError(f"{inputs[0].path}: label domain of {m.n_labels} labels, the run's parameters say "
                              f"{params.n_labels}.")
        plan = check_run_params(run_params, inputs, insecure_no_noise=insecure_no_noise)
        n, d = sum(b.n_samples for b in inputs), m.n_genes
        # one program (paper, public-edges) or two phases (strict), all compiled before connecting
        compiled = {phase: runner.compile_program(installation, program, args, security=security,
                                                  cache_dir=cache_dir)
                    for phase, program, args in programs_for(n, d, params)}
        digests = [runner.program_digest(c) for c in compiled.values()]
        meta = server_metadata(inputs, params)
        meta["mp-spdz"] = {"security": security, "program": "+".join(c.name for c in compiled.values()),
                           "program_sha256": digests[0] if len(digests) == 1 else
                           hashlib.sha256("+".join(digests).encode()).hexdigest(),
                           "parties": [f"{h}:{p}" for h, p in mp_addresses]}
        logger.info("server %d: %d holder input(s), %d samples x %d genes, %d labels; program %s... (%s)",
                    index, len(inputs), n, d, m.n_labels, meta["mp-spdz"]["program_sha256"][:16],
                    "cached" if all(c.cached for c in compiled.values()) else
                    f"compiled in {sum(c.compile_seconds for c in compiled.values()):.1f} s")
        admit_run(ledger, index, inputs, plan, session=config.session, allow_reuse=allow_reuse)
    except FedsynError as exc:  # refused before any connection: the release server stops waiting, knowing why
        notify_release_abort(index, config.release.address, tls_files, str(exc), session=config.session)
        raise

    layout = OutputLayout(d, params.n_labels, params.profile)
    tmp = tempfile.mkdtemp(prefix=f"fedsyn-mpspdz-server{index}-") if workdir is None else None
    work = Path(tmp) if tmp is not None else Path(workdir)  # type: ignore[arg-type]
    me = config.servers[index]
    try:
        own_cert = _prepare(work, installation, compiled, inputs, index, security)
        with ReleaseLink.connect(index, config.release.address, tls_files, session=config.session,
                                 timeout=config.connect_timeout) as release:
            transport = TLSTransport.connect(
                index, config.addresses, tls_files, bind_host=me.bind, timeout=config.timeout,
                connect_timeout=config.connect_timeout, session=config.session,
                max_frame_bytes=CONTROL_FRAME_BYTES, watch=release,
            )
            try:
                agree_on_metadata(index, transport, meta)
                certs = _exchange_certificates(index, transport, own_cert)
                tls.install_trust(work / "Player-Data", certs)
                hosts = runner.write_hosts(work, mp_addresses)
                state = PhaseState(n, d, params)
                reports, wall = {}, 0.0
                for phase, prog in compiled.items():
                    if not state.runs(phase):
                        continue
                    pub_in = state.public_input(phase)
                    if phase == "bins":
                        # every server derives the public geometry from the same opened histogram (or the
                        # given edges) with the same code; a cheap check that they did before phase 2
                        _agree_on_geometry(index, transport, geometry_digest(state.geometry))
                    if pub_in is not None:
                        runner.write_public_input(work, prog.name, pub_in)
                    cmd = runner.party_command(installation, prog.name, index, security=security, hosts_file=hosts)
                    reports[phase], seconds = _run_party(index, cmd, work, transport, stall=config.timeout,
                                                         tag="" if phase in ("paper", "bins") else f"-{phase}")
                    wall += seconds
                    if phase in ("hist", "gram"):  # a DP release, opened to every party
                        state.opened(phase, [runner.read_binary_output(work, index)])
                    if phase == "hist":
                        logger.info("server %d: phase 1 done: noisy histograms of %d genes opened", index, d)
                    if phase == "gram":
                        state.plan = _agree_on_plan(index, transport, state.plan)
                a, b = outputs.read_party_outputs(work / "Persistence", index, n=n, layout=layout,
                                                  security=security)
                factor = state.factor_outputs()
                if factor is not None:  # the factor model's phase B
                    at, fields = factor
                    fa, fb = outputs.read_party_fields(work / "Persistence", index, start=at, layout=fields,
                                                       security=security)
            except BaseException as exc:  # also Ctrl-C: peers and the release server learn it at once
                transport.abort(exc)
                release.abort(exc, origin=transport.failed_peer)
                raise
            transport.close()
            public = state.public_outputs()
            delivered = {"party_index": index, **({"factor": public["factor"]} if "factor" in public else {})}
            delivery = dict(release_metadata(inputs, params, plan), outputs=delivered, party=index,
                            engine=engine_name(security))
            report = combine_reports(reports)
            logger.info("server %d: MP-SPDZ party done in %.2f s (binary: %.2f s), %s MB sent; delivering output "
                        "shares", index, report["party_seconds"] or float("nan"), wall, report["data_sent_mb"])
            arrays = outputs.delivery_arrays(a, b, layout)
            if factor is not None:
                arrays.update(outputs.delivery_arrays(fa, fb, factor[1]))
                del fa, fb
            for name in ("histogram", "gram"):  # opened to the servers (DP releases): public, as rep3 delivers them
                if name in public:
                    arrays[f"{name}.public"] = np.ascontiguousarray(public[name], dtype=np.int64)
            release.deliver(delivery, arrays, timeout=config.timeout)
            del a, b
    finally:
        _scrub(work, index)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    result = ServerResult(
        index=index, n_records=n, holders=tuple(b.manifest.holder_id for b in inputs),
        seconds=float(report["party_seconds"] if report["party_seconds"] is not None else wall),
        bytes_sent=int(round((report["data_sent_mb"] or 0.0) * 1e6)),
        stats={
            "engine": engine_name(security), "rounds": report["rounds"], "wall_seconds": wall,
            "global_data_mb": report["global_data_mb"], "program": meta["mp-spdz"]["program"],
            "compile_seconds": sum(c.compile_seconds for c in compiled.values()),
            "compile_cached": all(c.cached for c in compiled.values()),
            "phases": {k: {"seconds": v["seconds"], "bytes_sent": int(round(v["mb"] * 1e6)), "rounds": v["rounds"]}
                       for k, v in report["phases"].items()},
        },
    )
    if out_dir is not None:
        import dataclasses

        from ...atomic import write_json_atomic

        write_json_atomic(Path(out_dir) / f"server{index}.stats.json",
                          dict(dataclasses.asdict(result), transport="mp-spdz"))
    logger.info("server %d: output shares delivered to the release server", index)
    return result


def _prepare(work: Path, installation, compiled, inputs, index: int, security: Security) -> bytes:
    """The party's run directory: program links, logs, its concatenated inputs, a fresh TLS identity."""
    work.mkdir(parents=True, exist_ok=True)
    for k, prog in enumerate(compiled.values()):
        runner.link_program(work, prog, fresh=k == 0)
    (work / "logs").mkdir(exist_ok=True)
    player_data = work / "Player-Data"
    if player_data.exists():
        shutil.rmtree(player_data)
    player_data.mkdir()
    pers = work / "Persistence"
    pers.mkdir(exist_ok=True)
    _concatenate(inputs, persistence.persistence_path(pers, index), security)
    return tls.make_identity(index, player_data)


def _concatenate(inputs, target: Path, security: Security) -> None:
    """This server's file of all holders, in the given (canonical) order, under one header (streamed)."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(persistence.header(security))  # type: ignore[arg-type]
        for b in inputs:
            with open(b.path, "rb") as src:
                src.seek(b.header_bytes)
                shutil.copyfileobj(src, out, 1 << 22)


def _exchange_certificates(index: int, transport, own: bytes) -> dict[int, bytes]:
    """Send this run's MP-SPDZ certificate to both peers over the control link; check theirs."""
    peers = [j for j in range(3) if j != index]
    for j in peers:
        transport.send(j, np.frombuffer(own, dtype=np.uint8))
    certs = {index: own}
    for j in peers:
        got = transport.recv(j)
        if not (isinstance(got, np.ndarray) and got.dtype == np.uint8 and got.ndim == 1):
            raise ProtocolError(f"server {index}: malformed MP-SPDZ certificate from server {j}.")
        try:
            tls.check_peer_certificate(got.tobytes(), j, sender=f"server {j}")
        except ProtocolError as exc:
            transport.failed_peer = j
            raise ProtocolError(f"server {index}: {exc}") from None
        certs[j] = got.tobytes()
        logger.info("server %d: MP-SPDZ certificate of party %d: sha256 %s", index, j, tls.fingerprint(certs[j])[:16])
    return certs


def _agree_on_geometry(index: int, transport, digest: str) -> None:
    """Exchange the SHA-256 of the phase-2 bin geometry with both peers over the control link; all must agree."""
    peers = [j for j in range(3) if j != index]
    for j in peers:
        transport.send(j, np.frombuffer(digest.encode(), dtype=np.uint8))
    for j in peers:
        got = transport.recv(j)
        theirs = got.tobytes().decode(errors="replace") if isinstance(got, np.ndarray) else repr(got)
        if theirs != digest:
            transport.failed_peer = j
            raise ProtocolError(f"server {index}: server {j} derived a different bin geometry for phase 2 "
                                f"(sha256 {theirs[:16]}... vs {digest[:16]}...): the phase-1 histograms or the "
                                "parameters differ")
    logger.info("server %d: bin geometry agreed with both peers (sha256 %s...)", index, digest[:16])


def _agree_on_plan(index: int, transport, own):
    """Server 0 sends its factor plan to servers 1 and 2, which check it against their own and adopt it
    (:func:`fedsyn.factor.agree`: floating point may differ between hosts, the plan must not)."""
    import json

    from ...factor import FactorPlan, agree

    if index == 0:
        data = np.frombuffer(json.dumps(own.to_public(), sort_keys=True).encode(), dtype=np.uint8)
        for j in (1, 2):
            transport.send(j, data)
        return own
    got = transport.recv(0)
    try:
        first = FactorPlan.from_public(json.loads(got.tobytes().decode()))
    except (AttributeError, UnicodeDecodeError, json.JSONDecodeError, ProtocolError) as exc:
        transport.failed_peer = 0
        raise ProtocolError(f"server {index}: malformed factor plan from server 0 ({exc}).") from None
    try:
        plan = agree(own, first)
    except ProtocolError as exc:
        transport.failed_peer = 0
        raise ProtocolError(f"server {index}: server 0's factor plan differs from this server's: {exc}") from None
    logger.info("server %d: factor plan agreed with server 0 (%s)", index,
                "factor found" if plan.found else "no factor: the (gene, label) tables are measured again")
    return plan


def _run_party(index: int, cmd: list[str], work: Path, transport, *, stall: float, tag: str = ""):
    """Run this server's party binary while watching its peers; returns (PartyReport, wall seconds)."""
    log = work / "logs" / f"party-{index}{tag}.log"
    logger.info("server %d: starting MP-SPDZ party %d (%s)", index, index, Path(cmd[0]).name)
    start = time.monotonic()
    proc = runner.start_party(cmd, work, log)
    last, last_change = None, start
    try:
        while True:
            code = proc.poll()
            now = time.monotonic()
            if code == 0:
                break
            if code is not None:
                # An error exit may be caused by a dead or failing peer (a lost connection): prefer
                # the peer's own report for a moment. A signal (e.g. the binary was killed) is ours.
                grace = now + (BLAME_GRACE if code > 0 else 0.0)
                while time.monotonic() < grace:
                    transport.check()
                    time.sleep(_POLL)
                text = _read(log)
                hint = runner.diagnose(text)
                raise ProtocolError(
                    f"server {index}: MP-SPDZ party {index} {_status(code)}" + (f": {hint}" if hint else "")
                    + f"\n--- party {index} log ({log}):\n{_tail(text)}"
                )
            transport.check()
            seen = runner.progress(proc.pid)
            if seen is None or seen != last:
                last, last_change = seen, now
            elif now - last_change > stall:
                raise ProtocolError(
                    f"server {index}: MP-SPDZ party {index} made no progress for {stall:g} s (no computation, "
                    "no network traffic): a peer or a link between the MP-SPDZ parties is stuck"
                )
            time.sleep(_POLL)
    finally:
        runner.stop_party(proc)
    wall = time.monotonic() - start
    return runner.parse_log(index, _read(log)), wall


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "<empty log>"


def _status(code: int) -> str:
    return f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"


def _scrub(work: Path, index: int) -> None:
    """Delete the run's shares (inputs and outputs) and its private key; logs and certificates stay."""
    for path in (work / "Persistence").glob("Transactions-*.data"):
        path.unlink(missing_ok=True)
    for path in (work / "Player-Data").glob("*.key"):
        path.unlink(missing_ok=True)
    for path in (work / "Player-Data").glob("Memory-*"):
        path.unlink(missing_ok=True)
