"""MP-SPDZ's TLS identities in a deployment, derived from the deployment's own certificates.

MP-SPDZ's party binaries authenticate each other with their own convention
(``Networking/ssl_sockets.h``, v0.4.2): party ``i`` presents
``Player-Data/P<i>.pem`` / ``P<i>.key``, trusts the certificates in the hashed
directory ``Player-Data/`` and checks that party ``j``'s certificate names
``P<j>`` (host-name verification). The deployment's certificates
(``fedsyn-server-<i>``, signed by the deployment CA) do not carry those names,
and the CA's key is not on the servers.

So each server makes a fresh MP-SPDZ identity for every run -- an ECDSA P-256
key and a self-signed certificate for exactly ``P<i>``, not a CA -- and sends
the certificate to the two other servers over fedsyn's own link, which is
mutually authenticated with the deployment's certificates. Each server trusts
exactly the three certificates of this run (:func:`install_trust`), after
checking that each names only its party and cannot sign others
(:func:`check_peer_certificate`). Only the holder of a key can present its
certificate, and only the servers of the deployment could send one: MP-SPDZ's
links are thereby bound to the deployment's certificates without MP-SPDZ
knowing about them. The keys are deleted with the run directory.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

from ...errors import ConfigError, ProtocolError

logger = logging.getLogger(__name__)

__all__ = ["party_name", "make_identity", "check_peer_certificate", "install_trust", "fingerprint"]

#: Largest certificate accepted from a peer (PEM bytes).
MAX_CERT_BYTES = 16 << 10
#: Validity of a run's MP-SPDZ certificate (the run must start within it).
VALIDITY = _dt.timedelta(days=2)


def party_name(index: int) -> str:
    """MP-SPDZ's name of party ``index`` (the certificate name it checks)."""
    return f"P{int(index)}"


def fingerprint(pem: bytes) -> str:
    """SHA-256 of the certificate's DER encoding (hex), for logs."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def make_identity(index: int, player_data: str | os.PathLike) -> bytes:
    """Write a fresh key and self-signed certificate for ``P<index>``; returns the certificate (PEM).

    ``Player-Data/P<i>.key`` is written with mode 0600.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    name = party_name(index)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = Path(player_data)
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / f"{name}.key"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (directory / f"{name}.pem").write_bytes(pem)
    return pem


def check_peer_certificate(pem: bytes, index: int, *, sender: str) -> None:
    """Refuse a run certificate that is not exactly a self-signed, non-CA certificate for ``P<index>``.

    A certificate naming another party too, or allowed to sign, would let its
    holder impersonate another party to MP-SPDZ.

    Raises
    ------
    ProtocolError
        Naming ``sender`` (the server that sent it) and what is wrong.
    """
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    name = party_name(index)

    def bad(what: str) -> ProtocolError:
        return ProtocolError(f"{sender} sent an unacceptable MP-SPDZ certificate for {name}: {what}")

    if not isinstance(pem, (bytes, bytearray)) or len(pem) > MAX_CERT_BYTES or pem.count(b"BEGIN CERTIFICATE") != 1:
        raise bad("not exactly one PEM certificate")
    try:
        cert = x509.load_pem_x509_certificate(bytes(pem))
    except ValueError as exc:
        raise bad(f"unreadable ({exc})") from None
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if cns != [name] or len(cert.subject) != 1:
        raise bad(f"subject {cert.subject.rfc4514_string()!r}, expected CN={name} only")
    if cert.issuer != cert.subject:
        raise bad("not self-signed")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise bad("no subject alternative name") from None
    if len(list(san)) != 1 or san.get_values_for_type(x509.DNSName) != [name]:
        raise bad("names other than its own")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        raise bad("no basic constraints (it could act as a CA)") from None
    if bc.value.ca or not bc.critical:
        raise bad("a CA certificate (it could sign certificates for other parties)")
    try:
        cert.verify_directly_issued_by(cert)
    except Exception as exc:  # noqa: BLE001 - any verification failure
        raise bad(f"its self-signature does not verify ({exc.__class__.__name__})") from None
    now = _dt.datetime.now(_dt.timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise bad("not valid now (check the clocks)")


def install_trust(player_data: str | os.PathLike, certificates: dict[int, bytes]) -> None:
    """Write ``P<j>.pem`` of the three parties and make ``Player-Data`` a hashed trust directory.

    Any other certificate or hash link in the directory is removed first, so
    exactly this run's three certificates are trusted. The hash links are made
    with ``openssl rehash`` (or ``c_rehash``), as MP-SPDZ's ``Scripts/setup-ssl.sh`` does.

    Raises
    ------
    ConfigError
        Neither ``openssl`` nor ``c_rehash`` is installed, or hashing failed.
    """
    directory = Path(player_data)
    for p in directory.iterdir():
        if p.suffix == ".pem" or (p.is_symlink() and p.name.split(".")[-1].isdigit()):
            p.unlink()
    for j, pem in sorted(certificates.items()):
        (directory / f"{party_name(j)}.pem").write_bytes(pem)
    if shutil.which("openssl"):
        cmd = ["openssl", "rehash", str(directory)]
    elif shutil.which("c_rehash"):
        cmd = ["c_rehash", str(directory)]
    else:
        raise ConfigError("MP-SPDZ's TLS needs `openssl rehash` or `c_rehash` (install openssl).")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    links = [p for p in directory.iterdir() if p.is_symlink()]
    if res.returncode != 0 or len(links) != len(certificates):
        raise ConfigError(f"`{' '.join(cmd)}` failed: {res.stderr.strip()[-500:] or 'no hash links made'}")
