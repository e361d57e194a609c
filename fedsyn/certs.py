"""Certificates for the TLS links between the computing servers and the release server.

:func:`generate_deployment_certs` makes a per-deployment certificate authority
and one key + certificate per role: ``fedsyn-server-0``, ``fedsyn-server-1``,
``fedsyn-server-2`` and ``fedsyn-release``. Each certificate carries its role
name as common name *and* as a DNS subject alternative name; peers verify that
name, not the host address, so the same certificates work on one machine or on
three hosts (host names/IPs can be added as extra SANs).

One party generating every key is convenient for local runs and tests; in a real
deployment each institution creates its own key and certificate signing request
and only the CA operator signs (``docs/deployment.md`` gives the ``openssl``
commands). Private keys are written with mode 0600.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["server_name", "RELEASE_NAME", "DeploymentCerts", "generate_deployment_certs"]

#: Role name of the release server's certificate.
RELEASE_NAME = "fedsyn-release"


def server_name(index: int) -> str:
    """Certificate name (CN and DNS SAN) of computing server ``index``."""
    return f"fedsyn-server-{index}"


@dataclass(frozen=True)
class DeploymentCerts:
    """Paths of the files :func:`generate_deployment_certs` wrote.

    Attributes
    ----------
    ca_cert, ca_key : pathlib.Path
        The deployment CA (keep ``ca_key`` offline after signing).
    server_certs, server_keys : tuple of pathlib.Path
        ``server<i>.pem`` and ``server<i>.key`` for ``i = 0, 1, 2``.
    release_cert, release_key : pathlib.Path
    """

    ca_cert: Path
    ca_key: Path
    server_certs: tuple[Path, Path, Path]
    server_keys: tuple[Path, Path, Path]
    release_cert: Path
    release_key: Path


def _san_entries(name: str, hosts: Sequence[str]):
    from cryptography import x509

    entries: list[x509.GeneralName] = [x509.DNSName(name)]
    for h in hosts:
        if not h:
            continue
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            entries.append(x509.DNSName(h))
    return entries


def _write(path: Path, data: bytes, mode: int) -> None:
    from .atomic import write_bytes_atomic

    write_bytes_atomic(path, data, mode=mode)
    os.chmod(path, mode)


def generate_deployment_certs(
    out_dir: str | os.PathLike,
    *,
    hosts: Sequence[str] | None = None,
    release_host: str | None = None,
    days: int = 365,
    overwrite: bool = False,
) -> DeploymentCerts:
    """Create a CA and keys/certificates for the three servers and the release server.

    Parameters
    ----------
    out_dir : path-like
        Directory to write ``ca.pem``, ``ca.key``, ``server{0,1,2}.{pem,key}``,
        ``release.{pem,key}`` into (created if missing).
    hosts : sequence of three str or None, default None
        Host names or IP addresses of servers 0, 1, 2, added as extra SANs.
    release_host : str or None, default None
        Host name or IP of the release server, added as an extra SAN.
    days : int, default 365
        Validity of the certificates.
    overwrite : bool, default False
        Replace existing files; otherwise refuse with :class:`ConfigError`.

    Returns
    -------
    DeploymentCerts
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if hosts is not None and len(hosts) != 3:
        raise ConfigError(f"--hosts needs exactly three hosts (servers 0, 1, 2), got {len(hosts)}.")
    if days < 1:
        raise ConfigError("Certificate validity must be at least one day.")
    out = Path(out_dir)
    names = ["ca"] + [f"server{i}" for i in range(3)] + ["release"]
    if not overwrite:
        existing = [out / f"{n}.{ext}" for n in names for ext in ("pem", "key") if (out / f"{n}.{ext}").exists()]
        if existing:
            raise ConfigError(f"{existing[0]} exists; pass --force to replace the certificates.")
    out.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(minutes=5)
    until = now + _dt.timedelta(days=days)

    def pem_key(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedsyn deployment CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(out / "ca.key", pem_key(ca_key), 0o600)
    _write(out / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)

    def leaf(stem: str, name: str, extra_hosts: Sequence[str]) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(_san_entries(name, extra_hosts)), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        kp, cp = out / f"{stem}.key", out / f"{stem}.pem"
        _write(kp, pem_key(key), 0o600)
        _write(cp, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return cp, kp

    servers = [leaf(f"server{i}", server_name(i), [hosts[i]] if hosts else []) for i in range(3)]
    rel = leaf("release", RELEASE_NAME, [release_host] if release_host else [])
    logger.info("Wrote a deployment CA and four certificates to %s", out)
    return DeploymentCerts(
        ca_cert=out / "ca.pem",
        ca_key=out / "ca.key",
        server_certs=tuple(c for c, _ in servers),  # type: ignore[arg-type]
        server_keys=tuple(k for _, k in servers),  # type: ignore[arg-type]
        release_cert=rel[0],
        release_key=rel[1],
    )
