"""Three rep3 server processes on this machine, over real TCP + TLS on loopback.

:func:`run_local_deployment` does on one machine what three hosts would do:
it generates a deployment CA and certificates, picks free loopback ports,
writes a deployment file and ``params.json``, starts the release server's
listener in this process and spawns ``python -m fedsyn serve --id i`` three
times. Each server writes its log to ``<workdir>/server<i>.log``. If a server
exits with an error, or the run exceeds its timeout, the other servers are
killed and a :class:`~fedsyn.errors.ProtocolError` shows the tail of every
server's log.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from ...certs import generate_deployment_certs
from ...errors import ProtocolError
from ...measurements import NoisyMeasurements
from ...params import RunParams
from .config import DeploymentConfig, Endpoint, write_config

logger = logging.getLogger(__name__)

__all__ = ["free_ports", "make_local_config", "read_server_stats", "run_local_deployment"]

_TAIL_LINES = 15


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def make_local_config(workdir: str | os.PathLike, *, timeout: float, session: str = "") -> DeploymentConfig:
    """Certificates, free loopback ports and ``deployment.toml`` in ``workdir``."""
    work = Path(workdir)
    certs = generate_deployment_certs(work / "certs", overwrite=True)
    ports = free_ports(7)  # three servers, the release server, three MP-SPDZ parties
    servers = tuple(
        Endpoint(host="127.0.0.1", port=ports[i], cert=certs.server_certs[i], key=certs.server_keys[i],
                 mpspdz_port=ports[4 + i])
        for i in range(3)
    )
    config = DeploymentConfig(
        servers=servers,  # type: ignore[arg-type]
        release=Endpoint(host="127.0.0.1", port=ports[3], cert=certs.release_cert, key=certs.release_key),
        ca=certs.ca_cert,
        session=session,
        timeout=float(timeout),
        connect_timeout=float(min(timeout, 60.0)),
    )
    write_config(config, work / "deployment.toml")
    return config


def _tail(path: Path, n: int = _TAIL_LINES) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in lines[-n:]) or "    (empty log)"


def run_local_deployment(
    bundle_paths: Sequence[Sequence[str | os.PathLike]],
    run_params: RunParams,
    *,
    workdir: str | os.PathLike,
    timeout: float = 600.0,
    config: DeploymentConfig | None = None,
    session: str = "",
    verbose: bool = False,
    serve_args: Sequence[str] = (),
) -> NoisyMeasurements:
    """Run three ``fedsyn serve`` processes and the release listener; return the measurements.

    Parameters
    ----------
    bundle_paths : three sequences of path-like
        ``bundle_paths[i]``: the bundle files (or directories) of server ``i``.
    run_params : RunParams
        Written to ``params.json`` for the servers, which check it as
        ``fedsyn serve`` does (noise-free parameters are passed with
        ``--insecure-no-noise``). Each server keeps its privacy ledger in
        ``workdir``.
    workdir : path-like
        Receives certificates, ``deployment.toml``, ``params.json`` and the logs.
    timeout : float, default 600
        Seconds the whole run may take; also each server's message timeout.
    config : DeploymentConfig or None, default None
        Use these addresses and certificates instead of fresh loopback ones
        (e.g. ``parties/local.toml``).
    session : str, default ""
        Session tag (a fresh config gets it; bundles are bound to it).
    verbose : bool, default False
        Servers log at DEBUG level instead of INFO.
    serve_args : sequence of str, default ()
        More ``fedsyn serve`` options, e.g. ``("--engine", "mp-spdz")`` for
        three MP-SPDZ parties (``bundle_paths[i]``: holder directories).

    Raises
    ------
    ProtocolError
        A server failed or the run timed out; the message holds each server's log tail.
    """
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    if config is None:
        config = make_local_config(work, timeout=timeout, session=session)
        config_path = work / "deployment.toml"
    else:
        config_path = work / "deployment.toml"
        write_config(config, config_path)
    from ...atomic import write_json_atomic

    params_path = write_json_atomic(work / "params.json", run_params.to_dict())

    from .release_server import collect_measurements

    abort = threading.Event()
    ready = threading.Event()
    box: dict[str, object] = {}

    def release() -> None:
        try:
            box["result"] = collect_measurements(config, timeout=timeout, abort=abort, ready=ready)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc
            ready.set()

    rel = threading.Thread(target=release, name="fedsyn-release", daemon=True)
    rel.start()
    ready.wait(30)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]

    procs: list[subprocess.Popen] = []
    logs = [work / f"server{i}.log" for i in range(3)]
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    # numpy madvises transparent huge pages for arrays >= 4 MB; on a busy host with
    # THP in "madvise" mode the page faults then stall on zeroing / compaction
    # (measured at 978 x 4,323 on a loaded 2-core VM: system time 16 s -> 8 s,
    # protocol 2x faster without). An explicit setting of the caller wins.
    env.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    try:
        for i in range(3):
            cmd = [sys.executable, "-m", "fedsyn", "-vv" if verbose else "-v", "serve", "--id", str(i),
                   "--config", str(config_path), "--params", str(params_path), "--out", str(work),
                   "--ledger", str(work / f"ledger-server{i}.jsonl")]
            if not run_params.protocol.noise:
                cmd.append("--insecure-no-noise")
            cmd += list(serve_args)
            for path in bundle_paths[i]:
                cmd += ["--bundles", str(path)]
            with open(logs[i], "wb") as log:
                procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                              stdin=subprocess.DEVNULL))
        logger.info("started three servers (pids %s); logs in %s", [p.pid for p in procs], work)
        deadline = time.monotonic() + timeout + 30.0
        failed: list[int] = []
        while True:
            codes = [p.poll() for p in procs]
            failed = [i for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                break
            if not rel.is_alive() and all(c == 0 for c in codes):
                break
            if not rel.is_alive() and "error" in box:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if failed or "error" in box or time.monotonic() > deadline or "result" not in box:
            # Give the others a moment to report their own view, then stop them.
            grace = time.monotonic() + 2.0
            while time.monotonic() < grace and any(p.poll() is None for p in procs):
                time.sleep(0.05)
            abort.set()
            codes = [p.poll() for p in procs]
            failed = [i for i, c in enumerate(codes) if c not in (None, 0)] or failed
            if failed:
                # a server that refused its own inputs (exit 3, 4, 6) is the root cause; the others
                # (exit 5) report its abort, and may exit first: blame the refusing one
                failed.sort(key=lambda i: codes[i] == ProtocolError.exit_code)
                why = f"server {failed[0]} exited with code {codes[failed[0]]}"
                if "error" in box:
                    why += f" ({box['error']})"
            elif "error" in box:
                why = f"the release step failed: {box['error']}"
            else:
                why = f"the run did not finish within {timeout:g} s"
            tails = "\n".join(
                f"  server {i} ({'running, killed' if codes[i] is None else f'exit {codes[i]}'}), "
                f"{logs[i]}:\n{_tail(logs[i])}"
                for i in range(3)
            )
            err = box.get("error")
            what = "MP-SPDZ" if "mp-spdz" in serve_args else "rep3"
            raise ProtocolError(f"{what} local run failed: {why}.\n{tails}") from (
                err if isinstance(err, BaseException) else None
            )
        return box["result"]  # type: ignore[return-value]
    finally:
        abort.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        rel.join(5)
        for i in range(3):
            stats = work / f"server{i}.stats.json"
            if stats.exists():
                try:
                    logger.debug("server %d stats: %s", i, json.loads(stats.read_text())["seconds"])
                except (OSError, ValueError, KeyError):
                    pass


def read_server_stats(workdir: str | os.PathLike) -> list[dict]:
    """Each local server's ``server<i>.stats.json`` (public cost figures), in server order, where present."""
    out = []
    for i in range(3):
        try:
            out.append(json.loads((Path(workdir) / f"server{i}.stats.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return out
