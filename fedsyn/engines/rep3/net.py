"""TCP + TLS 1.3 links between the three computing servers and to the release server.

:class:`TLSTransport` implements the :class:`fedsyn.engines.rep3.transport.Transport`
protocol over mutually authenticated TLS 1.3. Every server holds a key and a
certificate signed by a per-deployment CA (:mod:`fedsyn.certs`); a connection is
accepted only if the peer's certificate chains to that CA *and* names the
expected role (``fedsyn-server-<j>`` as DNS subject alternative name), so an
attacker on the network can neither read nor inject messages and one server
cannot impersonate another.

Connection rule: server ``j`` listens for the higher-indexed servers and connects
to the lower-indexed ones (server 0 only listens, server 2 only connects).
Connecting retries until a deadline, so the servers may be started in any order.
After the handshake both sides exchange a hello naming their index and the
session tag; a mismatch closes the link.

Framing (all integers little-endian)::

    kind u8 | dtype code u8 | ndim u8 | 5 zero bytes | nbytes u64 | ndim x u64 shape | nbytes data

``kind`` 0 is a numpy array (only the fixed dtypes of :data:`DTYPES`: no
pickles), 1 a UTF-8 JSON control message. One I/O thread per peer owns the TLS
socket (an OpenSSL connection must not be used from two threads at once): it
writes queued frames with ``memoryview`` slices and reads incoming frames
straight into preallocated numpy buffers, so :meth:`TLSTransport.send` never
blocks on the peer reading and no Python loop touches array elements.

A peer that closes its connection or dies makes :meth:`TLSTransport.recv` raise
:class:`fedsyn.errors.ProtocolError` as soon as every message it did send has
been consumed; a silent peer makes it raise after ``timeout`` seconds. Neither
case hangs.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import selectors
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...certs import RELEASE_NAME, server_name
from ...errors import ConfigError, ProtocolError

logger = logging.getLogger(__name__)

__all__ = [
    "TLSFiles",
    "TLSTransport",
    "DTYPES",
    "server_context",
    "client_context",
    "send_to_release",
    "ReleaseListener",
]

#: dtypes a frame may carry, by wire code.
DTYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(t)
    for t in ("<u8", "<i8", "u1", "?", "<u4", "<i4", "<u2", "<i2", "i1", "<f8", "<f4")
)
_CODE = {dt: i for i, dt in enumerate(DTYPES)}
_PREFIX = struct.Struct("<BBB5xQ")
_KIND_ARRAY, _KIND_JSON = 0, 1
_MAX_FRAME = 1 << 36  # 64 GiB: refuse absurd sizes from a garbled stream
_SEND_CHUNK = 1 << 20
_RETRY_PAUSE = 0.2


@dataclass(frozen=True)
class TLSFiles:
    """One party's TLS material.

    Attributes
    ----------
    ca : pathlib.Path
        The deployment CA certificate (PEM) every peer must chain to.
    cert, key : pathlib.Path
        This party's certificate (PEM) and private key (PEM, mode 0600).
    """

    ca: Path
    cert: Path
    key: Path


def _load(ctx: ssl.SSLContext, files: TLSFiles) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cafile=str(files.ca))
        ctx.load_cert_chain(certfile=str(files.cert), keyfile=str(files.key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load TLS files (CA {files.ca}, certificate {files.cert}, key {files.key}): {exc}"
        ) from exc
    return ctx


def server_context(files: TLSFiles) -> ssl.SSLContext:
    """TLS 1.3 context for the accepting side; requires a client certificate."""
    return _load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), files)


def client_context(files: TLSFiles) -> ssl.SSLContext:
    """TLS 1.3 context for the connecting side; checks the peer's role name."""
    ctx = _load(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), files)
    ctx.check_hostname = True
    return ctx


def _peer_names(sock: ssl.SSLSocket) -> set[str]:
    """DNS subject alternative names of the peer's certificate.

    Only SANs count, as on the connecting side (``check_hostname`` ignores the
    common name), so a role is accepted on the same evidence in both directions.
    """
    cert = sock.getpeercert() or {}
    return {v for k, v in cert.get("subjectAltName", ()) if k == "DNS"}


# ---------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------


def _array_frame(array: np.ndarray) -> tuple[bytes, memoryview]:
    a = np.asarray(array)
    dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
    dt = np.dtype(dt.str) if dt.kind != "b" else np.dtype("?")
    code = _CODE.get(dt)
    if code is None:
        raise ProtocolError(f"cannot send arrays of dtype {a.dtype}; allowed: {[d.str for d in DTYPES]}")
    a = np.array(a, dtype=dt, order="C", copy=True)  # the caller may reuse its buffer
    head = _PREFIX.pack(_KIND_ARRAY, code, a.ndim, a.nbytes) + struct.pack(f"<{a.ndim}Q", *a.shape)
    return head, memoryview(a.reshape(-1).view(np.uint8))


def _json_frame(obj: Any) -> tuple[bytes, memoryview]:
    payload = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    return _PREFIX.pack(_KIND_JSON, 0, 0, len(payload)), memoryview(payload)


def _decode_prefix(prefix: bytes) -> tuple[int, int, int, int]:
    kind, code, ndim, nbytes = _PREFIX.unpack(prefix)
    if kind not in (_KIND_ARRAY, _KIND_JSON) or code >= len(DTYPES) or nbytes > _MAX_FRAME or ndim > 32:
        raise ProtocolError("malformed frame header")
    return kind, code, ndim, nbytes


def _finish_frame(kind: int, code: int, shape: tuple[int, ...], buf: np.ndarray):
    if kind == _KIND_JSON:
        try:
            return json.loads(buf.tobytes().decode("utf-8"))
        except ValueError:  # bad UTF-8 or JSON
            raise ProtocolError("malformed control message") from None
    dt = DTYPES[code]
    count = 1
    for s in shape:  # exact integers: a garbled shape must not overflow into a match
        count *= s
    if count * dt.itemsize != buf.size:
        raise ProtocolError("frame size does not match its shape")
    return buf.view(dt).reshape(shape)


def _recv_exact_blocking(
    sock: ssl.SSLSocket, n: int, deadline: float, what: str, *, into: memoryview | None = None
) -> memoryview:
    """Exactly ``n`` bytes (into ``into`` if given) before ``deadline``, or ProtocolError."""
    view = memoryview(bytearray(n)) if into is None else into
    got = 0
    while got < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ProtocolError(f"timed out waiting for {what}")
        sock.settimeout(left)
        try:
            k = sock.recv_into(view[got:], n - got)
        except socket.timeout:
            raise ProtocolError(f"timed out waiting for {what}") from None
        except (OSError, ssl.SSLError) as exc:
            raise ProtocolError(f"connection to {what} failed: {exc}") from exc
        if k == 0:
            raise ProtocolError(f"{what} closed the connection")
        got += k
    return view


def _send_blocking(sock: ssl.SSLSocket, frame: tuple[bytes, memoryview], deadline: float, what: str) -> int:
    head, body = frame
    sock.settimeout(max(deadline - time.monotonic(), 0.001))
    try:
        sock.sendall(head)
        for off in range(0, len(body), _SEND_CHUNK):
            sock.sendall(body[off : off + _SEND_CHUNK])
    except (OSError, ssl.SSLError) as exc:
        raise ProtocolError(f"sending to {what} failed: {exc}") from exc
    return len(head) + len(body)


def _recv_blocking(sock: ssl.SSLSocket, deadline: float, what: str):
    kind, code, ndim, nbytes = _decode_prefix(bytes(_recv_exact_blocking(sock, _PREFIX.size, deadline, what)))
    shape = struct.unpack(f"<{ndim}Q", _recv_exact_blocking(sock, 8 * ndim, deadline, what)) if ndim else ()
    buf = np.empty(nbytes, dtype=np.uint8)
    if nbytes:
        _recv_exact_blocking(sock, nbytes, deadline, what, into=memoryview(buf))
    return _finish_frame(kind, code, tuple(shape), buf)


# ---------------------------------------------------------------------------
# One peer: an I/O thread owning the TLS socket
# ---------------------------------------------------------------------------


class _Closed:
    """Inbox marker: the peer's stream ended (message says why)."""

    def __init__(self, message: str) -> None:
        self.message = message


class _PeerLink(threading.Thread):
    def __init__(self, sock: ssl.SSLSocket, name: str) -> None:
        super().__init__(name=f"fedsyn-net-{name}", daemon=True)
        self.sock = sock
        self.peer = name
        self.inbox: queue.Queue = queue.Queue()
        self._out: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._closing = False
        self.failed: str | None = None
        self.eof = False
        sock.setblocking(False)

    # -- called from the protocol thread --------------------------------
    def enqueue(self, frame: tuple[bytes, memoryview]) -> None:
        with self._lock:
            if self.failed is not None:
                raise ProtocolError(f"cannot send to {self.peer}: {self.failed}")
            self._out.append(frame)
        self._wake()

    def close(self, linger: float) -> None:
        with self._lock:
            self._closing = True
        self._wake()
        self.join(timeout=linger)
        with self._lock:
            self._out.clear()
        for s in (self.sock, self._wake_r, self._wake_w):
            try:
                s.close()
            except OSError:
                pass

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    # -- I/O thread -----------------------------------------------------
    def run(self) -> None:  # noqa: C901 - one state machine
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        registered = 0
        # receive state: 0 = prefix, 1 = shape, 2 = body
        prefix = bytearray(_PREFIX.size)
        stage, target, got = 0, memoryview(prefix), 0
        kind = code = ndim = 0
        shape: tuple[int, ...] = ()
        body = np.empty(0, np.uint8)
        # send state
        cur: list[memoryview] | None = None
        part = off = 0
        shut_wr = False
        linger_deadline = 0.0
        try:
            while True:
                with self._lock:
                    if cur is None and self._out:
                        head, payload = self._out.popleft()
                        cur, part, off = [memoryview(head), payload], 0, 0
                    closing = self._closing
                want_write = cur is not None
                if closing and not want_write and not shut_wr:
                    # Everything sent: half-close, then drain until the peer closes
                    # too, so that unread data never turns our FIN into a reset.
                    try:
                        socket.socket.shutdown(self.sock, socket.SHUT_WR)
                    except OSError:
                        pass
                    shut_wr = True
                    linger_deadline = time.monotonic() + 5.0
                if shut_wr and (self.eof or time.monotonic() > linger_deadline):
                    return
                mask = (0 if self.eof else selectors.EVENT_READ) | (selectors.EVENT_WRITE if want_write else 0)
                if mask != registered:
                    if registered == 0:
                        sel.register(self.sock, mask)
                    elif mask == 0:
                        sel.unregister(self.sock)
                    else:
                        sel.modify(self.sock, mask)
                    registered = mask
                pending = not self.eof and self.sock.pending() > 0
                events = sel.select(0 if pending else (0.5 if shut_wr else None))
                readable = pending
                for key, ev in events:
                    if key.fileobj is self._wake_r:
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except (BlockingIOError, OSError):
                            pass
                    elif ev & selectors.EVENT_READ:
                        readable = True
                # ---- read everything available
                while readable and not self.eof:
                    try:
                        k = self.sock.recv_into(target[got:], len(target) - got)
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                        break
                    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                        k = 0
                    if k == 0:
                        if stage != 0 or got:
                            self._fail("closed the connection in the middle of a message")
                        else:
                            self.eof = True
                            self.inbox.put(_Closed("closed the connection"))
                        break
                    got += k
                    if got < len(target):
                        continue
                    if stage == 0:
                        kind, code, ndim, nbytes = _decode_prefix(bytes(prefix))
                        body = np.empty(nbytes, dtype=np.uint8)
                        if ndim:
                            stage, target, got = 1, memoryview(bytearray(8 * ndim)), 0
                            continue
                        shape = ()
                        stage, target, got = 2, memoryview(body), 0
                    elif stage == 1:
                        shape = struct.unpack(f"<{ndim}Q", target)
                        stage, target, got = 2, memoryview(body), 0
                    if stage == 2 and got == len(target):
                        self.inbox.put(_finish_frame(kind, code, shape, body))
                        stage, target, got = 0, memoryview(prefix), 0
                # ---- write what the socket takes
                while cur is not None:
                    buf = cur[part]
                    if off >= len(buf):
                        part, off = part + 1, 0
                        if part == len(cur):
                            cur = None
                        continue
                    try:
                        off += self.sock.send(buf[off : off + _SEND_CHUNK])
                    except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                        break
        except ProtocolError as exc:
            self._fail(str(exc))
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._fail(f"connection failed ({exc.__class__.__name__}: {exc})")
        finally:
            sel.close()

    def _fail(self, message: str) -> None:
        with self._lock:
            if self.failed is None:
                self.failed = message
        self.eof = True
        self.inbox.put(_Closed(message))


# ---------------------------------------------------------------------------
# The transport
# ---------------------------------------------------------------------------


class TLSTransport:
    """Point-to-point channels of one computing server to the two others, over TLS 1.3.

    Use :meth:`connect` to build one. Implements the ``Transport`` protocol of
    :mod:`fedsyn.engines.rep3.transport`: :meth:`send` queues an array and
    returns at once; :meth:`recv` returns the next array from a peer in the
    order sent, or raises :class:`ProtocolError` when the peer is gone or
    silent for ``timeout`` seconds.

    Attributes
    ----------
    index : int
        This server's index (0, 1 or 2).
    bytes_sent : int
        Array payload bytes queued for sending (as the in-process transport counts).
    wire_bytes_sent : int
        Frame bytes including headers (TLS record overhead not counted).
    messages_sent : int
        Number of frames queued.
    """

    def __init__(self, index: int, links: dict[int, _PeerLink], *, timeout: float) -> None:
        self.index = index
        self._links = links
        self.timeout = float(timeout)
        self.bytes_sent = 0
        self.wire_bytes_sent = 0
        self.messages_sent = 0
        self.bytes_received = 0
        self._closed = False
        for link in links.values():
            link.start()

    @property
    def peers(self) -> tuple[int, ...]:
        return tuple(sorted(self._links))

    def send(self, to: int, array: np.ndarray) -> None:
        """Queue ``array`` (copied) for server ``to``; never waits for the peer."""
        link = self._link(to)
        frame = _array_frame(array)
        link.enqueue(frame)
        self.bytes_sent += len(frame[1])
        self.wire_bytes_sent += len(frame[0]) + len(frame[1])
        self.messages_sent += 1

    def recv(self, frm: int, *, timeout: float | None = None) -> np.ndarray:
        """Next array from server ``frm``.

        Parameters
        ----------
        frm : int
            The sending server.
        timeout : float or None, default None
            Seconds to wait; ``None`` uses the transport's ``timeout``.

        Raises
        ------
        ProtocolError
            The peer closed its connection, died, sent garbage, or sent nothing
            for ``timeout`` seconds.
        """
        link = self._link(frm)
        wait = self.timeout if timeout is None else float(timeout)
        try:
            item = link.inbox.get(timeout=wait)
        except queue.Empty:
            raise ProtocolError(
                f"server {self.index}: no message from server {frm} within {wait:g} s "
                "(is it running and reachable?)"
            ) from None
        if isinstance(item, _Closed):
            link.inbox.put(item)  # every later recv fails the same way
            raise ProtocolError(f"server {self.index}: server {frm} {item.message}")
        if isinstance(item, np.ndarray):
            self.bytes_received += item.nbytes
            return item
        raise ProtocolError(f"server {self.index}: unexpected control message from server {frm}")

    def close(self) -> None:
        """Flush pending sends, close both links (waits at most a few seconds)."""
        if self._closed:
            return
        self._closed = True
        for link in self._links.values():
            link.close(linger=10.0)

    def _link(self, j: int) -> _PeerLink:
        if self._closed:
            raise ProtocolError(f"server {self.index}: transport is closed")
        try:
            return self._links[j]
        except KeyError:
            raise ProtocolError(f"server {self.index} has no link to party {j}") from None

    def __enter__(self) -> "TLSTransport":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- set-up -------------------------------------------------------------
    @classmethod
    def connect(
        cls,
        index: int,
        addresses: Sequence[tuple[str, int]],
        tls: TLSFiles,
        *,
        bind_host: str | None = None,
        timeout: float = 300.0,
        connect_timeout: float = 60.0,
        session: str = "",
    ) -> "TLSTransport":
        """Connect server ``index`` to the other two servers.

        Parameters
        ----------
        index : int
            This server (0, 1 or 2).
        addresses : sequence of three (host, port)
            Where each server listens.
        tls : TLSFiles
            CA, certificate and key of this server.
        bind_host : str or None, default None
            Interface to listen on; ``None``: this server's own host.
        timeout : float, default 300
            Default :meth:`recv` timeout in seconds.
        connect_timeout : float, default 60
            Seconds to wait for all links (retrying refused connections).
        session : str, default ""
            Session tag both sides must agree on (e.g. the run id).

        Raises
        ------
        ProtocolError
            A peer did not connect in time, presented a certificate for another
            role, or used another session tag.
        """
        if index not in (0, 1, 2) or len(addresses) != 3:
            raise ConfigError("A rep3 deployment has exactly three servers, indices 0, 1, 2.")
        deadline = time.monotonic() + connect_timeout
        links: dict[int, ssl.SSLSocket] = {}
        errors: list[BaseException] = []
        higher = [j for j in range(3) if j > index]
        acceptor = None
        listener = None
        if higher:
            host, port = addresses[index]
            listener = _listen(bind_host or host, port)
            sctx = server_context(tls)
            acceptor = threading.Thread(
                target=_accept_peers,
                args=(listener, sctx, index, higher, session, deadline, links, errors),
                daemon=True,
            )
            acceptor.start()
        try:
            cctx = client_context(tls)
            for j in range(index):
                links[j] = _connect_peer(cctx, addresses[j], server_name(j), index, session, deadline, f"server {j}")
            if acceptor is not None:
                acceptor.join(max(deadline - time.monotonic(), 0) + 1.0)
                if errors:
                    raise errors[0]
                missing = [j for j in higher if j not in links]
                if missing:
                    raise ProtocolError(
                        f"server {index}: server(s) {', '.join(map(str, missing))} did not connect "
                        f"within {connect_timeout:g} s (check that they run, the addresses, ports "
                        "and certificates)"
                    )
        except BaseException:
            for s in links.values():
                s.close()
            raise
        finally:
            if listener is not None:
                listener.close()
        logger.info("server %d: TLS links to servers %s established", index, sorted(links))
        return cls(index, {j: _PeerLink(s, f"server {j}") for j, s in links.items()}, timeout=timeout)


def _listen(host: str, port: int) -> socket.socket:
    try:
        lst = socket.create_server((host, port), reuse_port=False, backlog=8)
    except OSError as exc:
        raise ProtocolError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    lst.settimeout(_RETRY_PAUSE)
    return lst


def _hello(sock: ssl.SSLSocket, me: str, session: str, deadline: float, what: str, expect: str) -> dict:
    _send_blocking(sock, _json_frame({"fedsyn": 1, "role": me, "session": session}), deadline, what)
    msg = _recv_blocking(sock, deadline, what)
    if not isinstance(msg, dict) or msg.get("fedsyn") != 1:
        raise ProtocolError(f"{what} did not speak the fedsyn protocol")
    if msg.get("role") != expect:
        raise ProtocolError(f"{what} introduced itself as {msg.get('role')!r}, expected {expect!r}")
    if msg.get("session") != session:
        raise ProtocolError(
            f"{what} is in session {msg.get('session')!r}, this party in {session!r}"
        )
    return msg


def _connect_peer(
    ctx: ssl.SSLContext, address: tuple[str, int], expect: str, index: int | None,
    session: str, deadline: float, what: str, me: str | None = None,
) -> ssl.SSLSocket:
    host, port = address
    last: BaseException | None = None
    me = me or server_name(index)  # type: ignore[arg-type]
    while time.monotonic() < deadline:
        raw = None
        try:
            raw = socket.create_connection((host, port), timeout=max(min(5.0, deadline - time.monotonic()), 0.05))
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = ctx.wrap_socket(raw, server_hostname=expect)
        except ssl.SSLCertVerificationError as exc:
            if raw is not None:
                raw.close()
            raise ProtocolError(
                f"{me}: the certificate of {what} at {host}:{port} was refused "
                f"({exc.verify_message}); is it signed by this deployment's CA and named {expect!r}?"
            ) from exc
        except ssl.SSLError as exc:
            if raw is not None:
                raw.close()
            raise ProtocolError(f"{me}: TLS handshake with {what} at {host}:{port} failed: {exc}") from exc
        except OSError as exc:
            if raw is not None:
                raw.close()
            last = exc
            time.sleep(_RETRY_PAUSE)
            continue
        try:
            _hello(sock, me, session, deadline, what, expect)
        except ProtocolError:
            sock.close()
            raise
        return sock
    raise ProtocolError(
        f"{me}: could not connect to {what} at {host}:{port} before the deadline "
        f"({getattr(last, 'strerror', None) or last})"
    )


def _accept_one(
    listener: socket.socket, ctx: ssl.SSLContext, deadline: float
) -> tuple[ssl.SSLSocket, set[str]] | None:
    try:
        raw, addr = listener.accept()
    except (socket.timeout, BlockingIOError):
        return None
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    raw.settimeout(max(min(10.0, deadline - time.monotonic()), 0.05))
    try:
        sock = ctx.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError) as exc:
        logger.warning("refused a TLS connection from %s: %s", addr[0], exc)
        raw.close()
        return None
    return sock, _peer_names(sock)


def _accept_peers(
    listener: socket.socket, ctx: ssl.SSLContext, index: int, higher: list[int], session: str,
    deadline: float, links: dict, errors: list,
) -> None:
    expected = {server_name(j): j for j in higher}
    try:
        while time.monotonic() < deadline and not all(j in links for j in higher):
            got = _accept_one(listener, ctx, deadline)
            if got is None:
                continue
            sock, names = got
            match = [expected[n] for n in names if n in expected]
            if len(match) != 1 or match[0] in links:
                logger.warning("server %d: refused a peer with certificate names %s", index, sorted(names))
                sock.close()
                continue
            j = match[0]
            try:
                _hello(sock, server_name(index), session, deadline, f"server {j}", server_name(j))
            except ProtocolError as exc:
                sock.close()
                errors.append(ProtocolError(f"server {index}: {exc}"))
                return
            links[j] = sock
    except BaseException as exc:  # noqa: BLE001 - reported to the connecting thread
        errors.append(exc)


# ---------------------------------------------------------------------------
# Link to the release server
# ---------------------------------------------------------------------------


def send_to_release(
    index: int,
    address: tuple[str, int],
    tls: TLSFiles,
    *,
    meta: dict,
    arrays: dict[str, np.ndarray],
    session: str = "",
    timeout: float = 300.0,
) -> int:
    """Send server ``index``'s output shares to the release server and wait for its receipt.

    The release server must present a ``fedsyn-release`` certificate of the
    deployment CA. Returns the bytes sent.
    """
    deadline = time.monotonic() + timeout
    sock = _connect_peer(
        client_context(tls), address, RELEASE_NAME, index, session, deadline, "the release server"
    )
    try:
        names = list(arrays)
        sent = _send_blocking(sock, _json_frame({"meta": meta, "arrays": names}), deadline, "the release server")
        for name in names:
            sent += _send_blocking(sock, _array_frame(arrays[name]), deadline, "the release server")
        ack = _recv_blocking(sock, deadline, "the release server")
        if not (isinstance(ack, dict) and ack.get("ok")):
            raise ProtocolError(f"the release server refused the output shares: {ack}")
        return sent
    finally:
        sock.close()


class ReleaseListener:
    """The release server's end: accepts the three servers' output shares over TLS.

    Parameters
    ----------
    bind : (host, port)
        Address to listen on (port 0 picks a free one; see :attr:`port`).
    tls : TLSFiles
        CA and the release server's ``fedsyn-release`` certificate and key.
    session : str, default ""
        Session tag the servers must present.
    """

    def __init__(self, bind: tuple[str, int], tls: TLSFiles, *, session: str = "") -> None:
        self._ctx = server_context(tls)
        self._listener = _listen(*bind)
        self.port = self._listener.getsockname()[1]
        self.session = session

    def collect(self, *, timeout: float = 600.0, abort: threading.Event | None = None) -> dict[int, tuple[dict, dict[str, np.ndarray]]]:
        """Wait until all three servers delivered; returns ``{i: (meta, arrays)}``.

        Raises
        ------
        ProtocolError
            Not all three servers delivered within ``timeout`` seconds (or
            ``abort`` was set).
        """
        deadline = time.monotonic() + timeout
        expected = {server_name(j): j for j in range(3)}
        out: dict[int, tuple[dict, dict[str, np.ndarray]]] = {}
        try:
            while len(out) < 3:
                if time.monotonic() > deadline or (abort is not None and abort.is_set()):
                    missing = sorted(set(range(3)) - set(out))
                    raise ProtocolError(
                        f"release server: no output shares from server(s) {', '.join(map(str, missing))} "
                        f"within {timeout:g} s"
                    )
                got = _accept_one(self._listener, self._ctx, deadline)
                if got is None:
                    continue
                sock, names = got
                match = [expected[n] for n in names if n in expected]
                if len(match) != 1 or match[0] in out:
                    logger.warning("release server: refused a peer with certificate names %s", sorted(names))
                    sock.close()
                    continue
                j = match[0]
                what = f"server {j}"
                try:
                    _hello(sock, RELEASE_NAME, self.session, deadline, what, server_name(j))
                    head = _recv_blocking(sock, deadline, what)
                    if not isinstance(head, dict) or not isinstance(head.get("arrays"), list):
                        raise ProtocolError(f"{what} sent a malformed output header")
                    arrays = {}
                    for name in head["arrays"]:
                        arr = _recv_blocking(sock, deadline, what)
                        if not isinstance(arr, np.ndarray):
                            raise ProtocolError(f"{what} sent a malformed output array")
                        arrays[str(name)] = arr
                    _send_blocking(sock, _json_frame({"ok": True}), deadline, what)
                finally:
                    sock.close()
                out[j] = (head.get("meta") or {}, arrays)
                logger.info("release server: received the output shares of server %d", j)
        finally:
            self.close()
        return out

    def close(self) -> None:
        try:
            self._listener.close()
        except OSError:
            pass
