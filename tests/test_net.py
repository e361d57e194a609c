"""TLS transport of the rep3 engine: exchange, authentication, dead peers."""

from __future__ import annotations

import os
import signal
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
from fedsyn.engines.rep3 import frames
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


    # decoding: bad JSON / UTF-8, a shape whose product overflows int64, a bad header
    with pytest.raises(ProtocolError, match="malformed control message"):
        frames.finish_frame(1, 0, (), np.frombuffer(b"\xff{", np.uint8))
    with pytest.raises(ProtocolError, match="does not match its shape"):
        frames.finish_frame(0, 0, (2**32, 2**32), np.empty(0, np.uint8))
    with pytest.raises(ProtocolError, match="malformed frame header"):
        frames.decode_prefix(struct.pack("<BBB5xQ", 7, 0, 0, 0))
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


# ---------------------------------------------------------------------------
# Hardening: bounded frames, I/O-thread failures, concurrent handshakes
# ---------------------------------------------------------------------------


def close_all(ts):
    for t in ts.values():
        if isinstance(t, TLSTransport):
            t.close()


def test_a_huge_announced_frame_is_refused_at_once(certs):
    import struct

    ts = connect_all([tls(certs, i) for i in range(3)], timeout=60.0)
    try:
        n = 1 << 36  # 64 GiB: before, the allocation failed silently and recv waited its 60 s
        ts[1]._links[0].enqueue((struct.pack("<BBB5xQ", 0, 0, 1, n) + struct.pack("<Q", n // 8), memoryview(b"")))
        t0 = time.monotonic()
        with pytest.raises(ProtocolError, match=r"server 0: server 1 sent an invalid frame.*68719476736 bytes"):
            ts[0].recv(1)
        assert time.monotonic() - t0 < 10
        assert ts[0].failed_peer == 1
    finally:
        close_all(ts)


def test_frames_are_bounded_by_the_transports_limit(certs):
    addrs = [("127.0.0.1", p) for p in free_ports(3)]
    out = {}

    def go(i):
        out[i] = TLSTransport.connect(i, addrs, tls(certs, i), timeout=30, connect_timeout=10, session="b",
                                      max_frame_bytes=1000)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        out[1].send(0, np.zeros(125, np.uint64))  # exactly 1000 bytes: fine
        assert out[0].recv(1).size == 125
        out[1].send(0, np.zeros(126, np.uint64))
        with pytest.raises(ProtocolError, match="1008 bytes announced, more than the 1000"):
            out[0].recv(1)
    finally:
        close_all(out)


def test_any_io_thread_failure_reaches_the_waiting_recv_with_its_cause(certs, monkeypatch):
    from fedsyn.engines.rep3 import net

    def boom(*args):
        raise MemoryError("cannot allocate the frame")

    ts = connect_all([tls(certs, i) for i in range(3)], timeout=60.0)
    try:
        monkeypatch.setattr(net, "_finish_frame", boom)
        result = {}

        def waiter():  # already waiting when the failure happens
            t0 = time.monotonic()
            try:
                ts[0].recv(1)
            except ProtocolError as exc:
                result["error"], result["seconds"] = exc, time.monotonic() - t0

        th = threading.Thread(target=waiter)
        th.start()
        time.sleep(0.3)
        ts[1].send(0, np.ones(3, np.uint64))
        th.join(20)
        assert "MemoryError: cannot allocate the frame" in str(result["error"])
        assert "server 1" in str(result["error"]) and result["seconds"] < 10
    finally:
        close_all(ts)


def _open_idle_connections(port: int, k: int) -> list[socket.socket]:
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(k)]
    idle[-1].sendall(b"GET / HTTP/1.0\r\n")  # and one that speaks something else, slowly
    return idle


def test_idle_connections_do_not_delay_link_setup(certs):
    """Before: each idle connection held the accept loop for 10 s (two: 20 s). Now well under 5 s."""
    addrs = [("127.0.0.1", p) for p in free_ports(3)]
    out = {}

    def go(i):
        try:
            out[i] = TLSTransport.connect(i, addrs, tls(certs, i), timeout=10, connect_timeout=30, session="i")
        except BaseException as exc:  # noqa: BLE001
            out[i] = exc

    first = threading.Thread(target=go, args=(0,))
    first.start()
    for _ in range(100):  # wait until server 0 listens
        try:
            socket.create_connection(addrs[0], timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    idle = _open_idle_connections(addrs[0][1], 3)
    t0 = time.monotonic()
    rest = [threading.Thread(target=go, args=(i,)) for i in (1, 2)]
    for t in rest:
        t.start()
    for t in (first, *rest):
        t.join(40)
    try:
        assert all(isinstance(t, TLSTransport) for t in out.values()), out
        assert time.monotonic() - t0 < 5
        out[2].send(0, np.arange(4, dtype=np.uint64))
        assert out[0].recv(2).tolist() == [0, 1, 2, 3]
    finally:
        for s in idle:
            s.close()
        close_all(out)


# ---------------------------------------------------------------------------
# Failing fast and naming the right server
# ---------------------------------------------------------------------------


def test_abort_reaches_both_peers_at_once_with_the_reason(certs):
    ts = connect_all([tls(certs, i) for i in range(3)], timeout=60.0)
    try:
        errors = {}

        def wait(i, frm):
            t0 = time.monotonic()
            try:
                ts[i].recv(frm)
            except ProtocolError as exc:
                errors[i] = (str(exc), time.monotonic() - t0, ts[i].failed_peer)

        # server 0 waits for server 1; server 2 waits for server 0 (not for the server that aborts)
        threads = [threading.Thread(target=wait, args=(0, 1)), threading.Thread(target=wait, args=(2, 0))]
        for t in threads:
            t.start()
        time.sleep(0.3)
        ts[1].abort("bundle h3.server1.fsb: checksum mismatch")
        for t in threads:
            t.join(20)
        for i in (0, 2):
            msg, seconds, blamed = errors[i]
            assert msg == f"server {i}: server 1 aborted: bundle h3.server1.fsb: checksum mismatch"
            assert seconds < 5 and blamed == 1
        with pytest.raises(ProtocolError, match="server 1 aborted"):  # sends fail fast too
            ts[0].send(2, np.zeros(1, np.uint64))
    finally:
        close_all(ts)


def test_abort_passes_on_where_the_failure_started(certs):
    ts = connect_all([tls(certs, i) for i in range(3)], timeout=60.0)
    try:
        ts[1].abort("server 1: server 2 closed the connection without notice", origin=2)
        with pytest.raises(ProtocolError, match=r"server 0: server 1 aborted because server 2 failed"):
            ts[0].recv(1)
        assert ts[0].failed_peer == 2
    finally:
        close_all(ts)


def test_leaving_a_with_block_by_an_exception_aborts(certs):
    ts = connect_all([tls(certs, i) for i in range(3)], timeout=60.0)
    try:
        with pytest.raises(ValueError):
            with ts[2]:
                raise ValueError("shapes differ")
        with pytest.raises(ProtocolError, match="server 2 aborted: ValueError: shapes differ"):
            ts[1].recv(2)
    finally:
        close_all(ts)


def test_a_peer_that_finished_does_not_fail_the_others(certs):
    """A goodbye is not a failure: the two others go on exchanging."""
    ts = connect_all([tls(certs, i) for i in range(3)], timeout=20.0)
    try:
        ts[2].send(0, np.ones(2, np.uint64))
        ts[2].close()
        time.sleep(0.5)
        for r in range(3):
            ts[0].send(1, np.full(3, r, np.uint64))
            assert ts[1].recv(0).tolist() == [r] * 3
        assert ts[0].recv(2).tolist() == [1, 1]
        t0 = time.monotonic()
        with pytest.raises(ProtocolError, match="server 2 closed the connection before sending the expected message"):
            ts[0].recv(2)
        assert time.monotonic() - t0 < 5
    finally:
        close_all(ts)


def _peer_script(tmp_path, certs, addrs, body: str, *, name="peer.py", extra="") -> Path:
    script = tmp_path / name
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal, sys, time, numpy as np
            from pathlib import Path
            from fedsyn.engines.rep3.net import TLSFiles, TLSTransport
            f = TLSFiles(ca=Path({str(certs.ca_cert)!r}), cert=Path({str(certs.server_certs[2])!r}),
                         key=Path({str(certs.server_keys[2])!r}))
            t = TLSTransport.connect(2, {addrs!r}, f, timeout=60, connect_timeout=20, session="k"{extra})
            """
        )
        + textwrap.dedent(body)
    )
    return script


def _connect_01(certs, addrs, **kw):
    out: dict[int, object] = {}

    def go(i):
        out[i] = TLSTransport.connect(i, addrs, tls(certs, i), timeout=60, connect_timeout=20, session="k", **kw)

    threads = [threading.Thread(target=go, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


@pytest.mark.parametrize("survivor_1_aborts", [False, True])
def test_survivors_name_the_killed_server_not_each_other(certs, tmp_path, survivor_1_aborts):
    """Server 2 dies (SIGKILL) while server 1 waits for it and server 0 waits for server 1.

    Server 1 fails first and stops; server 0 must still blame server 2 -- whether
    server 1 merely closes (goodbye) or aborts passing on the origin.
    """
    addrs = [("127.0.0.1", p) for p in free_ports(3)]
    script = _peer_script(tmp_path, certs, addrs, """
        t.recv(0)
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    proc = subprocess.Popen([sys.executable, str(script)])
    ts = _connect_01(certs, addrs)
    try:
        errors = {}

        def server1():
            try:
                ts[1].recv(2)
            except ProtocolError as exc:
                errors[1] = str(exc)
                if survivor_1_aborts:
                    ts[1].abort(str(exc))
                else:
                    ts[1].close()

        def server0():
            t0 = time.monotonic()
            try:
                ts[0].recv(1)
            except ProtocolError as exc:
                errors[0] = (str(exc), time.monotonic() - t0, ts[0].failed_peer)

        threads = [threading.Thread(target=server1), threading.Thread(target=server0)]
        for t in threads:
            t.start()
        ts[0].send(2, np.zeros(1, np.uint64))  # server 2 receives it and dies
        assert proc.wait(20) == -9
        for t in threads:
            t.join(30)
        assert "server 1: server 2 closed the connection without notice" in errors[1]
        msg, seconds, blamed = errors[0]
        assert blamed == 2, msg
        assert "server 2" in msg and "server 1 closed" not in msg
        assert seconds < 10
    finally:
        proc.kill()
        close_all(ts)


def test_a_frozen_peer_is_declared_gone_after_its_heartbeat_allowance(certs, tmp_path):
    """SIGSTOP: the connection stays open but nothing arrives (as with a cut link or a dead host)."""
    addrs = [("127.0.0.1", p) for p in free_ports(3)]
    script = _peer_script(tmp_path, certs, addrs, """
        t.send(0, np.ones(1, dtype=np.uint64))
        time.sleep(120)
        """, extra=", heartbeat=0.2, dead_after=2.0")
    proc = subprocess.Popen([sys.executable, str(script)])
    ts = _connect_01(certs, addrs, heartbeat=0.2, dead_after=2.0)
    try:
        assert ts[0].recv(2).tolist() == [1]
        time.sleep(1.0)  # heartbeats keep an idle link alive beyond its allowance ...
        assert ts[0]._links[2].failed is None
        os.kill(proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(ProtocolError, match="server 2 sent nothing for 2 s, not even a heartbeat"):
            ts[1].recv(0)  # ... while waiting for another server: the run is dead anyway
        assert time.monotonic() - t0 < 8  # not the 60 s timeout
    finally:
        proc.kill()
        close_all(ts)


# ---------------------------------------------------------------------------
# The release server: bounded deliveries, fail fast
# ---------------------------------------------------------------------------


def release_files(c) -> TLSFiles:
    return TLSFiles(ca=c.ca_cert, cert=c.release_cert, key=c.release_key)


def collect_in_thread(listener, **kw):
    box: dict = {}

    def run():
        t0 = time.monotonic()
        try:
            box["result"] = listener.collect(**kw)
        except ProtocolError as exc:
            box["error"] = exc
        box["seconds"] = time.monotonic() - t0

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, box


def test_release_link_connected_early_then_delivers(certs):
    from fedsyn.engines.rep3.net import ReleaseLink

    listener = ReleaseListener(("127.0.0.1", 0), release_files(certs), session="r")
    th, box = collect_in_thread(listener, timeout=30)
    links = [ReleaseLink.connect(i, ("127.0.0.1", listener.port), tls(certs, i), session="r", timeout=10)
             for i in range(3)]
    time.sleep(0.3)
    for i, link in enumerate(links):
        sent = link.deliver({"party": i}, {"x.a": np.full((2, 3), i, np.uint64), "y": np.arange(i + 1)})
        assert sent > 0
    th.join(20)
    assert sorted(box["result"]) == [0, 1, 2]
    meta, arrays = box["result"][2]
    assert meta == {"party": 2} and arrays["x.a"].shape == (2, 3) and arrays["y"].tolist() == [0, 1, 2]


def test_release_stops_at_once_when_a_server_aborts(certs):
    from fedsyn.engines.rep3.net import ReleaseLink

    listener = ReleaseListener(("127.0.0.1", 0), release_files(certs), session="r")
    th, box = collect_in_thread(listener, timeout=600)
    addr = ("127.0.0.1", listener.port)
    send_to_release(0, addr, tls(certs, 0), meta={}, arrays={"x": np.zeros(1, np.uint64)}, session="r", timeout=10)
    link = ReleaseLink.connect(1, addr, tls(certs, 1), session="r", timeout=10)
    time.sleep(0.3)
    link.abort("server 1: server 2 closed the connection without notice", origin=2)
    th.join(10)
    assert box["seconds"] < 10
    assert str(box["error"]).startswith("release server: server 1 aborted because server 2 failed: server 1: ")


def test_release_stops_at_once_on_an_abort_notice_without_prior_link(certs):
    from fedsyn.engines.rep3.net import notify_release_abort

    # servers 0 and 1 never come: the release server waits inform_for seconds to tell them
    listener = ReleaseListener(("127.0.0.1", 0), release_files(certs), session="r", inform_for=1.0)
    th, box = collect_in_thread(listener, timeout=600)
    assert notify_release_abort(2, ("127.0.0.1", listener.port), tls(certs, 2), "bundle x.fsb: wrong run id",
                                session="r")
    th.join(10)
    assert str(box["error"]) == "release server: server 2 aborted: bundle x.fsb: wrong run id; no output shares from it"
    assert box["seconds"] < 5
    # nobody listening: no exception on the error path, just False
    assert not notify_release_abort(2, ("127.0.0.1", free_ports(1)[0]), tls(certs, 2), "x", timeout=0.5)


def test_release_stops_at_once_when_a_connected_server_dies(certs, tmp_path):
    listener = ReleaseListener(("127.0.0.1", 0), release_files(certs), session="r", inform_for=1.0)
    th, box = collect_in_thread(listener, timeout=600)
    script = tmp_path / "server0.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from fedsyn.engines.rep3.net import ReleaseLink, TLSFiles
        f = TLSFiles(ca=Path({str(certs.ca_cert)!r}), cert=Path({str(certs.server_certs[0])!r}),
                     key=Path({str(certs.server_keys[0])!r}))
        link = ReleaseLink.connect(0, ("127.0.0.1", {listener.port}), f, session="r", timeout=10)
        os.kill(os.getpid(), signal.SIGKILL)
        """))
    assert subprocess.run([sys.executable, str(script)], timeout=60).returncode == -9
    th.join(10)
    assert "release server: server 0 closed the connection without notice" in str(box["error"])
    assert box["seconds"] < 30


def test_release_accepts_only_the_announced_arrays(certs):
    from fedsyn.engines.rep3 import net

    listener = ReleaseListener(("127.0.0.1", 0), release_files(certs), session="r", max_delivery_bytes=10_000,
                               inform_for=1.0)
    th, box = collect_in_thread(listener, timeout=600)
    link = net.ReleaseLink.connect(1, ("127.0.0.1", listener.port), tls(certs, 1), session="r", timeout=10)
    header = {"meta": {}, "arrays": ["x"], "shapes": [[4]], "dtypes": ["<u8"]}
    link._link.enqueue(frames.encode_json(header))
    link._link.enqueue(frames.encode_array(np.zeros(5, np.uint64)))  # not the announced shape
    th.join(10)
    assert "server 1 sent an invalid frame (an array of 40 bytes announced, more than the 32" in str(box["error"])

    listener = ReleaseListener(("127.0.0.1", 0), release_files(certs), session="r", max_delivery_bytes=10_000,
                               inform_for=1.0)
    th, box = collect_in_thread(listener, timeout=600)
    with pytest.raises(ProtocolError):
        send_to_release(0, ("127.0.0.1", listener.port), tls(certs, 0), meta={},
                        arrays={"big": np.zeros(2000, np.uint64)}, session="r", timeout=10)
    th.join(10)
    assert "16000 bytes announced, more than the 10000" in str(box["error"])


def test_idle_connections_do_not_delay_the_release_server(certs):
    listener = ReleaseListener(("127.0.0.1", 0), release_files(certs), session="r")
    th, box = collect_in_thread(listener, timeout=60)
    idle = _open_idle_connections(listener.port, 3)
    t0 = time.monotonic()
    try:
        for i in range(3):
            send_to_release(i, ("127.0.0.1", listener.port), tls(certs, i), meta={"party": i},
                            arrays={"x": np.full(3, i, np.uint64)}, session="r", timeout=20)
        th.join(20)
        assert sorted(box["result"]) == [0, 1, 2] and time.monotonic() - t0 < 5
    finally:
        for s in idle:
            s.close()


# ---------------------------------------------------------------------------
# The frame limit holds for the protocol's real messages
# ---------------------------------------------------------------------------


class _MaxMessage:
    def __init__(self, inner) -> None:
        self.inner, self.index, self.largest = inner, inner.index, 0

    bytes_sent = property(lambda self: self.inner.bytes_sent)
    messages_sent = property(lambda self: self.inner.messages_sent)

    def send(self, to, array) -> None:
        self.largest = max(self.largest, np.asarray(array).nbytes)
        self.inner.send(to, array)

    def recv(self, frm, *, timeout=None):
        return self.inner.recv(frm, timeout=timeout)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize(
    "n, d, L, kw",
    [
        (45, 4, 2, {}),
        (300, 40, 5, {}),
        (100, 10, 40, {}),
        (120, 12, 3, {"profile": "strict", "value_range": (0.0, 20.0), "sum_sigma": 1.0, "hist_sigma": 1.0}),
        (150, 20, 4, {"binning": "sort"}),
        (500, 100, 5, {"block": 1 << 14}),  # several gene blocks
    ],
)
def test_protocol1_frame_limit_covers_every_message(n, d, L, kw, monkeypatch):
    from fedsyn import fixedpoint
    from fedsyn.engines.rep3 import InProcessNetwork, Party, protocol1, run_parties, share_array
    from fedsyn.engines.rep3.net import protocol1_frame_limit
    from fedsyn.params import ProtocolParams
    from fedsyn.reference import label_onehot

    kw = dict(kw)
    if "block" in kw:
        monkeypatch.setattr(protocol1, "GENE_BLOCK_ELEMENTS", kw.pop("block"))
    rng = np.random.default_rng(n)
    x = fixedpoint.encode(rng.normal(8.0, 2.0, (n, d)))
    xs = share_array(x, rng=rng)
    ys = share_array(label_onehot(np.arange(n) % L, L), rng=rng)
    params = ProtocolParams(n_labels=L, sigma=2.0, **kw)
    largest = {}

    def server(i, t):
        rec = _MaxMessage(t)
        protocol1.run_protocol1(Party.setup(i, rec, seed=1), [protocol1.HolderInput(xs[i], ys[i])], params)
        largest[i] = rec.largest

    run_parties(server, network=InProcessNetwork(timeout=120))
    limit = protocol1_frame_limit(n, d, L)
    assert max(largest.values()) <= limit
    block = min(d, max(1, protocol1.GENE_BLOCK_ELEMENTS // n))
    # the bound's shape term (8 words per element of a gene block) is within a factor 8 of the largest message:
    # the bound follows the shapes, it is not a blanket
    if n * d >= 12_000:
        assert max(largest.values()) > 64 * n * block / 8


def test_protocol1_frame_limit_at_the_paper_sizes():
    from fedsyn.engines.rep3.net import protocol1_frame_limit

    assert protocol1_frame_limit(1089, 978, 5) < 128 << 20
    assert protocol1_frame_limit(4323, 20_000, 5) < 512 << 20


def test_the_release_server_stops_the_others_when_one_server_gives_up(certs):
    """Server 1 refuses a bundle before connecting to anyone: servers 0 and 2, connected to the
    release server and waiting for server 1, stop at once instead of at their connect timeout."""
    from fedsyn.engines.rep3.net import ReleaseLink, notify_release_abort

    listener = ReleaseListener(("127.0.0.1", 0), release_files(certs), session="k")
    th, box = collect_in_thread(listener, timeout=600)
    rel = ("127.0.0.1", listener.port)
    addrs = [("127.0.0.1", p) for p in free_ports(3)]
    links = {}
    errors = {}

    def serve(i):
        links[i] = ReleaseLink.connect(i, rel, tls(certs, i), session="k", timeout=10)
        t0 = time.monotonic()
        try:
            TLSTransport.connect(i, addrs, tls(certs, i), connect_timeout=120, session="k", watch=links[i])
        except ProtocolError as exc:
            errors[i] = (str(exc), time.monotonic() - t0)
            links[i].abort(exc)

    early = threading.Thread(target=serve, args=(0,))  # connected before server 1 gives up
    early.start()
    time.sleep(0.5)
    assert notify_release_abort(1, rel, tls(certs, 1), "bundle h.server1.fsb: checksum mismatch", session="k")
    time.sleep(0.5)
    late = threading.Thread(target=serve, args=(2,))  # still starting up when server 1 gave up
    late.start()
    for t in (early, late):
        t.join(30)
    th.join(10)
    assert "release server: server 1 aborted: bundle h.server1.fsb: checksum mismatch" in str(box["error"])
    assert box["seconds"] < 10  # it waited only until both others had been told
    for i in (0, 2):
        msg, seconds = errors[i]
        assert "the release server stopped the run: server 1 aborted: bundle h.server1.fsb" in msg, msg
        assert seconds < 10  # not the 120 s connect timeout


def test_a_dead_release_server_stops_the_protocol(certs):
    from fedsyn.engines.rep3.net import ReleaseLink

    listener = ReleaseListener(("127.0.0.1", 0), release_files(certs), session="k")
    th, box = collect_in_thread(listener, timeout=600)
    rel = ("127.0.0.1", listener.port)
    addrs = [("127.0.0.1", p) for p in free_ports(3)]
    links = {i: ReleaseLink.connect(i, rel, tls(certs, i), session="k", timeout=10) for i in range(3)}
    out = {}

    def go(i):
        out[i] = TLSTransport.connect(i, addrs, tls(certs, i), timeout=60, connect_timeout=20, session="k",
                                      watch=links[i])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        # the release server's connections drop without a goodbye (as when its process dies)
        for link in list(_release_side_links(listener)):
            link.sock.shutdown(socket.SHUT_RDWR)
        t0 = time.monotonic()
        with pytest.raises(ProtocolError, match="server 0: the connection to the release server was lost|"
                                                "server 0: the release server closed the connection without notice"):
            out[0].recv(1)
        assert time.monotonic() - t0 < 5
    finally:
        close_all(out)
        th.join(10)


def _release_side_links(listener):
    """The release server's _PeerLink objects (test helper: found through the I/O threads)."""
    from fedsyn.engines.rep3.net import _PeerLink

    for t in threading.enumerate():
        if isinstance(t, _PeerLink) and t.peer.startswith("server") and t.heartbeat and t.announced_only:
            yield t


def test_an_abort_passed_on_carries_the_root_cause_not_a_chain(certs):

    ts = connect_all([tls(certs, i) for i in range(3)], timeout=60.0)
    try:
        # server 1's abort notice reaches server 0 only (say its link to server 2 is down)
        ts[1]._links[0].enqueue(frames.encode_json({"abort": {"party": 1, "origin": 1, "reason": "disk full"}}))
        with pytest.raises(ProtocolError) as err:
            ts[0].recv(1)
        assert str(err.value) == "server 0: server 1 aborted: disk full"
        ts[0].abort(err.value)  # as server.py does with the exception that stopped it
        with pytest.raises(ProtocolError) as seen:
            ts[2].recv(1)
        assert str(seen.value) == "server 2: server 0 aborted because server 1 failed: disk full"
        assert ts[2].failed_peer == 1
    finally:
        close_all(ts)
