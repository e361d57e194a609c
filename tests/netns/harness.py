"""A rep3 deployment across Linux network namespaces, with emulated wide-area links.

Five namespaces: ``s0``, ``s1``, ``s2`` (the computing servers), ``rel`` (the
release server) and ``br``, which holds a bridge joining the four others by
veth pairs and a user-space TCP relay (``relay.py``) that emulates each link's
round-trip time and bandwidth and can cut it. Every address in the deployment
file points at the relay, which forwards to the real listener, so every byte
between two parties crosses the emulated link between them::

    s0 10.77.0.10 ─┐                        ┌─ relay 10.77.0.1:47000 -> 10.77.0.10:47000
    s1 10.77.0.11 ─┼── br0 (namespace br) ──┼─ relay 10.77.0.1:47001 -> 10.77.0.11:47001
    s2 10.77.0.12 ─┤                        └─ relay 10.77.0.1:47010 -> 10.77.0.20:47010
    rel 10.77.0.20 ┘                           relay 10.77.0.1:4710i -> 10.77.0.1i:4710i (MP-SPDZ party i)

The parties run the real command line (``python -m fedsyn serve``/``release``)
inside their namespaces, with either engine: ``fedsyn serve --engine mp-spdz``
starts each MP-SPDZ party binary in its server's namespace, and the MP-SPDZ
links cross the relay too (``MPSPDZ_PORTS``). Needs root and ``ip`` (iproute2); :func:`unavailable`
says why not otherwise. Used by ``tests/netns/test_netns.py`` and
``benchmarks/bench_wan.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
RELAY = HERE / "relay.py"
SUBNET = "10.77.0"
RELAY_IP = f"{SUBNET}.1"
IPS = {"0": f"{SUBNET}.10", "1": f"{SUBNET}.11", "2": f"{SUBNET}.12", "r": f"{SUBNET}.20"}
PORTS = {"0": 47000, "1": 47001, "r": 47010}  # server 2 listens on nothing
#: MP-SPDZ party ports (``mpspdz_port``): every party listens (party 2 for its own loopback link only)
MPSPDZ_PORTS = {"0": 47100, "1": 47101, "2": 47102}
ROLES = ("0", "1", "2", "r")
LINKS = ("0-1", "0-2", "1-2", "0-r", "1-r", "2-r")


def unavailable() -> str | None:
    """Why network-namespace tests cannot run here (None if they can)."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    name = f"fsn-probe-{uuid.uuid4().hex[:6]}"
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + ["ip", *args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip()}")


@dataclass
class Topology:
    """The five namespaces, the bridge and the relay (a context manager; removes everything on exit).

    Parameters
    ----------
    work : pathlib.Path
        Directory for the relay's config and statistics.
    links : dict, optional
        Initial link parameters by link name (``"0-1"``, ``"1-r"``...): ``rtt_ms``,
        ``mbit`` (None: unlimited), ``state`` (``up``, ``blackhole``, ``reset``).
    default : dict, optional
        Parameters of the links not named.
    """

    work: Path
    links: dict = field(default_factory=dict)
    default: dict = field(default_factory=lambda: {"rtt_ms": 0, "mbit": None, "state": "up"})
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    relay: subprocess.Popen | None = None

    def ns(self, role: str) -> str:
        return f"fsn-{self.tag}-{role}"

    @property
    def relay_config(self) -> Path:
        return self.work / "relay.json"

    def __enter__(self) -> "Topology":
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            self._build()
            self.write_links()
            self.relay = subprocess.Popen(
                ["ip", "netns", "exec", self.ns("br"), sys.executable, str(RELAY), str(self.relay_config)],
                stdout=subprocess.PIPE, stderr=open(self.work / "relay.log", "wb"), text=True,
            )
            line = self.relay.stdout.readline() if self.relay.stdout else ""
            if "relay ready" not in line:
                raise RuntimeError(f"the relay did not start: {(self.work / 'relay.log').read_text()[-2000:]}")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _build(self) -> None:
        br = self.ns("br")
        _ip("netns", "add", br)
        _ip("link", "set", "lo", "up", ns=br)
        _ip("link", "add", "br0", "type", "bridge", ns=br)
        _ip("addr", "add", f"{RELAY_IP}/24", "dev", "br0", ns=br)
        _ip("link", "set", "br0", "up", ns=br)
        for role in ROLES:
            ns = self.ns(role)
            _ip("netns", "add", ns)
            _ip("link", "set", "lo", "up", ns=ns)
            inner, outer = f"fi{self.tag}{role}", f"fo{self.tag}{role}"
            _ip("link", "add", inner, "type", "veth", "peer", "name", outer)
            _ip("link", "set", inner, "netns", ns)
            _ip("link", "set", outer, "netns", br)
            _ip("link", "set", outer, "master", "br0", ns=br)
            _ip("link", "set", outer, "up", ns=br)
            _ip("addr", "add", f"{IPS[role]}/24", "dev", inner, ns=ns)
            _ip("link", "set", inner, "up", ns=ns)

    def write_links(self, **changes: dict) -> None:
        """Write the relay config (link parameters, ``changes`` merged in); the relay picks it up."""
        for name, params in changes.items():
            self.links[name.replace("_", "-")] = dict(self.links.get(name.replace("_", "-"), {}), **params)
        listen = [(r, PORTS[r]) for r in PORTS] + [(r, MPSPDZ_PORTS[r]) for r in MPSPDZ_PORTS]
        config = {
            "listen": [{"host": RELAY_IP, "port": port, "target": [IPS[r], port]} for r, port in listen],
            "roles": {ip: role for role, ip in IPS.items()},
            "links": self.links,
            "default": self.default,
        }
        tmp = self.relay_config.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, indent=1))
        os.replace(tmp, self.relay_config)

    def set_link(self, name: str, **params) -> None:
        """Change link ``name`` (e.g. ``set_link("1-2", state="blackhole")``) while a run goes on."""
        self.write_links(**{name: params})
        time.sleep(0.2)  # the relay polls every 50 ms

    def link_bytes(self) -> dict:
        """Bytes the relay forwarded, by link and direction (``0-1-up``: from the lower role's side... as connected)."""
        try:
            return json.loads((self.work / "relay.json.stats.json").read_text())
        except (OSError, ValueError):
            return {}

    def popen(self, role: str, args: Sequence[str], *, log: Path, env: dict | None = None) -> subprocess.Popen:
        """Run ``args`` in the namespace of ``role``, output to ``log``."""
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", NUMPY_MADVISE_HUGEPAGE="0", **(env or {}))
        with open(log, "wb") as out:
            return subprocess.Popen(["ip", "netns", "exec", self.ns(role), *args], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env)

    def __exit__(self, *exc) -> None:
        if self.relay is not None and self.relay.poll() is None:
            self.relay.kill()
            self.relay.wait(10)
        for role in (*ROLES, "br"):
            subprocess.run(["ip", "netns", "del", self.ns(role)], capture_output=True)


# ---------------------------------------------------------------------------
# Inputs and deployment files
# ---------------------------------------------------------------------------


def fedsyn(*args: str, cwd: Path | None = None, timeout: float = 600) -> str:
    """Run ``python -m fedsyn ARGS`` here (no namespace); return stdout, raise with stderr on failure."""
    res = subprocess.run([sys.executable, "-m", "fedsyn", *args], capture_output=True, text=True, cwd=cwd,
                         timeout=timeout, env=dict(os.environ, NUMPY_MADVISE_HUGEPAGE="0"))
    if res.returncode != 0:
        raise RuntimeError(f"fedsyn {' '.join(args)} failed ({res.returncode}): {res.stderr[-3000:]}")
    return res.stdout


def write_csv(path: Path, values: np.ndarray, labels: Sequence[str], genes: Sequence[str]) -> Path:
    """An expression file as ``fedsyn share`` reads it: sample_id, the genes, label."""
    lines = [",".join(["sample_id", *genes, "label"])]
    for i, (row, lab) in enumerate(zip(values, labels)):
        lines.append(",".join([f"S{i}", *(repr(float(v)) for v in row), lab]))
    path.write_text("\n".join(lines) + "\n")
    return path


def read_csv(path: Path) -> tuple[np.ndarray, list[str], list[str]]:
    """Values, labels and genes of an expression CSV with a ``label`` column (as written by fedsyn)."""
    rows = path.read_text().splitlines()
    head = rows[0].split(",")
    li = head.index("label")
    genes = [g for k, g in enumerate(head) if k not in (0, li)]
    values, labels = [], []
    for r in rows[1:]:
        f = r.split(",")
        labels.append(f[li])
        values.append([float(v) for k, v in enumerate(f) if k not in (0, li)])
    return np.array(values), labels, genes


def prepare_inputs(work: Path, data_csv: Path, *, holders: int = 3, run_id: str, epsilon: float,
                   frac_bits: int = 16, binning: str = "select", fmt: str = "fedsyn",
                   privacy: str = "paper") -> tuple[Path, list[Path]]:
    """``params.json`` and every server's bundle directory, as a consortium would make them.

    The ONE place that knows how a run's public parameters and the holders'
    bundles come about: the data are split into ``holders`` contiguous parts,
    each shared with ``fedsyn share`` (the agreed ``labels.txt`` / ``genes.txt``
    and ``run_id``), and ``fedsyn plan`` writes ``params.json`` for ``epsilon``
    (delta 1e-5) from the same gene and label lists.

    ``privacy``: the plan's ``--privacy`` profile. ``paper`` by default: its
    bin means are exact, so a test can compare them bit for bit with the
    reference, and its protocol is long enough to kill a server in the middle.

    ``fmt="mp-spdz"``: ``fedsyn share --format mp-spdz``; server ``i`` gets each
    holder's directory with ``manifest.json`` and ``Transactions-P<i>.data`` only.

    Returns
    -------
    params : pathlib.Path
    bundle_dirs : list of three pathlib.Path
        ``bundle_dirs[i]`` holds every holder's bundle for server ``i``.
    """
    values, labels, genes = read_csv(data_csv)
    domain = sorted(set(labels))
    (work / "labels.txt").write_text("\n".join(domain) + "\n")
    (work / "genes.txt").write_text("\n".join(genes) + "\n")
    edges = np.linspace(0, len(values), holders + 1).astype(int)
    shared = work / "shared"
    for k in range(holders):
        part = write_csv(work / f"holder{k}.csv", values[edges[k] : edges[k + 1]], labels[edges[k] : edges[k + 1]],
                         genes)
        fedsyn("-q", "share", "-i", str(part), "-o", str(shared), "--holder-id", f"h{k}", "--labels",
               str(work / "labels.txt"), "--genes", str(work / "genes.txt"), "--run-id", run_id,
               "--frac-bits", str(frac_bits), "--format", fmt)
    dirs = []
    for i in range(3):
        d = work / f"bundles{i}"
        d.mkdir(exist_ok=True)
        for p in shared.glob(f"*.server{i}.fsb"):
            shutil.copy2(p, d / p.name)
        for m in shared.glob("*/manifest.json"):  # mp-spdz: the holder's manifest and file i only
            (d / m.parent.name).mkdir(exist_ok=True)
            shutil.copy2(m, d / m.parent.name / m.name)
            shutil.copy2(m.parent / f"Transactions-P{i}.data", d / m.parent.name / f"Transactions-P{i}.data")
        dirs.append(d)
    path = work / "params.json"
    fedsyn("-q", "plan", "--epsilon", str(epsilon), "--genes", str(work / "genes.txt"), "--labels",
           str(work / "labels.txt"), "--frac-bits", str(frac_bits), "--binning", binning, "--privacy", privacy, "-o", str(path))
    return path, dirs


def write_deployment(work: Path, *, run_id: str, timeout: float, connect_timeout: float,
                     direct: bool = False, name: str = "deployment.toml") -> Path:
    """Certificates (``fedsyn certs``) and the deployment TOML: every address is the relay's.

    ``direct``: the parties' own addresses instead, bypassing the relay (a
    baseline for the relay's own cost).
    """
    certs = work / "certs"
    if not (certs / "ca.pem").exists():
        fedsyn("-q", "certs", "--out", str(certs), "--hosts", IPS["0"], IPS["1"], IPS["2"],
               "--release-host", IPS["r"])
    lines = ["[deployment]", f'ca = "{certs / "ca.pem"}"', f'session = "{run_id}"', f"timeout = {timeout}",
             f"connect_timeout = {connect_timeout}", ""]
    for i in range(3):
        port = PORTS.get(str(i), 47002)
        host = IPS[str(i)] if direct else RELAY_IP
        lines += ["[[server]]", f"id = {i}", f'host = "{host}"', f"port = {port}", f'bind = "{IPS[str(i)]}"',
                  f"mpspdz_port = {MPSPDZ_PORTS[str(i)]}",
                  f'cert = "{certs / f"server{i}.pem"}"', f'key = "{certs / f"server{i}.key"}"', ""]
    host = IPS["r"] if direct else RELAY_IP
    lines += ["[release]", f'host = "{host}"', f"port = {PORTS['r']}", f'bind = "{IPS["r"]}"',
              f'cert = "{certs / "release.pem"}"', f'key = "{certs / "release.key"}"', ""]
    path = work / name
    path.write_text("\n".join(lines))
    return path


# ---------------------------------------------------------------------------
# A run
# ---------------------------------------------------------------------------


@dataclass
class Run:
    """The four processes of one deployment run and what they left."""

    topo: Topology
    work: Path
    procs: dict[str, subprocess.Popen]
    started: float
    ended: dict[str, float] = field(default_factory=dict)

    def log(self, role: str) -> str:
        try:
            return (self.work / f"{role}.log").read_text(errors="replace")
        except OSError:
            return ""

    def poll(self) -> dict[str, int | None]:
        now = time.monotonic()
        codes = {}
        for role, p in self.procs.items():
            codes[role] = p.poll()
            if codes[role] is not None and role not in self.ended:
                self.ended[role] = now - self.started
        return codes

    def wait(self, roles: Sequence[str], timeout: float) -> dict[str, int | None]:
        """Wait until ``roles`` exited (or ``timeout`` seconds); exit codes, None for still running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            codes = self.poll()
            if all(codes[r] is not None for r in roles):
                return codes
            time.sleep(0.05)
        return self.poll()

    def wait_for_log(self, role: str, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log(role):
                return True
            if self.procs[role].poll() is not None:
                return text in self.log(role)
            time.sleep(0.05)
        return False

    def kill(self, role: str, sig: int = signal.SIGKILL) -> float:
        """Send ``sig`` to a party's process; returns the time since the start."""
        self.procs[role].send_signal(sig)
        return time.monotonic() - self.started

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.poll()

    def tails(self, n: int = 8) -> str:
        return "\n".join(f"--- {r} (exit {p.poll()}):\n" + "\n".join(self.log(r).splitlines()[-n:])
                         for r, p in self.procs.items())


def start_run(topo: Topology, work: Path, config: Path, params: Path, bundle_dirs: Sequence[Path], *,
              release_timeout: float | None = None, verbose: bool = False, serve_args: Sequence[str] = (),
              server_env: dict | None = None) -> Run:
    """Start ``fedsyn release`` in ``rel`` and ``fedsyn serve --id i`` in ``s<i>``.

    ``serve_args``: more ``fedsyn serve`` options (e.g. ``--engine mp-spdz``);
    ``--workdir <work>/mp<i>`` is added for the MP-SPDZ engine, so that a test
    finds each party binary by its working directory. ``server_env[i]``: more
    environment variables of server ``i`` (e.g. its own ``FEDSYN_CACHE_DIR``).
    """
    py = [sys.executable, "-m", "fedsyn", "-vv" if verbose else "-v"]
    procs = {}
    started = time.monotonic()
    rel = [*py, "release", "--config", str(config), "--out", str(work / "release"), "--no-synthesize"]
    if release_timeout is not None:
        rel += ["--timeout", str(release_timeout)]
    procs["r"] = topo.popen("r", rel, log=work / "r.log")
    for i in range(3):
        extra = list(serve_args)
        if "mp-spdz" in extra:
            extra += ["--workdir", str(work / f"mp{i}")]
        procs[str(i)] = topo.popen(str(i), [*py, "serve", "--id", str(i), "--config", str(config), "--bundles",
                                            str(bundle_dirs[i]), "--params", str(params), "--out", str(work),
                                            "--ledger", str(work / f"ledger{i}.jsonl"), *extra],
                                   log=work / f"{i}.log", env=(server_env or {}).get(i))
    return Run(topo=topo, work=work, procs=procs, started=started)


def server_stats(work: Path) -> dict[int, dict]:
    """``server<i>.stats.json`` of the servers that finished."""
    out = {}
    for i in range(3):
        p = work / f"server{i}.stats.json"
        if p.exists():
            out[i] = json.loads(p.read_text())
    return out


def long_numbers(log: str) -> list[str]:
    """Runs of 11 or more decimal digits in a log (a share or a value would be one), leaving out the hex
    digests fedsyn logs on purpose (``sha256 <16 hex>``, ``program <16 hex>``; digits-only by chance in ~1.6 %
    of cases). ``tests/test_rep3_deploy.py`` has the same check for the tests outside ``netns``."""
    return re.findall(r"\d{11,}", re.sub(r"\b(sha256|program) [0-9a-f]{16,64}", "", log))
