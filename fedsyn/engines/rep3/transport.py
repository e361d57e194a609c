"""Message transport between the three computing servers.

The MPC primitives of :mod:`fedsyn.engines.rep3` only need point-to-point,
FIFO, reliable delivery of ``numpy`` arrays between the three parties. This
module defines that interface (:class:`Transport`) and an in-process
implementation over :class:`queue.Queue` used by tests and by single-machine
runs; the TCP+TLS implementation lives in :mod:`fedsyn.engines.rep3.net`.

Security: a transport carries only messages that the protocols already mask
(see each primitive's docstring); the in-process network offers no secrecy
between the threads of one process and is meant for testing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Protocol, TypeVar, runtime_checkable

import numpy as np

from ...errors import ProtocolError

__all__ = ["Transport", "InProcessNetwork", "InProcessTransport", "run_parties", "N_PARTIES"]

logger = logging.getLogger(__name__)

#: Number of computing parties of the replicated scheme.
N_PARTIES = 3

T = TypeVar("T")


@runtime_checkable
class Transport(Protocol):
    """Point-to-point channels of one party to the two others.

    Attributes
    ----------
    index : int
        This party's index (0, 1 or 2).
    bytes_sent : int
        Payload bytes sent so far (array data only).
    messages_sent : int
        Number of :meth:`send` calls so far.
    """

    index: int
    bytes_sent: int
    messages_sent: int

    def send(self, to: int, array: np.ndarray) -> None:
        """Send ``array`` to party ``to``. Never blocks on the peer reading."""

    def recv(self, frm: int, *, timeout: float | None = None) -> np.ndarray:
        """Receive the next array from ``frm`` (FIFO per ordered pair).

        Raises
        ------
        fedsyn.errors.ProtocolError
            On timeout, or when the peer (or the network) was closed.
        """

    def close(self) -> None:
        """Release the channels; peers waiting on this party fail fast."""


class _Closed:
    """Sentinel put in a queue when its sender (or the network) closed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class InProcessNetwork:
    """Three parties' channels inside one process, over :class:`queue.Queue`.

    Parameters
    ----------
    timeout : float, default 60.0
        Default seconds a :meth:`InProcessTransport.recv` waits before raising
        :class:`~fedsyn.errors.ProtocolError`.

    Notes
    -----
    Arrays are copied on :meth:`~InProcessTransport.send`, so a sender may
    reuse its buffer. Queues are unbounded: sends never block.
    """

    def __init__(self, timeout: float = 60.0) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}.")
        self.timeout = float(timeout)
        self._queues: dict[tuple[int, int], queue.Queue] = {
            (i, j): queue.Queue() for i in range(N_PARTIES) for j in range(N_PARTIES) if i != j
        }
        self._closed = threading.Event()
        self._transports: dict[int, InProcessTransport] = {}

    def transport(self, i: int) -> "InProcessTransport":
        """The transport of party ``i`` (one object per index)."""
        if i not in range(N_PARTIES):
            raise ValueError(f"Party index must be 0, 1 or 2, got {i}.")
        if i not in self._transports:
            self._transports[i] = InProcessTransport(self, i)
        return self._transports[i]

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self, reason: str = "network closed") -> None:
        """Abort every channel: all pending and future ``recv`` calls raise."""
        if self._closed.is_set():
            return
        self._closed.set()
        for q in self._queues.values():
            q.put(_Closed(reason))


class InProcessTransport:
    """One party's end of an :class:`InProcessNetwork` (implements :class:`Transport`)."""

    def __init__(self, network: InProcessNetwork, index: int) -> None:
        self.network = network
        self.index = index
        self.bytes_sent = 0
        self.messages_sent = 0
        self._closed = False

    def _check_peer(self, peer: int) -> None:
        if peer == self.index or peer not in range(N_PARTIES):
            raise ProtocolError(f"Party {self.index} cannot talk to party {peer}.")

    def send(self, to: int, array: np.ndarray) -> None:
        self._check_peer(to)
        if self._closed or self.network.closed:
            raise ProtocolError(f"Party {self.index}: cannot send to party {to}, transport closed.")
        arr = np.array(array, copy=True)
        self.network._queues[(self.index, to)].put(arr)
        self.bytes_sent += arr.nbytes
        self.messages_sent += 1

    def recv(self, frm: int, *, timeout: float | None = None) -> np.ndarray:
        self._check_peer(frm)
        wait = self.network.timeout if timeout is None else timeout
        q = self.network._queues[(frm, self.index)]
        start = time.monotonic()
        try:
            item = q.get(timeout=wait)
        except queue.Empty:
            raise ProtocolError(
                f"Party {self.index}: no message from party {frm} within "
                f"{time.monotonic() - start:.1f} s."
            ) from None
        if isinstance(item, _Closed):
            q.put(item)  # later receivers fail too
            raise ProtocolError(f"Party {self.index}: channel from party {frm} closed ({item.reason}).")
        return item

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for j in range(N_PARTIES):
            if j != self.index:
                self.network._queues[(self.index, j)].put(_Closed(f"party {self.index} closed"))


def run_parties(
    fn: Callable[[int, Transport], T],
    *,
    network: InProcessNetwork | None = None,
    timeout: float = 60.0,
) -> list[T]:
    """Run ``fn(i, transport_i)`` for the three parties in three threads.

    Parameters
    ----------
    fn : callable
        The party program; called as ``fn(party_index, transport)``.
    network : InProcessNetwork or None, default None
        The network to use; a fresh one with ``timeout`` when None.
    timeout : float, default 60.0
        Receive timeout of a fresh network, in seconds.

    Returns
    -------
    list
        ``[fn(0, t0), fn(1, t1), fn(2, t2)]``.

    Raises
    ------
    Exception
        The first exception raised by any party. The network is closed at the
        first failure so that the other parties fail fast instead of hanging.
    """
    net = network if network is not None else InProcessNetwork(timeout=timeout)
    results: list = [None] * N_PARTIES
    errors: list[tuple[int, BaseException]] = []
    lock = threading.Lock()

    def body(i: int) -> None:
        try:
            results[i] = fn(i, net.transport(i))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            with lock:
                errors.append((i, exc))
            net.close(f"party {i} failed: {type(exc).__name__}")

    threads = [threading.Thread(target=body, args=(i,), name=f"rep3-party-{i}", daemon=True) for i in range(N_PARTIES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        i, exc = errors[0]
        logger.debug("party %d failed first: %s", i, type(exc).__name__)
        raise exc
    return results
