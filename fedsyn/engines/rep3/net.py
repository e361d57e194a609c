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
Every accepted connection is handshaken in its own thread with a short timeout
(``handshake_timeout``), so idle or slow connections to a listening port (port
scanners, load balancer probes, an attacker) cannot delay the real peers. After
the handshake both sides exchange a hello naming their role, the session tag
and their heartbeat interval; a mismatch closes the link.

Frames: :mod:`fedsyn.engines.rep3.frames` (numpy arrays of fixed dtypes, JSON
control messages, heartbeats; no pickles). One I/O thread
per peer owns the TLS socket (an OpenSSL connection must not be used from two
threads at once): it writes queued frames with ``memoryview`` slices and reads
incoming frames straight into preallocated numpy buffers, so
:meth:`TLSTransport.send` never blocks on the peer reading and no Python loop
touches array elements.

Bounds: a frame is refused *before* anything is allocated when it announces
more than the link accepts -- ``max_frame_bytes`` for arrays between servers
(:func:`protocol1_frame_limit` derives it from the run's public shapes), 64 KiB
for control messages, and on the release link exactly the shapes the server
announced in its header. Any failure of an I/O thread (a refused frame, a
reset, an allocation failure, a bug) is handed at once to the waiting
:meth:`TLSTransport.recv`, with its cause.

Failing fast, naming the right party:

* a server that fails calls :meth:`TLSTransport.abort` (and
  :meth:`ReleaseLink.abort` or :func:`notify_release_abort`): its peers' next
  (or pending) :meth:`~TLSTransport.recv` raises at once, naming it and its
  reason, and the release server stops waiting;
* a graceful :meth:`~TLSTransport.close` says goodbye first, so a connection
  that ends *without* a goodbye (process killed, crash, cut link) is known to
  be a failure of that peer: every later ``recv`` raises naming it -- also a
  ``recv`` waiting on the *other* peer, which otherwise could be blamed when
  it stops in turn;
* each I/O thread sends a heartbeat after ``heartbeat`` idle seconds; a peer
  that sent nothing for ``dead_after`` seconds (cut or black-holed link,
  frozen host) is declared gone without waiting for the protocol timeout;
* a peer that is alive but never sends the expected message makes ``recv``
  raise after ``timeout`` seconds.
"""

from __future__ import annotations

import collections
import logging
import math
import selectors
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ...certs import RELEASE_NAME, server_name
from ...errors import ConfigError, FedsynError, ProtocolError
from .frames import CODE as _CODE
from .frames import CONTROL_MAX as _CONTROL_MAX
from .frames import DEFAULT_MAX_FRAME_BYTES, DTYPES
from .frames import KIND_ARRAY as _KIND_ARRAY
from .frames import KIND_JSON as _KIND_JSON
from .frames import KIND_PING as _KIND_PING
from .frames import MAX_NDIM as _MAX_NDIM
from .frames import PING as _PING
from .frames import PREFIX as _PREFIX
from .frames import check_shape as _check_shape
from .frames import decode_prefix as _decode_prefix
from .frames import encode_array as _array_frame
from .frames import encode_json as _json_frame
from .frames import finish_frame as _finish_frame

logger = logging.getLogger(__name__)

__all__ = [
    "TLSFiles",
    "TLSTransport",
    "DTYPES",
    "DEFAULT_MAX_FRAME_BYTES",
    "protocol1_frame_limit",
    "server_context",
    "client_context",
    "ReleaseLink",
    "send_to_release",
    "notify_release_abort",
    "ReleaseListener",
]

#: The release header carries the public metadata (gene names: up to a few MB).
_RELEASE_HEADER_MAX = 64 << 20
#: Output shares one server may announce to the release server, in total.
_RELEASE_MAX_BYTES = 4 << 30
_RELEASE_MAX_ARRAYS = 64
_REASON_MAX = 2000

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
DEFAULT_HEARTBEAT = 1.0
DEFAULT_DEAD_AFTER = 10.0
_MAX_PENDING_HANDSHAKES = 32
_CLOSE_LINGER = 10.0
_ABORT_LINGER = 2.0
#: How long a recv that sees its peer say goodbye early waits for news of another failure.
_BLAME_GRACE = 1.0
#: How often a waiting server looks at its watched release link.
_WATCH_POLL = 0.2
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
    sans = cert.get("subjectAltName", ())  # ((type, value), ...)
    return {str(v) for k, v in sans if k == "DNS"}  # type: ignore[misc,str-unpack]


def protocol1_frame_limit(n_records: int, n_genes: int, n_labels: int) -> int:
    """A bound on the bytes of any one message between servers in Protocol 1.

    Derived from the public shapes of a run (``n`` pooled samples, ``d`` genes,
    ``L`` labels) and :data:`fedsyn.engines.rep3.protocol1.GENE_BLOCK_ELEMENTS`:
    the largest messages are the shuffle of one gene block's keys (one word
    per sample and gene of the block), a run of threshold comparisons (at most
    2^20 comparisons, about two words each with the piggybacked daBit terms)
    and the outputs' reshare (one word per released cell). The bound allows
    eight words per element of a gene block, four per released cell and a
    constant 32 MiB; its shape term is two to eight times the measured maxima
    (``tests/test_net.py`` checks both against recorded runs). Pass it as
    ``max_frame_bytes`` to :meth:`TLSTransport.connect`: a peer announcing more
    is refused before anything is allocated.

    Parameters
    ----------
    n_records, n_genes, n_labels : int
        Public shapes of the run.

    Returns
    -------
    int
        Bytes (e.g. 105 MB at 978 genes x 1,089 samples, 5 labels).
    """
    from .protocol1 import GENE_BLOCK_ELEMENTS

    n, d, L = max(int(n_records), 1), max(int(n_genes), 1), max(int(n_labels), 1)
    block = min(d, max(1, GENE_BLOCK_ELEMENTS // n))
    cells = d * 4 * (L + 2) + L
    words = 8 * n * block + 4 * cells + (1 << 22)
    return 8 * words


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


def _recv_control_blocking(sock: ssl.SSLSocket, deadline: float, what: str, *, limit: int = _CONTROL_MAX):
    """One control message (JSON), bounded by ``limit`` bytes; used before the I/O thread starts."""
    prefix = bytes(_recv_exact_blocking(sock, _PREFIX.size, deadline, what))
    try:
        kind, _, _, nbytes = _decode_prefix(prefix, max_array=0, max_control=limit)
    except ProtocolError as exc:
        raise ProtocolError(f"{what} sent an invalid frame ({exc})") from None
    if kind != _KIND_JSON:
        raise ProtocolError(f"{what} sent an array where a control message was due")
    buf = np.empty(nbytes, dtype=np.uint8)
    if nbytes:
        _recv_exact_blocking(sock, nbytes, deadline, what, into=buf.data)
    return _finish_frame(kind, 0, (), buf)


def _exception_text(exc: BaseException) -> str:
    """An abort reason from an exception: fedsyn's own messages as they are, others with their type."""
    return str(exc) if isinstance(exc, FedsynError) else f"{type(exc).__name__}: {exc}"


def _reason_text(reason: object) -> str:
    text = str(reason)
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 3] + "..."


# ---------------------------------------------------------------------------
# One peer: an I/O thread owning the TLS socket
# ---------------------------------------------------------------------------


class _PeerLink(threading.Thread):
    """One authenticated connection, its socket owned by one I/O thread.

    Incoming arrays and control messages go to :attr:`inbox` (guarded by the
    owner's condition ``cond``, notified on every change). The end of the link
    is recorded as exactly one of: :attr:`bye` then :attr:`eof` (the peer said
    goodbye and closed: graceful), :attr:`abort_notice` (the peer aborted and
    said why), or :attr:`failed` (anything else, with the cause, phrased as a
    sentence naming the peer).
    """

    def __init__(
        self,
        sock: ssl.SSLSocket,
        name: str,
        *,
        cond: threading.Condition,
        max_frame: int,
        max_control: int = _CONTROL_MAX,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        dead_after: float | None = None,
        announced_only: bool = False,
        on_control: Callable[["_PeerLink", dict], None] | None = None,
    ) -> None:
        super().__init__(name=f"fedsyn-net-{name}", daemon=True)
        self.sock = sock
        self.peer = name
        self.cond = cond
        self.max_frame = int(max_frame)
        self.max_control = int(max_control)
        self.heartbeat = heartbeat if heartbeat and heartbeat > 0 else None
        self.dead_after = dead_after if dead_after and dead_after > 0 else None
        self.announced_only = announced_only
        self.expected: collections.deque = collections.deque()  # (code, shape) announced by on_control
        self.on_control = on_control
        self.inbox: collections.deque = collections.deque()
        self._out: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._closing = False
        self._done = False
        self._linger = _CLOSE_LINGER
        self.failed: str | None = None
        self.abort_notice: dict | None = None
        self.ended_at = math.inf
        self.bye = False
        self.eof = False
        self.last_rx = time.monotonic()
        sock.setblocking(False)

    # -- called from other threads ----------------------------------------
    def enqueue(self, frame: tuple[bytes, memoryview]) -> None:
        with self._lock:
            if self.failed is not None:
                raise ProtocolError(f"cannot send to {self.peer}: {self.failed}")
            if self._closing:
                raise ProtocolError(f"cannot send to {self.peer}: the link is closed")
            if self._done:
                raise ProtocolError(f"cannot send to {self.peer}: it closed its connection")
            self._out.append(frame)
        self._wake()

    def start_close(self, linger: float, *, final: tuple[bytes, memoryview] | None = None, drop: bool = False) -> None:
        """Begin closing: optionally drop queued frames, queue ``final``, then half-close and drain."""
        with self._lock:
            if drop:
                self._out.clear()
            if final is not None and self.failed is None and not self._closing:
                self._out.append(final)
            self._closing = True
            self._linger = linger
        self._wake()

    def finish_close(self, deadline: float) -> None:
        if self.is_alive():
            self.join(timeout=max(deadline - time.monotonic(), 0.0))
        with self._lock:
            self._out.clear()
        self._close_sockets()

    def close(self, linger: float, *, final: tuple[bytes, memoryview] | None = None) -> None:
        self.start_close(linger, final=final)
        self.finish_close(time.monotonic() + linger + 1.0)

    def _close_sockets(self) -> None:
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

    @property
    def ended(self) -> bool:
        """The link ended abnormally: the peer aborted or failed."""
        return self.failed is not None or self.abort_notice is not None

    # -- I/O thread -------------------------------------------------------
    def run(self) -> None:
        try:
            self._loop()
        except ProtocolError as exc:
            self._fail(f"{self.peer} sent an invalid frame ({exc})")
        except (OSError, ssl.SSLError) as exc:
            if self.bye and self.eof:
                pass  # the peer said goodbye and closed; it no longer reads
            else:
                self._fail(f"the connection to {self.peer} was lost ({exc.__class__.__name__}: {exc})")
        except BaseException as exc:  # noqa: BLE001 - e.g. MemoryError: reported, never silent
            self._fail(f"the link to {self.peer} failed in its I/O thread ({exc.__class__.__name__}: {exc})")
        finally:
            with self._lock:
                self._done = True
            with self.cond:
                self.cond.notify_all()
            if self._closing or self.ended:
                self._close_sockets()

    def _loop(self) -> None:  # noqa: C901 - one state machine
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        registered = 0
        # receive state: 0 = prefix, 1 = shape, 2 = body
        prefix = bytearray(_PREFIX.size)
        stage, target, got = 0, memoryview(prefix), 0
        kind = code = ndim = nbytes = 0
        shape: tuple[int, ...] = ()
        # send state
        cur: list[memoryview] | None = None
        part = off = 0
        shut_wr = False
        linger_deadline = 0.0
        last_tx = time.monotonic()
        try:
            while True:
                if self.failed is not None or (self.abort_notice is not None and self.eof):
                    return  # the link is over; nothing more to send or receive
                now = time.monotonic()
                with self._lock:
                    if cur is None and self._out:
                        head, payload = self._out.popleft()
                        cur, part, off = [memoryview(head), payload], 0, 0
                    closing = self._closing
                if (cur is None and not closing and not self.bye and self.heartbeat
                        and now - last_tx >= self.heartbeat):
                    cur, part, off = [memoryview(_PING[0]), _PING[1]], 0, 0
                want_write = cur is not None
                if closing and not want_write and not shut_wr:
                    # Everything sent: half-close, then drain until the peer closes
                    # too, so that unread data never turns our FIN into a reset.
                    try:
                        socket.socket.shutdown(self.sock, socket.SHUT_WR)
                    except OSError:
                        pass
                    shut_wr = True
                    linger_deadline = now + self._linger
                if shut_wr and (self.eof or now > linger_deadline):
                    return
                if self.eof and self.bye and not want_write and not shut_wr:
                    # The peer said goodbye and closed: nothing more will come and it
                    # reads nothing more. Half-close too, so that its close completes.
                    try:
                        socket.socket.shutdown(self.sock, socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                if (
                    not closing and not self.eof and not self.bye and self.dead_after is not None
                    and now - self.last_rx > self.dead_after
                ):
                    self._fail(
                        f"{self.peer} sent nothing for {self.dead_after:g} s, not even a heartbeat "
                        "(link cut, host down or process frozen?)"
                    )
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
                if not self.eof and self.sock.pending() > 0:
                    wait: float | None = 0.0
                else:
                    waits = []
                    if shut_wr:
                        waits.append(linger_deadline - now)
                    elif closing:
                        waits.append(0.5)
                    else:
                        if self.heartbeat and not want_write:
                            waits.append(last_tx + self.heartbeat - now)
                        if self.dead_after is not None and not self.eof and not self.bye:
                            waits.append(self.last_rx + self.dead_after - now + 0.01)
                    wait = max(min(waits), 0.0) if waits else None
                events = sel.select(wait)
                readable = not self.eof and self.sock.pending() > 0
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
                        self._on_eof(mid_frame=stage != 0 or got > 0)
                        break
                    got += k
                    self.last_rx = time.monotonic()
                    if got < len(target):
                        continue
                    if stage == 0:
                        kind, code, ndim, nbytes = _decode_prefix(
                            bytes(prefix), max_array=self.max_frame, max_control=self.max_control
                        )
                        if kind == _KIND_PING:
                            got = 0
                            continue
                        if ndim:
                            stage, target, got = 1, memoryview(bytearray(8 * ndim)), 0
                            continue
                        shape = ()
                    elif stage == 1:
                        shape = tuple(struct.unpack(f"<{ndim}Q", target))
                    if stage in (0, 1):
                        if kind == _KIND_ARRAY:
                            self._check_array(code, shape, nbytes)
                        body = np.empty(nbytes, dtype=np.uint8)
                        stage, target, got = 2, body.data, 0
                    if stage == 2 and got == len(target):
                        self._deliver(_finish_frame(kind, code, shape, body))
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
                    last_tx = time.monotonic()
        finally:
            sel.close()

    def _check_array(self, code: int, shape: tuple[int, ...], nbytes: int) -> None:
        _check_shape(code, shape, nbytes)
        if self.announced_only:
            if not self.expected:
                raise ProtocolError("an array that was not announced")
            want_code, want_shape = self.expected.popleft()
            if (code, shape) != (want_code, want_shape):
                raise ProtocolError(
                    f"an array of dtype {DTYPES[code].str} and shape {shape}, announced "
                    f"{DTYPES[want_code].str} {want_shape}"
                )

    def _deliver(self, item) -> None:
        if isinstance(item, dict):
            if item.get("bye") is True and len(item) == 1:
                self.bye = True
                return
            if "abort" in item:
                notice = item["abort"] if isinstance(item["abort"], dict) else {"reason": item["abort"]}
                with self.cond:
                    if not self.ended:
                        self.abort_notice = notice
                        self.ended_at = time.monotonic()
                    self.cond.notify_all()
                return
            if self.on_control is not None:
                self.on_control(self, item)
        with self.cond:
            self.inbox.append(item)
            self.cond.notify_all()

    def _on_eof(self, *, mid_frame: bool) -> None:
        if mid_frame:
            self._fail(
                f"{self.peer} closed the connection in the middle of a message (process killed or crashed, "
                "or the link was cut)"
            )
        elif self.bye or self.abort_notice is not None:
            with self.cond:
                self.eof = True
                self.cond.notify_all()
        else:
            self._fail(
                f"{self.peer} closed the connection without notice (process killed or crashed, "
                "or the link was cut)"
            )

    def _fail(self, message: str) -> None:
        with self._lock:
            first = self.failed is None and self.abort_notice is None
            if self.failed is None:
                self.failed = message
        with self.cond:
            if first:
                self.ended_at = time.monotonic()
            self.eof = True
            self.cond.notify_all()


def _notice_text(peer: str, notice: dict, peer_index: int | None = None) -> tuple[str, int | None]:
    """Message and origin (the server where the failure started) of an abort notice from ``peer``."""
    reason = _reason_text(notice.get("reason", "no reason given"))
    origin = notice.get("origin")
    origin = origin if isinstance(origin, int) and not isinstance(origin, bool) and 0 <= origin <= 2 else None
    if origin is None or origin == peer_index:
        return f"{peer} aborted: {reason}", peer_index
    return f"{peer} aborted because server {origin} failed: {reason}", origin


def _first_failure(links: Mapping[int, _PeerLink]) -> tuple[int, str, str | None] | None:
    """The earliest abnormal end among ``links``, or None. Hold the cond.

    Returns ``(origin, message, root)``: the server where the failure started,
    the message naming it, and for an abort notice the reason it carried (the
    root cause, passed on unchanged if this party aborts in turn).
    """
    best: tuple[float, int, str, str | None] | None = None
    for j, link in links.items():
        if link.abort_notice is not None:
            msg, origin = _notice_text(link.peer, link.abort_notice, j)
            root = _reason_text(link.abort_notice.get("reason", "no reason given"))
        elif link.failed is not None:
            msg, origin, root = link.failed, j, None
        else:
            continue
        if best is None or link.ended_at < best[0]:
            best = (link.ended_at, origin if origin is not None else j, msg, root)
    return None if best is None else best[1:]


def _close_all(links: Sequence[_PeerLink], linger: float, **kw) -> None:
    for link in links:
        link.start_close(linger, **kw)
    deadline = time.monotonic() + linger + 1.0
    for link in links:
        link.finish_close(deadline)


# ---------------------------------------------------------------------------
# The transport
# ---------------------------------------------------------------------------


class TLSTransport:
    """Point-to-point channels of one computing server to the two others, over TLS 1.3.

    Use :meth:`connect` to build one. Implements the ``Transport`` protocol of
    :mod:`fedsyn.engines.rep3.transport`: :meth:`send` queues an array and
    returns at once; :meth:`recv` returns the next array from a peer in the
    order sent, or raises :class:`ProtocolError` naming the server that failed.
    A server that fails calls :meth:`abort` (or leaves a ``with`` block by an
    exception) so that its peers stop at once and know why; a server that
    finished calls :meth:`close`.

    Attributes
    ----------
    index : int
        This server's index (0, 1 or 2).
    bytes_sent : int
        Array payload bytes queued for sending (as the in-process transport counts).
    wire_bytes_sent : int
        Frame bytes including headers (TLS record overhead and heartbeats not counted).
    messages_sent : int
        Number of frames queued.
    max_frame_bytes : int
        Largest array frame accepted from a peer.
    failed_peer : int or None
        The server a raised :class:`ProtocolError` blamed (the origin of the
        failure); :meth:`abort` passes it on to the peers.
    """

    def __init__(
        self,
        index: int,
        socks: Mapping[int, tuple[ssl.SSLSocket, dict]],
        *,
        timeout: float,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        dead_after: float | None = DEFAULT_DEAD_AFTER,
        watch: "ReleaseLink | None" = None,
    ) -> None:
        self.index = index
        self.timeout = float(timeout)
        self._watch = watch
        self.max_frame_bytes = int(max_frame_bytes)
        self.bytes_sent = 0
        self.wire_bytes_sent = 0
        self.messages_sent = 0
        self.bytes_received = 0
        self.failed_peer: int | None = None
        self._last_error: ProtocolError | None = None
        self._root_reason = ""
        self._closed = False
        self._cond = threading.Condition()
        self._links: dict[int, _PeerLink] = {
            j: _PeerLink(
                sock, f"server {j}", cond=self._cond, max_frame=self.max_frame_bytes, heartbeat=heartbeat,
                dead_after=_dead_after(dead_after, hello),
            )
            for j, (sock, hello) in socks.items()
        }
        for link in self._links.values():
            link.start()

    @property
    def peers(self) -> tuple[int, ...]:
        return tuple(sorted(self._links))

    def send(self, to: int, array: np.ndarray) -> None:
        """Queue ``array`` (copied) for server ``to``; never waits for the peer.

        Raises
        ------
        ProtocolError
            A peer already aborted or failed (named), or the link to ``to`` is closed.
        """
        link = self._link(to)
        with self._cond:
            failure = _first_failure(self._links)
        failure = failure or self._watched_failure()
        if failure is not None:
            self._raise(*failure)
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
            At once when any peer aborted (naming it, its reason and the server
            where the failure started), vanished without saying goodbye, sent
            an invalid frame, went silent beyond its heartbeat allowance, or
            when this link's I/O thread failed; when ``frm`` closed its
            connection before sending the message; or after ``timeout``
            seconds without a message.
        """
        link = self._link(frm)
        wait = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + wait
        grace: float | None = None
        with self._cond:
            while True:
                failure = _first_failure(self._links) or self._watched_failure()
                if failure is not None:
                    self._raise(*failure)
                if link.inbox:
                    item = link.inbox.popleft()
                    break
                now = time.monotonic()
                if link.eof or link.bye:
                    # frm said goodbye but we still expect a message: it stopped early.
                    # If another peer vanished at the same time, that is the likelier cause.
                    grace = now + _BLAME_GRACE if grace is None else grace
                    if now >= grace:
                        self.failed_peer = frm
                        raise ProtocolError(
                            f"server {self.index}: server {frm} closed the connection before sending "
                            "the expected message"
                        )
                    self._cond.wait(grace - now)
                    continue
                if now >= deadline:
                    self.failed_peer = frm
                    raise ProtocolError(
                        f"server {self.index}: no message from server {frm} within {wait:g} s "
                        "(is it running and reachable?)"
                    )
                self._cond.wait(min(deadline - now, _WATCH_POLL) if self._watch is not None else deadline - now)
        if isinstance(item, np.ndarray):
            self.bytes_received += item.nbytes
            return item
        self.failed_peer = frm
        raise ProtocolError(f"server {self.index}: unexpected control message from server {frm}")

    def check(self) -> None:
        """Raise at once what :meth:`recv` would raise if a peer (or the watched release link) failed.

        For a server that waits on something else than a message (e.g. an
        MP-SPDZ party binary) and polls its peers: returns when every link is
        fine or ended with a goodbye.

        Raises
        ------
        ProtocolError
            Naming the server where the failure started, as :meth:`recv`.
        """
        if self._closed:
            return
        with self._cond:
            failure = _first_failure(self._links)
        failure = failure or self._watched_failure()
        if failure is not None:
            self._raise(*failure)

    def _watched_failure(self) -> tuple[int, str, str | None] | None:
        if self._watch is None:
            return None
        failure = self._watch.failure()
        if failure is None:
            return None
        origin, message = failure
        return (origin if origin is not None and 0 <= origin <= 2 else self.index), message, None

    def _raise(self, origin: int, message: str, root: str | None = None) -> None:
        self.failed_peer = origin
        exc = ProtocolError(f"server {self.index}: {message}")
        self._last_error, self._root_reason = exc, root if root is not None else str(exc)
        raise exc

    def abort(self, reason: str | BaseException, *, origin: int | None = None) -> None:
        """Tell both peers that this server aborts, and why; then close.

        Queued messages are dropped; the abort notice goes out right after the
        frame in flight. The peers' next or pending :meth:`recv` raises
        :class:`ProtocolError` naming this server and ``reason``.

        Parameters
        ----------
        reason : str or BaseException
            Why: a message, or the exception that stopped this server (its
            message; with its type unless it is a fedsyn error). It must not
            contain data or shares. Truncated to 2,000 characters.
        origin : int or None, default None
            The server where the failure started; default :attr:`failed_peer`
            when a peer was blamed, else this server.
        """
        if self._closed:
            return
        self._closed = True
        origin = origin if origin is not None else (self.failed_peer if self.failed_peer is not None else self.index)
        if reason is not None and reason is self._last_error:
            reason = self._root_reason  # pass the root cause on, not a chain of reports
        elif isinstance(reason, BaseException):
            reason = _exception_text(reason)
        notice = _json_frame({"abort": {"party": self.index, "origin": int(origin), "reason": _reason_text(reason)}})
        logger.info("server %d: aborting, notifying servers %s", self.index, sorted(self._links))
        _close_all(list(self._links.values()), _ABORT_LINGER, final=notice, drop=True)

    def close(self) -> None:
        """Flush pending sends, say goodbye and close both links (waits at most a few seconds)."""
        if self._closed:
            return
        self._closed = True
        _close_all(list(self._links.values()), _CLOSE_LINGER, final=_json_frame({"bye": True}))

    def _link(self, j: int) -> _PeerLink:
        if self._closed:
            raise ProtocolError(f"server {self.index}: transport is closed")
        try:
            return self._links[j]
        except KeyError:
            raise ProtocolError(f"server {self.index} has no link to party {j}") from None

    def __enter__(self) -> "TLSTransport":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Close; leaving by an exception aborts with that exception as the reason."""
        if exc is not None:
            self.abort(exc)
        else:
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
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        dead_after: float | None = DEFAULT_DEAD_AFTER,
        watch: "ReleaseLink | None" = None,
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
        max_frame_bytes : int, default DEFAULT_MAX_FRAME_BYTES (1 GiB)
            Largest array frame accepted from a peer; see
            :func:`protocol1_frame_limit`.
        handshake_timeout : float, default 10
            Seconds one connection may take for its TLS handshake and hello;
            accepted connections are handshaken concurrently.
        heartbeat : float or None, default 1
            Seconds of idleness after which the I/O thread sends a heartbeat
            (``None``: never).
        dead_after : float or None, default 10
            A peer that announced heartbeats and sent nothing for this many
            seconds is declared gone (``None``: only ``timeout`` applies).
        watch : ReleaseLink or None, default None
            This server's link to the release server: when it fails (the
            release server forwards another server's abort, or vanishes),
            connecting and every later :meth:`recv` stop at once with its
            reason -- e.g. while waiting for a server that already gave up on
            a refused bundle.

        Raises
        ------
        ProtocolError
            A peer did not connect in time, presented a certificate for another
            role, or used another session tag; or ``watch`` failed.
        """
        if index not in (0, 1, 2) or len(addresses) != 3:
            raise ConfigError("A rep3 deployment has exactly three servers, indices 0, 1, 2.")
        deadline = time.monotonic() + connect_timeout
        cond = threading.Condition()
        links: dict[int, tuple[ssl.SSLSocket, dict]] = {}
        errors: list[BaseException] = []
        higher = [j for j in range(3) if j > index]
        acceptor: _Acceptor | None = None
        me = server_name(index)

        def on_peer(j: int, sock: ssl.SSLSocket, hello: dict) -> bool:
            with cond:
                if j not in higher or j in links or acceptor is None or acceptor.stopped:
                    return False
                links[j] = (sock, hello)
                cond.notify_all()
                return True

        def on_error(exc: BaseException) -> None:
            with cond:
                errors.append(ProtocolError(f"server {index}: {exc}"))
                cond.notify_all()

        if higher:
            host, port = addresses[index]
            acceptor = _Acceptor(
                _listen(bind_host or host, port), server_context(tls), me=me, session=session,
                expected={server_name(j): j for j in higher}, handshake_timeout=handshake_timeout,
                heartbeat=heartbeat, on_peer=on_peer, on_error=on_error, label=f"server {index}",
            )
            acceptor.start()
        def stop_if() -> str | None:
            failure = watch.failure() if watch is not None else None
            return None if failure is None else failure[1]

        try:
            cctx = client_context(tls)
            for j in range(index):
                got = _connect_peer(
                    cctx, addresses[j], server_name(j), me, session, deadline, f"server {j}",
                    handshake_timeout=handshake_timeout, heartbeat=heartbeat, stop_if=stop_if,
                )
                with cond:
                    links[j] = got
            with cond:
                while not errors and not all(j in links for j in higher):
                    left = deadline - time.monotonic()
                    why = stop_if()
                    if why is not None:
                        raise ProtocolError(f"server {index}: stopped waiting for the other servers: {why}")
                    if left <= 0:
                        break
                    cond.wait(min(left, _WATCH_POLL) if watch is not None else left)
                if acceptor is not None:
                    acceptor.stopped = True
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
            with cond:
                if acceptor is not None:
                    acceptor.stopped = True
                for s, _ in links.values():
                    s.close()
            raise
        finally:
            if acceptor is not None:
                acceptor.stop()
        logger.info("server %d: TLS links to servers %s established", index, sorted(links))
        return cls(index, links, timeout=timeout, max_frame_bytes=max_frame_bytes, heartbeat=heartbeat,
                   dead_after=dead_after, watch=watch)


def _dead_after(dead_after: float | None, hello: dict) -> float | None:
    """Silence allowance for a peer: only if it announced heartbeats well within it."""
    hb = hello.get("heartbeat") if isinstance(hello, dict) else None
    if dead_after is None or not isinstance(hb, (int, float)) or isinstance(hb, bool) or hb <= 0:
        return None
    return max(float(dead_after), 3.0 * float(hb))


def _listen(host: str, port: int) -> socket.socket:
    try:
        lst = socket.create_server((host, port), reuse_port=False, backlog=64)
    except OSError as exc:
        raise ProtocolError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    lst.settimeout(_RETRY_PAUSE)
    return lst


def _hello(
    sock: ssl.SSLSocket, me: str, session: str, deadline: float, what: str, expect: str,
    heartbeat: float | None = None,
) -> dict:
    _send_blocking(
        sock, _json_frame({"fedsyn": 1, "role": me, "session": session, "heartbeat": heartbeat}), deadline, what
    )
    msg = _recv_control_blocking(sock, deadline, what)
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
    ctx: ssl.SSLContext, address: tuple[str, int], expect: str, me: str,
    session: str, deadline: float, what: str, *, handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    heartbeat: float | None = None, stop_if: Callable[[], str | None] | None = None,
) -> tuple[ssl.SSLSocket, dict]:
    """Connect (retrying refused or timed-out attempts until ``deadline``), handshake, hello.

    ``stop_if()`` is asked before every attempt; a message from it ends the wait.
    """
    host, port = address
    last: BaseException | None = None
    label = me.replace("fedsyn-", "").replace("-", " ")  # "fedsyn-server-2" -> "server 2", as in other messages
    while time.monotonic() < deadline:
        why = stop_if() if stop_if is not None else None
        if why is not None:
            raise ProtocolError(f"{label}: stopped connecting to {what}: {why}")
        raw = None
        left = deadline - time.monotonic()
        try:
            raw = socket.create_connection((host, port), timeout=max(min(handshake_timeout, left), 0.05))
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = ctx.wrap_socket(raw, server_hostname=expect)
        except ssl.SSLCertVerificationError as exc:
            if raw is not None:
                raw.close()
            raise ProtocolError(
                f"{label}: the certificate of {what} at {host}:{port} was refused "
                f"({exc.verify_message}); is it signed by this deployment's CA and named {expect!r}?"
            ) from exc
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError) as exc:
            # The listener dropped the connection during the handshake (e.g. too many
            # pending handshakes on its port): retry like a refused connection.
            if raw is not None:
                raw.close()
            last = exc
            time.sleep(min(_RETRY_PAUSE, max(deadline - time.monotonic(), 0)))
            continue
        except ssl.SSLError as exc:
            if raw is not None:
                raw.close()
            raise ProtocolError(f"{label}: TLS handshake with {what} at {host}:{port} failed: {exc}") from exc
        except OSError as exc:  # refused, reset, unreachable, or the handshake timed out: retry
            if raw is not None:
                raw.close()
            last = exc
            time.sleep(min(_RETRY_PAUSE, max(deadline - time.monotonic(), 0)))
            continue
        try:
            hello = _hello(sock, me, session, min(deadline, time.monotonic() + handshake_timeout), what, expect,
                           heartbeat)
        except ProtocolError:
            sock.close()
            raise
        return sock, hello
    raise ProtocolError(
        f"{label}: could not connect to {what} at {host}:{port} before the deadline "
        f"({getattr(last, 'strerror', None) or last})"
    )


class _Acceptor(threading.Thread):
    """Accept loop of a listening port: every connection is handshaken in its own thread.

    A connection must complete its TLS handshake and hello within
    ``handshake_timeout`` seconds; at most 32 handshakes run at once (a new
    connection beyond that evicts the oldest pending one, whose handshake
    then fails), so idle or slow connections cannot delay the real peers,
    which complete theirs in milliseconds. A certificate for no expected role is refused with a warning;
    a hello from an expected role that fails (other session, other role) is
    reported through ``on_error``. Authenticated peers go to
    ``on_peer(index, socket, hello)``, which returns False to refuse them.
    """

    def __init__(
        self, listener: socket.socket, ctx: ssl.SSLContext, *, me: str, session: str, expected: dict[str, int],
        handshake_timeout: float, heartbeat: float | None, on_peer: Callable[[int, ssl.SSLSocket, dict], bool],
        on_error: Callable[[BaseException], None], label: str,
    ) -> None:
        super().__init__(name=f"fedsyn-accept-{label}", daemon=True)
        self.listener = listener
        self.ctx = ctx
        self.me = me
        self.session = session
        self.expected = expected
        self.handshake_timeout = float(handshake_timeout)
        self.heartbeat = heartbeat
        self.on_peer = on_peer
        self.on_error = on_error
        self.label = label
        self.stopped = False
        self._stop_event = threading.Event()
        self._pending: collections.deque = collections.deque()  # raw sockets in handshake, oldest first
        self._lock = threading.Lock()

    def stop(self) -> None:
        self.stopped = True
        self._stop_event.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept on Linux
        except OSError:
            pass
        try:
            self.listener.close()
        except OSError:
            pass
        if self.is_alive() and threading.current_thread() is not self:
            self.join(1.0)

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                raw, addr = self.listener.accept()
            except (socket.timeout, BlockingIOError):
                continue
            except OSError:
                return  # listener closed
            with self._lock:
                oldest = self._pending.popleft() if len(self._pending) >= _MAX_PENDING_HANDSHAKES else None
                self._pending.append(raw)
            if oldest is not None:
                logger.warning("%s: too many pending handshakes; dropped the oldest", self.label)
                try:
                    oldest.shutdown(socket.SHUT_RDWR)  # wakes its handshake thread, which fails
                except OSError:
                    pass
            threading.Thread(target=self._handshake, args=(raw, addr), daemon=True,
                             name=f"fedsyn-handshake-{self.label}").start()

    def _handshake(self, raw: socket.socket, addr) -> None:
        try:
            deadline = time.monotonic() + self.handshake_timeout
            try:
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                raw.settimeout(self.handshake_timeout)
                sock = self.ctx.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                logger.warning("%s: refused a TLS connection from %s: %s", self.label, addr[0], exc)
                raw.close()
                return
            names = _peer_names(sock)
            match = [self.expected[n] for n in names if n in self.expected]
            if len(match) != 1:
                logger.warning("%s: refused a peer with certificate names %s", self.label, sorted(names))
                sock.close()
                return
            j = match[0]
            what = f"server {j}"
            peer_name = next(n for n in names if n in self.expected)
            try:
                hello = _hello(sock, self.me, self.session, deadline, what, peer_name, self.heartbeat)
            except ProtocolError as exc:
                sock.close()
                if not self.stopped:
                    self.on_error(exc)
                return
            if self.stopped or not self.on_peer(j, sock, hello):
                logger.warning("%s: refused a second or late connection from %s", self.label, what)
                sock.close()
        except BaseException as exc:  # noqa: BLE001 - never let a handshake thread die silently
            logger.warning("%s: handshake with %s failed: %s: %s", self.label, addr[0], type(exc).__name__, exc)
            try:
                raw.close()
            except OSError:
                pass
        finally:
            with self._lock:
                try:
                    self._pending.remove(raw)
                except ValueError:
                    pass


# ---------------------------------------------------------------------------
# Link to the release server
# ---------------------------------------------------------------------------


class ReleaseLink:
    """A computing server's link to the release server.

    Open it when the server starts (:meth:`connect`): the release server then
    knows at once when this server aborts (:meth:`abort`), dies or is cut off
    (no goodbye, no heartbeat), and stops waiting. At the end,
    :meth:`deliver` sends the output shares and waits for the receipt.

    Attributes
    ----------
    index : int
        This server.
    """

    def __init__(self, index: int, sock: ssl.SSLSocket, hello: dict, *, heartbeat: float | None,
                 dead_after: float | None) -> None:
        self.index = index
        self._cond = threading.Condition()
        self._link = _PeerLink(sock, "the release server", cond=self._cond, max_frame=0, heartbeat=heartbeat,
                               dead_after=_dead_after(dead_after, hello))
        self._closed = False
        self._link.start()

    @classmethod
    def connect(
        cls,
        index: int,
        address: tuple[str, int],
        tls: TLSFiles,
        *,
        session: str = "",
        timeout: float = 60.0,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
        dead_after: float | None = DEFAULT_DEAD_AFTER,
    ) -> "ReleaseLink":
        """Connect server ``index`` to the release server (retrying until ``timeout`` seconds).

        The release server must present a ``fedsyn-release`` certificate of the
        deployment CA.

        Raises
        ------
        ProtocolError
            The release server was not reachable within ``timeout`` seconds,
            or its certificate or session was refused.
        """
        deadline = time.monotonic() + timeout
        sock, hello = _connect_peer(
            client_context(tls), address, RELEASE_NAME, server_name(index), session, deadline, "the release server",
            handshake_timeout=handshake_timeout, heartbeat=heartbeat,
        )
        return cls(index, sock, hello, heartbeat=heartbeat, dead_after=dead_after)

    def failure(self) -> tuple[int | None, str] | None:
        """``(origin, message)`` if the link to the release server ended abnormally, else None.

        ``origin`` is the computing server where the failure started when the
        release server forwarded another server's abort, else None.
        """
        with self._cond:
            link = self._link
            if link.abort_notice is not None:
                notice = link.abort_notice
                origin = notice.get("origin")
                origin = origin if isinstance(origin, int) and not isinstance(origin, bool) and 0 <= origin <= 2 else None
                return origin, f"the release server stopped the run: {_reason_text(notice.get('reason', ''))}"
            if link.failed is not None:
                return None, link.failed
        return None

    @property
    def failed(self) -> str | None:
        """Why the link to the release server ended abnormally (None while it is fine)."""
        failure = self.failure()
        return None if failure is None else failure[1]

    def deliver(self, meta: dict, arrays: Mapping[str, np.ndarray], *, timeout: float = 300.0) -> int:
        """Send this server's output shares and public metadata; wait for the receipt; close.

        The header announces every array's dtype and shape; the release server
        accepts exactly those. Returns the bytes sent.

        Raises
        ------
        ProtocolError
            The release server refused the shares, vanished, or sent no receipt
            within ``timeout`` seconds.
        """
        names = list(arrays)
        frames = [_array_frame(arrays[n]) for n in names]
        shapes = [list(struct.unpack(f"<{f[0][2]}Q", f[0][_PREFIX.size :])) for f in frames]
        header = {"meta": meta, "arrays": names, "shapes": shapes, "dtypes": [DTYPES[f[0][1]].str for f in frames]}
        sent = 0
        for frame in [_json_frame(header), *frames]:
            self._link.enqueue(frame)
            sent += len(frame[0]) + len(frame[1])
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._link.inbox:
                failure = _first_failure({-1: self._link})
                if failure is not None:
                    raise ProtocolError(f"server {self.index}: delivering the output shares failed: {failure[1]}")
                if self._link.eof:
                    raise ProtocolError(f"server {self.index}: the release server closed the connection "
                                        "before confirming receipt of the output shares")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProtocolError(f"server {self.index}: no receipt from the release server within "
                                        f"{timeout:g} s")
                self._cond.wait(left)
            ack = self._link.inbox.popleft()
        if not (isinstance(ack, dict) and ack.get("ok") is True):
            why = ack.get("error") if isinstance(ack, dict) else None
            raise ProtocolError(f"server {self.index}: the release server refused the output shares: {why or ack}")
        self.close()
        return sent

    def abort(self, reason: str | BaseException, *, origin: int | None = None) -> None:
        """Tell the release server that this server aborts and why, then close.

        ``reason`` as for :meth:`TLSTransport.abort`; ``origin``: the server
        where the failure started (default this one), e.g. the transport's
        :attr:`TLSTransport.failed_peer`.
        """
        if self._closed:
            return
        self._closed = True
        origin = self.index if origin is None else origin
        if isinstance(reason, BaseException):
            reason = _exception_text(reason)
        notice = _json_frame({"abort": {"party": self.index, "origin": int(origin), "reason": _reason_text(reason)}})
        self._link.close(_ABORT_LINGER, final=notice)

    def close(self) -> None:
        """Say goodbye and close."""
        if self._closed:
            return
        self._closed = True
        self._link.close(_CLOSE_LINGER, final=_json_frame({"bye": True}))

    def __enter__(self) -> "ReleaseLink":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            self.abort(exc)
        else:
            self.close()


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
    """Connect to the release server, deliver server ``index``'s output shares, wait for the receipt.

    :meth:`ReleaseLink.connect` then :meth:`ReleaseLink.deliver`, both within
    ``timeout`` seconds. Returns the bytes sent.
    """
    deadline = time.monotonic() + timeout
    with ReleaseLink.connect(index, address, tls, session=session, timeout=timeout) as link:
        return link.deliver(meta, arrays, timeout=max(deadline - time.monotonic(), 1.0))


def notify_release_abort(
    index: int,
    address: tuple[str, int],
    tls: TLSFiles,
    reason: str,
    *,
    session: str = "",
    origin: int | None = None,
    timeout: float = 5.0,
) -> bool:
    """Best effort: tell the release server that server ``index`` aborts and why.

    For failures before the server opened its :class:`ReleaseLink` (e.g. a
    refused bundle). Never raises (it runs on an error path): returns whether
    the notice was delivered, and logs a warning otherwise.
    """
    try:
        link = ReleaseLink.connect(index, address, tls, session=session, timeout=timeout,
                                   handshake_timeout=min(timeout, DEFAULT_HANDSHAKE_TIMEOUT))
    except (ProtocolError, ConfigError) as exc:
        logger.warning("server %d: could not tell the release server that it aborts: %s", index, exc)
        return False
    link.abort(reason, origin=origin)
    return True


class ReleaseListener:
    """The release server's end: accepts the three servers' output shares over TLS.

    Servers may connect at start (:meth:`ReleaseLink.connect`) or only to
    deliver (:func:`send_to_release`); handshakes run concurrently. The
    listener stops waiting, naming the server and the reason, as soon as a
    connected server aborts, closes or loses its connection without having
    delivered, or falls silent beyond its heartbeat allowance.

    Parameters
    ----------
    bind : (host, port)
        Address to listen on (port 0 picks a free one; see :attr:`port`).
    tls : TLSFiles
        CA and the release server's ``fedsyn-release`` certificate and key.
    session : str, default ""
        Session tag the servers must present.
    handshake_timeout : float, default 10
        Seconds a connection may take for its TLS handshake and hello.
    max_delivery_bytes : int, default 4 GiB
        Largest total of output shares one server may announce; every array
        must then have exactly the announced dtype and shape.
    dead_after : float or None, default 10
        Silence allowance for a connected server that sends heartbeats.
    inform_for : float, default 15
        After a server failed: seconds to keep accepting the servers not yet
        connected, to tell them the run is over (see :meth:`collect`).
    """

    def __init__(
        self,
        bind: tuple[str, int],
        tls: TLSFiles,
        *,
        session: str = "",
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        max_delivery_bytes: int = _RELEASE_MAX_BYTES,
        dead_after: float | None = DEFAULT_DEAD_AFTER,
        inform_for: float = 15.0,
    ) -> None:
        self.inform_for = float(inform_for)
        self._ctx = server_context(tls)
        self._listener = _listen(*bind)
        self.port = self._listener.getsockname()[1]
        self.session = session
        self.handshake_timeout = float(handshake_timeout)
        self.max_delivery_bytes = int(max_delivery_bytes)
        self.dead_after = dead_after

    def _announce(self, link: _PeerLink, head: dict) -> None:
        """I/O thread: check a delivery header and expect exactly the arrays it announces."""
        names, shapes, dtypes = head.get("arrays"), head.get("shapes"), head.get("dtypes")
        if not (isinstance(names, list) and isinstance(shapes, list) and isinstance(dtypes, list)
                and len(names) == len(shapes) == len(dtypes) <= _RELEASE_MAX_ARRAYS):
            raise ProtocolError("a malformed output header")
        total = 0
        expected = []
        for shape, dt in zip(shapes, dtypes):
            try:
                code = _CODE[np.dtype(dt)]
                shape = tuple(int(s) for s in shape)
            except (TypeError, ValueError, KeyError):
                raise ProtocolError("a malformed output header") from None
            if len(shape) > _MAX_NDIM or any(s < 0 for s in shape):
                raise ProtocolError("a malformed output header")
            total += math.prod(shape) * DTYPES[code].itemsize
            expected.append((code, shape))
        if total > self.max_delivery_bytes:
            raise ProtocolError(f"output shares of {total} bytes announced, more than the {self.max_delivery_bytes} "
                                "this release server accepts")
        link.max_frame = max((math.prod(s) * DTYPES[c].itemsize for c, s in expected), default=0)
        link.expected.extend(expected)

    def collect(self, *, timeout: float = 600.0, abort: threading.Event | None = None) -> dict[int, tuple[dict, dict[str, np.ndarray]]]:
        """Wait until all three servers delivered; returns ``{i: (meta, arrays)}``.

        Raises
        ------
        ProtocolError
            When a connected server aborts (naming it, its reason and the
            server where the failure started), or its connection ends or falls
            silent before it delivered: after passing that on to the other
            servers (those not yet connected are told as they connect, for at
            most ``inform_for`` seconds); or when not all three servers
            delivered within ``timeout`` seconds (or ``abort`` was set).
        """
        deadline = time.monotonic() + timeout
        cond = threading.Condition()
        links: dict[int, _PeerLink] = {}
        errors: list[BaseException] = []
        out: dict[int, tuple[dict, dict[str, np.ndarray]]] = {}
        pending: dict[int, tuple[dict, list[str], dict[str, np.ndarray]]] = {}

        stopped: dict = {}  # once the run failed: the notice every late server gets

        def on_peer(j: int, sock: ssl.SSLSocket, hello: dict) -> bool:
            with cond:
                if j in links or acceptor.stopped:
                    return False
                link = _PeerLink(sock, f"server {j}", cond=cond, max_frame=0, max_control=_RELEASE_HEADER_MAX,
                                 heartbeat=DEFAULT_HEARTBEAT, dead_after=_dead_after(self.dead_after, hello),
                                 announced_only=True, on_control=self._announce)
                links[j] = link
                link.start()
                if stopped:
                    link.start_close(2.0, final=stopped["notice"])
                cond.notify_all()
            logger.info("release server: server %d connected", j)
            return True

        def on_error(exc: BaseException) -> None:
            with cond:
                errors.append(ProtocolError(f"release server: {exc}"))
                cond.notify_all()

        acceptor = _Acceptor(
            self._listener, self._ctx, me=RELEASE_NAME, session=self.session,
            expected={server_name(j): j for j in range(3)}, handshake_timeout=self.handshake_timeout,
            heartbeat=DEFAULT_HEARTBEAT, on_peer=on_peer, on_error=on_error, label="release server",
        )
        acceptor.start()
        try:
            with cond:
                while len(out) < 3:
                    if errors:
                        raise errors[0]
                    for j, link in sorted(links.items()):
                        if j in out:
                            continue
                        self._take(j, link, pending, out)
                    failure = _first_failure({j: link for j, link in links.items() if j not in out})
                    if failure is not None:
                        origin, msg, _ = failure
                        self._inform(cond, links, out, stopped, origin, msg, abort)
                        raise ProtocolError(f"release server: {msg}; no output shares from it")
                    for j, link in links.items():
                        if j not in out and link.eof:
                            msg = f"server {j} closed the connection without delivering its output shares"
                            self._inform(cond, links, out, stopped, j, msg, abort)
                            raise ProtocolError(f"release server: {msg}")
                    if len(out) == 3:
                        break
                    now = time.monotonic()
                    if now > deadline or (abort is not None and abort.is_set()):
                        missing = sorted(set(range(3)) - set(out))
                        raise ProtocolError(
                            f"release server: no output shares from server(s) {', '.join(map(str, missing))} "
                            f"within {timeout:g} s" if now > deadline else
                            f"release server: stopped waiting for the output shares of server(s) "
                            f"{', '.join(map(str, missing))} (the run was aborted)"
                        )
                    cond.wait(min(deadline - now, 0.2) if abort is not None else deadline - now)
        finally:
            acceptor.stop()
            # Synchronously (at most a few seconds): forwarded abort notices and receipts
            # must leave before the process exits.
            _close_all(list(links.values()), 2.0)
        return out

    def _inform(self, cond: threading.Condition, links: dict, out: Mapping, stopped: dict, origin: int,
                message: str, abort: threading.Event | None) -> None:
        """Tell every other server that the run is over, and why, before giving up. Holds ``cond``.

        Servers already connected get the notice at once; servers still
        starting (e.g. while one refused its bundle) get it as they connect,
        for up to ``inform_for`` seconds, so that they stop instead of waiting
        for their peers until their connect timeout.
        """
        notice = _json_frame({"abort": {"party": "release", "origin": int(origin), "reason": _reason_text(message)}})
        stopped["notice"] = notice
        for j, link in links.items():
            if j not in out and not link.ended and not link.eof:
                link.start_close(2.0, final=notice)
        logger.info("release server: the run failed (%s); telling the other servers", message)
        if abort is not None:
            return  # local orchestration stops the servers itself
        deadline = time.monotonic() + self.inform_for
        while time.monotonic() < deadline and not all(j in links for j in range(3) if j not in out and j != origin):
            cond.wait(min(deadline - time.monotonic(), 0.2))

    def _take(self, j: int, link: _PeerLink, pending: dict, out: dict) -> None:
        """Consume what server ``j`` sent (header, arrays); on completion acknowledge. Holds the cond."""
        while link.inbox:
            item = link.inbox.popleft()
            if j not in pending:
                if not isinstance(item, dict) or not isinstance(item.get("arrays"), list):
                    raise ProtocolError(f"release server: server {j} sent a malformed output header")
                pending[j] = (item.get("meta") or {}, [str(n) for n in item["arrays"]], {})
            else:
                meta, names, arrays = pending[j]
                if not isinstance(item, np.ndarray):
                    raise ProtocolError(f"release server: server {j} sent a control message among its arrays")
                arrays[names[len(arrays)]] = item
            meta, names, arrays = pending[j]
            if len(arrays) == len(names):
                out[j] = (meta, arrays)
                del pending[j]
                try:
                    link.enqueue(_json_frame({"ok": True}))
                except ProtocolError:
                    pass  # the server will not see the receipt; its shares arrived all the same
                link.start_close(2.0)
                logger.info("release server: received the output shares of server %d", j)
                return

    def close(self) -> None:
        try:
            self._listener.close()
        except OSError:
            pass
