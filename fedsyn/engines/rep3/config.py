"""Deployment configuration of the rep3 engine: who listens where, with which certificates.

A deployment file is TOML (see ``parties/local.toml`` and
``parties/three-hosts.toml``)::

    [deployment]
    session = "demo-2024-06"        # optional tag every party must agree on
    ca = "certs/ca.pem"             # CA certificate (paths relative to this file)
    timeout = 300                   # seconds a server waits for any one message
    connect_timeout = 120           # seconds to establish the links

    [[server]]                      # three of these, id 0, 1, 2
    id = 0
    host = "127.0.0.1"
    port = 47000
    bind = "0.0.0.0"                # optional listening interface (default: host)
    cert = "certs/server0.pem"
    key = "certs/server0.key"       # needed only on server 0's machine
    mpspdz_port = 47100             # optional: the MP-SPDZ party's port (default port + 100)

    [release]
    host = "127.0.0.1"
    port = 47010
    cert = "certs/release.pem"
    key = "certs/release.key"

Every party reads the same file; a party only needs its *own* key file. The
same file drives the MP-SPDZ engine (``fedsyn serve --engine mp-spdz``): its
party ``i`` listens on ``mpspdz_port`` of server ``i`` (default ``port + 100``)
at ``host``, beside fedsyn's own TLS link on ``port``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError
from .net import TLSFiles

__all__ = ["Endpoint", "DeploymentConfig", "load_config", "write_config", "MPSPDZ_PORT_OFFSET"]

#: Default MP-SPDZ party port of a server: its fedsyn port plus this.
MPSPDZ_PORT_OFFSET = 100


@dataclass(frozen=True)
class Endpoint:
    """Address and certificate of one role.

    Attributes
    ----------
    host : str
        Host name or IP address others connect to.
    port : int
    cert : pathlib.Path
        Its certificate (PEM).
    key : pathlib.Path
        Its private key (PEM); only read on that role's own machine.
    bind : str or None
        Interface to listen on; ``None`` means ``host``.
    mpspdz_port : int or None
        Computing servers only: the port the MP-SPDZ party binary of this
        server listens on (``None``: ``port + 100``, see :attr:`mpspdz_address`).
    """

    host: str
    port: int
    cert: Path
    key: Path
    bind: str | None = None
    mpspdz_port: int | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def mpspdz_address(self) -> tuple[str, int]:
        """Where this server's MP-SPDZ party listens: ``host`` and ``mpspdz_port`` (default ``port + 100``)."""
        return (self.host, self.mpspdz_port if self.mpspdz_port is not None else self.port + MPSPDZ_PORT_OFFSET)


@dataclass(frozen=True)
class DeploymentConfig:
    """The parsed deployment file.

    Attributes
    ----------
    servers : tuple of three Endpoint
        Computing servers 0, 1, 2.
    release : Endpoint
        The release server.
    ca : pathlib.Path
        The deployment CA certificate.
    session : str
        Session tag all parties must present (default ``""``).
    timeout : float
        Seconds to wait for one message before failing (default 300).
    connect_timeout : float
        Seconds to establish the links (default 120).
    path : pathlib.Path or None
        The file it was read from.
    """

    servers: tuple[Endpoint, Endpoint, Endpoint]
    release: Endpoint
    ca: Path
    session: str = ""
    timeout: float = 300.0
    connect_timeout: float = 120.0
    path: Path | None = None

    def server_tls(self, i: int) -> TLSFiles:
        """TLS files of server ``i``."""
        return TLSFiles(ca=self.ca, cert=self.servers[i].cert, key=self.servers[i].key)

    def release_tls(self) -> TLSFiles:
        """TLS files of the release server."""
        return TLSFiles(ca=self.ca, cert=self.release.cert, key=self.release.key)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [s.address for s in self.servers]

    @property
    def mpspdz_addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of the three MP-SPDZ parties (MP-SPDZ's ``-ip`` file).

        Checked only when the MP-SPDZ engine asks (a rep3 deployment need not
        care about these ports).

        Raises
        ------
        ConfigError
            A port is out of range or collides with another role's port on the same host.
        """
        where = self.path or "the deployment file"
        mp = [s.mpspdz_address for s in self.servers]
        for i, (_, port) in enumerate(mp):
            if not 0 < port < 65536:
                raise ConfigError(f"{where}: server {i}'s MP-SPDZ port {port} is out of range; give mpspdz_port.")
        if len(set(self.addresses + [self.release.address] + mp)) != 7:
            raise ConfigError(f"{where}: an MP-SPDZ party port (mpspdz_port, default port + {MPSPDZ_PORT_OFFSET}) "
                              "collides with another port on the same host; give mpspdz_port for each server.")
        return mp


def _endpoint(table: dict, where: str, base: Path, src: str, *, server: bool = True) -> Endpoint:
    if not isinstance(table, dict):
        raise ConfigError(f"{src}: {where} must be a table.")
    unknown = set(table) - {"id", "host", "port", "cert", "key", "bind"} - ({"mpspdz_port"} if server else set())
    if unknown:
        raise ConfigError(f"{src}: unknown key(s) {', '.join(sorted(unknown))} in {where}.")
    for k in ("host", "port", "cert", "key"):
        if k not in table:
            raise ConfigError(f"{src}: {where} lacks '{k}'.")
    port = table["port"]
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"{src}: {where} has an invalid port {port!r}.")
    if not isinstance(table["host"], str) or not table["host"]:
        raise ConfigError(f"{src}: {where} has an invalid host.")
    mp = table.get("mpspdz_port")
    if mp is not None and (not isinstance(mp, int) or isinstance(mp, bool) or not 0 < mp < 65536):
        raise ConfigError(f"{src}: {where} has an invalid mpspdz_port {mp!r}.")
    return Endpoint(
        host=table["host"],
        port=port,
        cert=(base / str(table["cert"])).resolve(),
        key=(base / str(table["key"])).resolve(),
        bind=table.get("bind"),
        mpspdz_port=mp,
    )


def load_config(path: str | os.PathLike) -> DeploymentConfig:
    """Read and validate a deployment TOML file.

    Raises
    ------
    ConfigError
        Unreadable file, bad TOML, missing or unknown keys, not exactly
        servers 0, 1, 2, invalid ports, or two roles on the same host and port.
    """
    path = Path(path)
    src = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{src}: cannot read the deployment file ({exc.strerror or exc}).") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{src}: not valid TOML ({exc}).") from exc
    base = path.resolve().parent
    unknown = set(data) - {"deployment", "server", "release"}
    if unknown:
        raise ConfigError(f"{src}: unknown section(s) {', '.join(sorted(unknown))}.")
    dep = data.get("deployment", {})
    if "ca" not in dep:
        raise ConfigError(f"{src}: [deployment] lacks 'ca' (the CA certificate).")
    unknown = set(dep) - {"ca", "session", "timeout", "connect_timeout"}
    if unknown:
        raise ConfigError(f"{src}: unknown key(s) {', '.join(sorted(unknown))} in [deployment].")
    servers = data.get("server")
    if not isinstance(servers, list) or len(servers) != 3:
        raise ConfigError(f"{src}: exactly three [[server]] tables (ids 0, 1, 2) are needed.")
    by_id: dict[int, Endpoint] = {}
    for k, table in enumerate(servers):
        sid = table.get("id") if isinstance(table, dict) else None
        if sid not in (0, 1, 2) or sid in by_id:
            raise ConfigError(f"{src}: [[server]] number {k + 1} needs a distinct id 0, 1 or 2, got {sid!r}.")
        by_id[sid] = _endpoint(table, f"[[server]] id {sid}", base, src)
    if "release" not in data:
        raise ConfigError(f"{src}: the [release] table is missing.")
    release = _endpoint(data["release"], "[release]", base, src, server=False)
    addrs = [by_id[i].address for i in range(3)] + [release.address]
    if len(set(addrs)) != 4:
        raise ConfigError(f"{src}: two roles share the same host and port.")

    try:
        timeout = float(dep.get("timeout", 300.0))
        connect_timeout = float(dep.get("connect_timeout", 120.0))
    except (TypeError, ValueError):
        raise ConfigError(f"{src}: timeouts must be numbers of seconds.") from None
    if timeout <= 0 or connect_timeout <= 0:
        raise ConfigError(f"{src}: timeouts must be positive.")
    return DeploymentConfig(
        servers=(by_id[0], by_id[1], by_id[2]),
        release=release,
        ca=(base / str(dep["ca"])).resolve(),
        session=str(dep.get("session", "")),
        timeout=timeout,
        connect_timeout=connect_timeout,
        path=path,
    )


def write_config(config: DeploymentConfig, path: str | os.PathLike) -> Path:
    """Write ``config`` as TOML (absolute paths) atomically; used by local runs."""
    from ...atomic import write_text_atomic

    def q(s) -> str:
        return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        "[deployment]",
        f"ca = {q(config.ca)}",
        f"session = {q(config.session)}",
        f"timeout = {config.timeout!r}",
        f"connect_timeout = {config.connect_timeout!r}",
        "",
    ]
    for i, s in enumerate(config.servers):
        lines += ["[[server]]", f"id = {i}", f"host = {q(s.host)}", f"port = {s.port}",
                  f"cert = {q(s.cert)}", f"key = {q(s.key)}"]
        if s.bind:
            lines.append(f"bind = {q(s.bind)}")
        if s.mpspdz_port is not None:
            lines.append(f"mpspdz_port = {s.mpspdz_port}")
        lines.append("")
    r = config.release
    lines += ["[release]", f"host = {q(r.host)}", f"port = {r.port}", f"cert = {q(r.cert)}", f"key = {q(r.key)}"]
    if r.bind:
        lines.append(f"bind = {q(r.bind)}")
    return write_text_atomic(path, "\n".join(lines) + "\n")
