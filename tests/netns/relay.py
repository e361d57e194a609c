"""A user-space TCP relay that emulates wide-area links: latency, bandwidth, cuts.

Run it (in the bridge network namespace) as ``python relay.py CONFIG.json``. The
config names the ports to listen on and where each forwards to, the role of
every address, and per link (an unordered pair of roles) the emulated
round-trip time, bandwidth and state::

    {"listen": [{"host": "10.77.0.1", "port": 47000, "target": ["10.77.0.10", 47000]}, ...],
     "roles": {"10.77.0.10": "0", "10.77.0.11": "1", ...},
     "links": {"0-1": {"rtt_ms": 10, "mbit": 1000, "state": "up"}, ...},
     "default": {"rtt_ms": 0, "mbit": null, "state": "up"}}

A connection from address ``A`` to a listener forwarding to ``B`` uses link
``role(A)-role(B)``. Each direction models a link of that bandwidth (a chunk
leaves after the previous one and takes ``size / bandwidth``) followed by a
propagation delay of ``rtt / 2``; at most about two bandwidth-delay products
(at least 4 MiB) are buffered per direction, beyond that the relay stops
reading so TCP flow control reaches the sender.

The relay re-reads the config when the file changes, so a test can change a
link while a run is going: ``state`` ``"blackhole"`` stops forwarding without
closing anything (a cut cable: the connections stay open, nothing arrives),
``"reset"`` closes that link's connections at once with a TCP reset. Statistics
(bytes per link and direction) go to ``CONFIG.stats.json`` every second.
"""

from __future__ import annotations

import collections
import json
import os
import socket
import struct
import sys
import threading
import time

CHUNK = 256 << 10
#: Seconds the relay retries a target that refuses a connection it already accepted for it.
TARGET_WAIT = 30.0


class Link:
    def __init__(self, name: str, params: dict) -> None:
        self.name = name
        self.update(params)

    def update(self, params: dict) -> None:
        self.rtt = float(params.get("rtt_ms") or 0.0) / 1000.0
        mbit = params.get("mbit")
        self.rate = None if not mbit else float(mbit) * 1e6 / 8.0  # bytes per second
        self.state = params.get("state", "up")


class Pipe(threading.Thread):
    """One direction of one connection: read, schedule, deliver."""

    def __init__(self, src: socket.socket, dst: socket.socket, link: Link, conn: "Conn", label: str) -> None:
        super().__init__(daemon=True, name=f"relay-{label}")
        self.src, self.dst, self.link, self.conn, self.label = src, dst, link, conn, label
        self.queue: collections.deque = collections.deque()
        self.cond = threading.Condition()
        self.queued = 0
        self.free_at = 0.0
        self.eof = False
        self.bytes = 0

    def limit(self) -> int:
        bdp = (self.link.rate or 125e6) * max(self.link.rtt, 0.001)
        return int(max(4 << 20, 2 * bdp))

    def run(self) -> None:
        writer = threading.Thread(target=self.write, daemon=True, name=f"relay-w-{self.label}")
        writer.start()
        try:
            while not self.conn.closed:
                with self.cond:
                    while (self.queued > self.limit() or self.link.state == "blackhole") and not self.conn.closed:
                        self.cond.wait(0.05)
                if self.conn.closed:
                    break
                try:
                    data = self.src.recv(CHUNK)
                except OSError:
                    data = b""
                now = time.monotonic()
                if self.link.state == "blackhole":
                    # cut while we were reading: the data is lost, as on a cut cable
                    continue
                with self.cond:
                    if not data:
                        self.eof = True
                        self.queue.append((now + self.link.rtt / 2, b""))
                        self.cond.notify_all()
                        break
                    start = max(now, self.free_at)
                    done = start + (len(data) / self.link.rate if self.link.rate else 0.0)
                    self.free_at = done
                    self.queue.append((done + self.link.rtt / 2, data))
                    self.queued += len(data)
                    self.cond.notify_all()
        finally:
            writer.join()

    def write(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.conn.closed:
                    self.cond.wait(0.05)
                if self.conn.closed:
                    return
                due, data = self.queue[0]
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if self.link.state == "blackhole":
                time.sleep(0.02)
                continue
            with self.cond:
                self.queue.popleft()
                self.queued -= len(data)
                self.cond.notify_all()
            if not data:
                try:
                    self.dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                self.conn.half_closed()
                return
            try:
                self.dst.sendall(data)
                self.bytes += len(data)
            except OSError:
                self.conn.close(reset=True)
                return


class Conn:
    def __init__(self, client: socket.socket, server: socket.socket, link: Link) -> None:
        self.client, self.server, self.link = client, server, link
        self.closed = False
        self._halves = 0
        self._lock = threading.Lock()
        self.up = Pipe(client, server, link, self, f"{link.name}-up")
        self.down = Pipe(server, client, link, self, f"{link.name}-down")

    def start(self) -> None:
        self.up.start()
        self.down.start()

    def half_closed(self) -> None:
        with self._lock:
            self._halves += 1
            done = self._halves == 2
        if done:
            self.close()

    def close(self, *, reset: bool = False) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.server):
            try:
                if reset:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            except OSError:
                pass


class Relay:
    def __init__(self, path: str) -> None:
        self.path = path
        self.mtime = 0.0
        self.links: dict[str, Link] = {}
        self.conns: list[Conn] = []
        self.lock = threading.Lock()
        self.config: dict = {}
        self.reload()

    def reload(self) -> None:
        mtime = os.stat(self.path).st_mtime_ns
        if mtime == self.mtime:
            return
        self.mtime = mtime
        with open(self.path, encoding="utf-8") as f:
            self.config = json.load(f)
        with self.lock:
            for name, link in self.links.items():
                link.update(self.params(name))
            for c in self.conns:
                if c.link.state == "reset" and not c.closed:
                    c.close(reset=True)
                for p in (c.up, c.down):
                    with p.cond:
                        p.cond.notify_all()

    def params(self, name: str) -> dict:
        return dict(self.config.get("default", {}), **self.config.get("links", {}).get(name, {}))

    def link(self, a: str, b: str) -> Link:
        name = "-".join(sorted((a, b)))
        with self.lock:
            if name not in self.links:
                self.links[name] = Link(name, self.params(name))
            return self.links[name]

    def serve(self, spec: dict) -> None:
        lst = socket.create_server((spec["host"], spec["port"]), backlog=64)
        target = tuple(spec["target"])
        roles = self.config.get("roles", {})
        while True:
            client, addr = lst.accept()
            link = self.link(roles.get(addr[0], addr[0]), roles.get(target[0], target[0]))
            if link.state != "up":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()  # a cut link refuses new connections too
                continue
            threading.Thread(target=self.forward, args=(client, target, link), daemon=True).start()

    def forward(self, client: socket.socket, target: tuple, link: Link) -> None:
        """Connect to the target and start forwarding.

        The client's connection is already accepted here, so a target that is
        not listening yet (a party that starts a moment later) must not make
        it fail: as a real network would let the client retry, the relay
        retries the target for up to TARGET_WAIT seconds while the client's
        data waits in its socket. Then it resets the client.
        """
        deadline = time.monotonic() + TARGET_WAIT
        while True:
            try:
                server = socket.create_connection(target, timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline or link.state != "up":
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    client.close()
                    return
                time.sleep(0.1)
        server.settimeout(None)
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Conn(client, server, link)
        with self.lock:
            self.conns.append(conn)
        conn.start()

    def run(self) -> None:
        for spec in self.config["listen"]:
            threading.Thread(target=self.serve, args=(spec,), daemon=True).start()
        last = 0.0
        print("relay ready", flush=True)
        while True:
            time.sleep(0.05)
            try:
                self.reload()
            except (OSError, ValueError):
                pass
            if time.monotonic() - last > 1.0:
                last = time.monotonic()
                self.write_stats()

    def write_stats(self) -> None:
        stats: dict[str, int] = collections.Counter()
        with self.lock:
            for c in self.conns:
                stats[c.up.label] += c.up.bytes
                stats[c.down.label] += c.down.bytes
        tmp = self.path + ".stats.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(stats, f)
        os.replace(tmp, self.path + ".stats.json")


if __name__ == "__main__":
    Relay(sys.argv[1]).run()
