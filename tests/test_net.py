"""TLS transport of the rep3 engine: exchange, authentication, dead peers."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fedsyn.certs import generate_deployment_certs
from fedsyn.engines.rep3.net import ReleaseListener, TLSFiles, TLSTransport, send_to_release
from fedsyn.errors import ConfigError, ProtocolError


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return generate_deployment_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def other_certs(tmp_path_factory):
    return generate_deployment_certs(tmp_path_factory.mktemp("other"))


def tls(c, i) -> TLSFiles:
    return TLSFiles(ca=c.ca_cert, cert=c.server_certs[i], key=c.server_keys[i])


def connect_all(files, *, timeout=5.0, connect_timeout=5.0, sessions=("s", "s", "s")):
    addrs = [("127.0.0.1", p) for p in free_ports(3)]
    out: dict[int, object] = {}

    def go(i):
        try:
            out[i] = TLSTransport.connect(
                i, addrs, files[i], timeout=timeout, connect_timeout=connect_timeout, session=sessions[i]
            )
        except BaseException as exc:  # noqa: BLE001
            out[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in (2, 1, 0)]  # any start order
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_certs_files_and_modes(certs):
    for key in (certs.ca_key, certs.release_key, *certs.server_keys):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(certs.server_certs[1].read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["fedsyn-server-1"]


def test_certs_refuse_overwrite_and_bad_hosts(certs, tmp_path):
    with pytest.raises(ConfigError, match="exists"):
        generate_deployment_certs(certs.ca_cert.parent)
    with pytest.raises(ConfigError, match="three hosts"):
        generate_deployment_certs(tmp_path, hosts=["a", "b"])


def test_exchange_both_ways_including_large_arrays(certs):
    ts = connect_all([tls(certs, i) for i in range(3)])
    assert all(isinstance(t, TLSTransport) for t in ts.values()), ts
    try:
        rng = np.random.default_rng(1)
        big = rng.integers(0, 2**64, size=3_000_000, dtype=np.uint64)  # 24 MB, beyond socket buffers
        small = np.arange(12, dtype=np.int64).reshape(3, 4)
        # Everyone sends to everyone before anyone reads: send must never block.
        for i, t in ts.items():
            for j in range(3):
                if j != i:
                    t.send(j, big + np.uint64(i))
                    t.send(j, small * i)
                    t.send(j, np.array([True, False]))
        for i, t in ts.items():
            for j in range(3):
                if j != i:
                    got = t.recv(j)
                    assert got.dtype == np.uint64 and np.array_equal(got, big + np.uint64(j))
                    s = t.recv(j)
                    assert s.shape == (3, 4) and np.array_equal(s, small * j)
                    assert t.recv(j).tolist() == [True, False]
        assert ts[0].messages_sent == 6
        assert ts[0].bytes_sent > 2 * big.nbytes
    finally:
        for t in ts.values():
            t.close()


def test_send_copies_the_array(certs):
    ts = connect_all([tls(certs, i) for i in range(3)])
    try:
        a = np.zeros(5, dtype=np.uint64)
        ts[0].send(1, a)
        a[:] = 7
        assert ts[1].recv(0).tolist() == [0] * 5
    finally:
        for t in ts.values():
            t.close()


def test_wrong_ca_is_refused(certs, other_certs):
    files = [tls(certs, 0), tls(other_certs, 1), tls(certs, 2)]
    t0 = time.monotonic()
    ts = connect_all(files, connect_timeout=2.0)
    try:
        assert isinstance(ts[1], ProtocolError)
        assert "certificate" in str(ts[1])
        assert isinstance(ts[0], ProtocolError)  # server 1 never got in
        assert time.monotonic() - t0 < 15
    finally:
        for t in ts.values():
            if isinstance(t, TLSTransport):
                t.close()


def test_wrong_role_certificate_is_refused(certs):
    # Server 2 presents server 1's certificate: server 0 and 1 must not take it as server 2.
    files = [tls(certs, 0), tls(certs, 1), tls(certs, 1)]
    ts = connect_all(files, connect_timeout=2.0)
    try:
        assert isinstance(ts[2], ProtocolError)
    finally:
        for t in ts.values():
            if isinstance(t, TLSTransport):
                t.close()


def test_session_mismatch_is_refused(certs):
    ts = connect_all([tls(certs, i) for i in range(3)], connect_timeout=2.0, sessions=("a", "a", "b"))
    try:
        assert isinstance(ts[2], ProtocolError) and "session" in str(ts[2])
    finally:
        for t in ts.values():
            if isinstance(t, TLSTransport):
                t.close()


def test_silent_peer_times_out(certs):
    ts = connect_all([tls(certs, i) for i in range(3)], timeout=0.5)
    try:
        t0 = time.monotonic()
        with pytest.raises(ProtocolError, match="no message from server 1"):
            ts[0].recv(1)
        assert time.monotonic() - t0 < 3
    finally:
        for t in ts.values():
            t.close()


def test_closed_peer_raises_promptly_after_its_messages(certs):
    ts = connect_all([tls(certs, i) for i in range(3)], timeout=20.0)
    try:
        ts[2].send(0, np.arange(3, dtype=np.uint64))
        ts[2].close()
        assert ts[0].recv(2).tolist() == [0, 1, 2]  # what was sent still arrives
        t0 = time.monotonic()
        with pytest.raises(ProtocolError, match="server 2 closed"):
            ts[0].recv(2)
        assert time.monotonic() - t0 < 5  # not the 20 s timeout
        with pytest.raises(ProtocolError):
            ts[1].recv(2)
    finally:
        for t in ts.values():
            t.close()


def test_killed_peer_process_raises_promptly(certs, tmp_path):
    """A server process that dies (SIGKILL) mid-protocol: recv fails fast, no hang."""
    addrs = [("127.0.0.1", p) for p in free_ports(3)]
    script = tmp_path / "peer.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal, numpy as np
            from pathlib import Path
            from fedsyn.engines.rep3.net import TLSFiles, TLSTransport
            f = TLSFiles(ca=Path({str(certs.ca_cert)!r}), cert=Path({str(certs.server_certs[2])!r}),
                         key=Path({str(certs.server_keys[2])!r}))
            t = TLSTransport.connect(2, {addrs!r}, f, timeout=5, connect_timeout=10, session="k")
            t.send(0, np.ones(4, dtype=np.uint64))
            t.recv(0)
            os.kill(os.getpid(), signal.SIGKILL)
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)])
    out: dict[int, object] = {}

    def go(i):
        out[i] = TLSTransport.connect(i, addrs, tls(certs, i), timeout=20, connect_timeout=10, session="k")

    threads = [threading.Thread(target=go, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        t0 = out[0]
        assert t0.recv(2).tolist() == [1] * 4
        t0.send(2, np.zeros(1, dtype=np.uint64))
        assert proc.wait(20) != 0
        start = time.monotonic()
        with pytest.raises(ProtocolError, match="server 2"):
            t0.recv(2)
        assert time.monotonic() - start < 5
    finally:
        proc.kill()
        for t in out.values():
            t.close()


def test_release_link(certs):
    rel = TLSFiles(ca=certs.ca_cert, cert=certs.release_cert, key=certs.release_key)
    listener = ReleaseListener(("127.0.0.1", 0), rel, session="r")
    result = {}
    th = threading.Thread(target=lambda: result.update(listener.collect(timeout=20)))
    th.start()
    for i in range(3):
        send_to_release(
            i, ("127.0.0.1", listener.port), tls(certs, i),
            meta={"party": i}, arrays={"x": np.full(3, i, dtype=np.uint64)}, session="r", timeout=10,
        )
    th.join(20)
    assert sorted(result) == [0, 1, 2]
    assert result[1][0] == {"party": 1} and result[2][1]["x"].tolist() == [2, 2, 2]


def test_release_refuses_a_server_certificate_as_release(certs):
    # A computing server cannot pose as the release server.
    fake = ReleaseListener(("127.0.0.1", 0), tls(certs, 1), session="r")
    th = threading.Thread(target=lambda: pytest.raises(ProtocolError, fake.collect, timeout=3), daemon=True)
    th.start()
    with pytest.raises(ProtocolError, match="certificate"):
        send_to_release(0, ("127.0.0.1", fake.port), tls(certs, 0), meta={}, arrays={}, session="r", timeout=3)
    th.join(10)


def test_malformed_frames_give_protocol_errors_promptly(certs):
    import struct

    from fedsyn.engines.rep3 import net

    # decoding: bad JSON / UTF-8, a shape whose product overflows int64, a bad header
    with pytest.raises(ProtocolError, match="malformed control message"):
        net._finish_frame(1, 0, (), np.frombuffer(b"\xff{", np.uint8))
    with pytest.raises(ProtocolError, match="does not match its shape"):
        net._finish_frame(0, 0, (2**32, 2**32), np.empty(0, np.uint8))
    with pytest.raises(ProtocolError, match="malformed frame header"):
        net._decode_prefix(struct.pack("<BBB5xQ", 7, 0, 0, 0))
    # on a live link: a garbled frame from server 1 ends server 0's recv at once
    ts = connect_all([tls(certs, i) for i in range(3)], timeout=20.0)
    try:
        ts[1]._links[0].enqueue((struct.pack("<BBB5xQ", 0, 0, 1, 8) + struct.pack("<Q", 3), memoryview(b"x" * 8)))
        t0 = time.monotonic()
        with pytest.raises(ProtocolError, match="server 1"):
            ts[0].recv(1)
        assert time.monotonic() - t0 < 5
    finally:
        for t in ts.values():
            t.close()


def test_role_name_only_in_the_common_name_is_refused(certs, tmp_path):
    # A CA-signed certificate naming "fedsyn-server-2" only as CN (SAN: another name) must
    # not pass as server 2 on the accepting side either (the connecting side ignores CN).
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key = serialization.load_pem_private_key(certs.ca_key.read_bytes(), None)
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedsyn-server-2")]))
        .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("mpc2.example.org")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (tmp_path / "cn.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "cn.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    files = [tls(certs, 0), tls(certs, 1), TLSFiles(ca=certs.ca_cert, cert=tmp_path / "cn.pem", key=tmp_path / "cn.key")]
    ts = connect_all(files, connect_timeout=2.0)
    try:
        assert isinstance(ts[0], ProtocolError) and isinstance(ts[1], ProtocolError)
        assert "server(s) 2 did not connect" in str(ts[0])
    finally:
        for t in ts.values():
            if isinstance(t, TLSTransport):
                t.close()
