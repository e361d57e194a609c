"""Finding, compiling and running MP-SPDZ (the paper's MPC framework).

MP-SPDZ is never part of fedsyn: it is built from its own sources (see
``docs/mp-spdz-engine.md``) and found through ``MP_SPDZ_HOME``. This module

* locates the installation and its party binaries (:func:`find_installation`),
* compiles ``mpc_programs/*.mpc`` into a cache outside the repository, keyed by
  the program source, its arguments and the compiler flags (:func:`compile_program`),
* prepares a run directory (``Programs`` link, ``Player-Data`` with TLS keys
  made by MP-SPDZ's own ``Scripts/setup-ssl.sh``, ``Persistence``), and
* runs the three party processes with per-party logs and a timeout, turning any
  failure into :class:`~fedsyn.errors.ProtocolError` with the tail of every log
  (:func:`run_parties`).

Only this package knows MP-SPDZ paths, ports and command lines.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from ...errors import BundleError, EngineUnavailableError, ProtocolError

logger = logging.getLogger(__name__)

Security = Literal["passive", "active"]

BINARIES = {
    "passive": "replicated-ring-party.x",   # Araki et al. 2016, semi-honest, honest majority
    "active": "malicious-rep-ring-party.x",  # Dalskov et al. 2020, malicious, honest majority
}
#: ``-R 64``: computation modulo 2^64. ``-Z 3``: local share conversion for
#: three-party replicated secret sharing (faster comparisons); only the passive
#: binary implements it, the active one uses edaBits.
COMPILE_FLAGS = {"passive": ("-R", "64", "-Z", "3"), "active": ("-R", "64")}
#: Party-binary option that stops the dump of the secret-shared memory at the end.
NO_MEMORY_DUMP = "no_memory_output"


def programs_dir() -> Path:
    """Directory of fedsyn's ``.mpc`` sources (the ``fedsyn.mpc_programs`` package data).

    The copy next to this very ``fedsyn`` package wins (an installed wheel's
    ``fedsyn/mpc_programs``, or a checkout's ``mpc_programs``), so that a second
    checkout (a git worktree) run with ``PYTHONPATH`` compiles its own programs,
    not those of the checkout installed in editable mode.
    """
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "mpc_programs", here.parents[3] / "mpc_programs"):
        if (candidate / "protocol1.mpc").is_file():
            return candidate
    try:
        import fedsyn.mpc_programs as pkg

        return Path(pkg.__file__).resolve().parent
    except ImportError:  # pragma: no cover - source checkout without the package mapping
        return Path(__file__).resolve().parents[3] / "mpc_programs"

INSTALL_HINT = (
    "Build MP-SPDZ (https://github.com/data61/MP-SPDZ, v0.4.2) outside the project by "
    "following its README -- `make replicated-ring-party.x malicious-rep-ring-party.x` -- "
    "and set MP_SPDZ_HOME to its directory (the one holding compile.py). "
    "See docs/mp-spdz-engine.md."
)


@dataclass(frozen=True)
class Installation:
    """An MP-SPDZ directory with ``compile.py`` and party binaries."""

    home: Path

    @property
    def compiler(self) -> Path:
        return self.home / "compile.py"

    def binary(self, security: Security) -> Path:
        """Path of the party binary for ``security``; raises if it is not built."""
        if security not in BINARIES:
            raise EngineUnavailableError(f"Unknown security {security!r}; use 'passive' or 'active'.")
        path = self.home / BINARIES[security]
        if not os.access(path, os.X_OK):
            raise EngineUnavailableError(
                f"{path} is missing or not executable. Build it in {self.home} with "
                f"`make {BINARIES[security]}` (see MP-SPDZ's README)."
            )
        return path


def find_installation(home: str | os.PathLike | None = None) -> Installation:
    """Locate MP-SPDZ from ``home`` or ``$MP_SPDZ_HOME``.

    Raises
    ------
    EngineUnavailableError
        If neither is set or the directory holds no ``compile.py``.
    """
    raw = home if home is not None else os.environ.get("MP_SPDZ_HOME")
    if not raw:
        raise EngineUnavailableError("MP_SPDZ_HOME is not set. " + INSTALL_HINT)
    path = Path(raw).expanduser().resolve()
    if not (path / "compile.py").is_file():
        raise EngineUnavailableError(f"{path} holds no compile.py, so it is not an MP-SPDZ directory. " + INSTALL_HINT)
    return Installation(path)


def default_cache_dir() -> Path:
    """``$FEDSYN_CACHE_DIR`` or ``$XDG_CACHE_HOME/fedsyn`` (``~/.cache/fedsyn``), plus ``mp-spdz``."""
    base = os.environ.get("FEDSYN_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    sub = "mp-spdz" if os.environ.get("FEDSYN_CACHE_DIR") else "fedsyn/mp-spdz"
    return Path(base) / sub


@dataclass(frozen=True)
class CompiledProgram:
    """A compiled program: ``directory/Programs/{Bytecode,Schedules}/<name>...``."""

    name: str
    directory: Path
    compile_seconds: float
    cached: bool


def program_name(program: str, args: Sequence[object]) -> str:
    """MP-SPDZ's name of a compiled program: ``<program>-<arg1>-<arg2>...``."""
    return "-".join([program, *map(str, args)])


def compile_program(
    installation: Installation,
    program: str,
    args: Sequence[object],
    *,
    security: Security = "passive",
    cache_dir: str | os.PathLike | None = None,
    source_dir: str | os.PathLike | None = None,
    timeout: float = 600.0,
) -> CompiledProgram:
    """Compile ``<source_dir>/<program>.mpc`` with ``compile.py -R 64 [-Z 3]``, cached.

    The cache key is the SHA-256 of the program source, the arguments, the flags,
    the MP-SPDZ directory and the size and modification time of its compiler
    files (``compile.py``, ``Compiler/*.py``), so an edited program or an
    updated MP-SPDZ is recompiled.

    Raises
    ------
    EngineUnavailableError
        If the program source is missing or the compiler fails.
    """
    src = Path(source_dir or programs_dir()) / f"{program}.mpc"
    if not src.is_file():
        raise EngineUnavailableError(f"MPC program {src} not found (is fedsyn installed from a full checkout?).")
    text = src.read_bytes()
    flags = COMPILE_FLAGS[security]
    key = hashlib.sha256(
        b"\0".join([text, " ".join(map(str, args)).encode(), " ".join(flags).encode(),
                    str(installation.home).encode(), _compiler_fingerprint(installation)])
    ).hexdigest()[:24]
    name = program_name(program, args)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"{program}-{key}"
    done = target / "COMPILED"
    if done.is_file():
        return CompiledProgram(name, target, 0.0, True)
    staging = root / f".{program}-{key}-{os.getpid()}-{time.time_ns()}"
    (staging / "Programs" / "Source").mkdir(parents=True, exist_ok=True)
    (staging / "Programs" / "Source" / src.name).write_bytes(text)
    cmd = [sys.executable, str(installation.compiler), *flags, program, *map(str, args)]
    logger.info("compiling %s", name)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=staging, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise EngineUnavailableError(f"Compiling {name} took longer than {timeout:g} s.") from exc
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        shutil.rmtree(staging, ignore_errors=True)
        raise EngineUnavailableError(f"MP-SPDZ could not compile {name} (exit {proc.returncode}):\n{tail}")
    (staging / "COMPILED").write_text(f"{name}\n{seconds:.3f}\n")
    try:
        os.replace(staging, target)
    except OSError:  # another process finished first: use its copy
        shutil.rmtree(staging, ignore_errors=True)
    return CompiledProgram(name, target, seconds, False)


def _compiler_fingerprint(installation: Installation) -> bytes:
    """Names, sizes and modification times of MP-SPDZ's compiler sources."""
    files = [installation.compiler, *sorted((installation.home / "Compiler").glob("*.py"))]
    parts = []
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        parts.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts).encode()


def ensure_tls(installation: Installation, player_data: Path, n_parties: int = 3) -> None:
    """Create ``P<i>.pem/.key`` with MP-SPDZ's ``Scripts/setup-ssl.sh`` unless present."""
    if all((player_data / f"P{i}.pem").is_file() and (player_data / f"P{i}.key").is_file() for i in range(n_parties)):
        return
    player_data.mkdir(parents=True, exist_ok=True)
    script = installation.home / "Scripts" / "setup-ssl.sh"
    proc = subprocess.run(["bash", str(script), str(n_parties), str(player_data)], cwd=player_data.parent,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not (player_data / "P0.pem").is_file():
        raise EngineUnavailableError(
            f"Scripts/setup-ssl.sh failed (needs openssl and c_rehash):\n{proc.stderr[-2000:]}"
        )


def prepare_workspace(installation: Installation, workdir: str | os.PathLike, compiled: CompiledProgram) -> Path:
    """Run directory with ``Programs`` (links to the compiled program, :func:`link_program`), TLS keys and
    ``Persistence``."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    link_program(work, compiled, fresh=True)
    ensure_tls(installation, work / "Player-Data")
    (work / "Persistence").mkdir(exist_ok=True)
    (work / "logs").mkdir(exist_ok=True)
    return work


def link_program(workdir: str | os.PathLike, compiled: CompiledProgram, *, fresh: bool = False) -> Path:
    """Make ``compiled`` runnable in ``workdir``: its bytecode and schedule linked into ``Programs/``.

    ``Programs`` is a real directory of per-file links into the compile cache
    (several programs can be linked into one run directory, e.g. both phases
    of the strict profile), with a run-local ``Public-Input`` directory: public
    inputs are written per run, never into the shared cache. ``fresh``
    empties ``Programs`` first.
    """
    programs = Path(workdir) / "Programs"
    if programs.is_symlink():
        programs.unlink()
    elif fresh and programs.exists():
        shutil.rmtree(programs)
    src = compiled.directory / "Programs"
    for sub in ("Bytecode", "Schedules", "Functions"):
        (programs / sub).mkdir(parents=True, exist_ok=True)
        if (src / sub).is_dir():
            for f in (src / sub).iterdir():
                target = programs / sub / f.name
                if target.is_symlink() or target.exists():
                    target.unlink()
                target.symlink_to(f)
    (programs / "Public-Input").mkdir(exist_ok=True)
    return programs


def write_public_input(workdir: str | os.PathLike, program: str, values) -> Path:
    """Write the public input of ``program`` (``Programs/Public-Input/<name>``, read by ``pubinput``)."""
    path = Path(workdir) / "Programs" / "Public-Input" / program
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(" ".join(str(int(v)) for v in values) + "\n")
    return path


def read_binary_output(workdir: str | os.PathLike, party: int):
    """The 64-bit integers ``party`` wrote with ``binary_output`` (``Player-Data/Binary-Output-P<i>-0``)."""
    import numpy as np

    path = Path(workdir) / "Player-Data" / f"Binary-Output-P{party}-0"
    try:
        data = path.read_bytes()
    except OSError:
        raise ProtocolError(f"MP-SPDZ party {party} wrote no public output ({path} is missing).") from None
    if len(data) % 8:
        raise ProtocolError(f"{path}: {len(data)} bytes is not a whole number of 64-bit integers.")
    return np.frombuffer(data, dtype="<i8").astype(np.int64)


def free_base_port(n: int = 3, host: str = "127.0.0.1") -> int:
    """A base port such that ``base .. base + n - 1`` are free now (party i listens on base + i)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((host, 0))
            base = s.getsockname()[1]
        if base + n >= 65535:
            continue
        ok = True
        for i in range(n):
            with socket.socket() as s:
                try:
                    s.bind((host, base + i))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise ProtocolError("Could not find three free consecutive TCP ports.")


@dataclass(frozen=True)
class PartyReport:
    """What one party's log says about its run."""

    party: int
    seconds: float | None
    data_sent_mb: float | None
    rounds: int | None
    global_data_mb: float | None
    timers: dict = field(default_factory=dict)  # timer number -> (seconds, MB, rounds)


_TIMER = re.compile(r"^Time(\d+) = ([\d.e+-]+) seconds \(([\d.e+-]+) MB, (\d+) rounds\)", re.M)
_TIME = re.compile(r"^Time = ([\d.e+-]+) seconds", re.M)
_SENT = re.compile(r"^Data sent = ([\d.e+-]+) MB in ~(\d+) rounds", re.M)
_GLOBAL = re.compile(r"^Global data sent = ([\d.e+-]+) MB", re.M)


def parse_log(party: int, text: str) -> PartyReport:
    """Timings and communication from a party binary's output."""
    t = _TIME.search(text)
    s = _SENT.search(text)
    g = _GLOBAL.search(text)
    timers = {int(m[1]): (float(m[2]), float(m[3]), int(m[4])) for m in _TIMER.finditer(text)}
    return PartyReport(
        party=party,
        seconds=float(t[1]) if t else None,
        data_sent_mb=float(s[1]) if s else None,
        rounds=int(s[2]) if s else None,
        global_data_mb=float(g[1]) if g else None,
        timers=timers,
    )


#: Known fatal messages of MP-SPDZ 0.4.2 party binaries and what they mean here.
_DIAGNOSES = (
    ("check hash mismatch", "MP-SPDZ's consistency check failed: the parties hold inconsistent shares "
     "(a tampered or corrupted Persistence file, or a cheating party). The run was aborted and "
     "nothing was released."),
    ("MAC check failed", "MP-SPDZ's MAC check failed (tampered shares or a cheating party). The run "
     "was aborted and nothing was released."),
    ("doesn't match protocol", "A Persistence file was written for another protocol: passive and "
     "active runs need different headers (persistence.write_persistence_shares(..., security=...))."),
    ("Got to EOF when reading from disk", "A Persistence file holds fewer shares than the program "
     "reads (N rows of D + L shares): are all holders' files concatenated?"),
)


def diagnose(text: str) -> str | None:
    """A fedsyn-level explanation of a known MP-SPDZ failure in ``text``, or None."""
    for needle, meaning in _DIAGNOSES:
        if needle in text:
            return meaning
    return None


def check_inputs(workdir: str | os.PathLike, parties: Sequence[int], security: Security) -> None:
    """Check each local party's ``Persistence/Transactions-P<i>.data`` before a run.

    Raises
    ------
    BundleError
        If a file is missing, carries the other protocol's header or has a torn body.
    """
    from .persistence import header, persistence_path

    head = header(security)
    for i in parties:
        path = persistence_path(Path(workdir) / "Persistence", i)
        try:
            size = path.stat().st_size
            with open(path, "rb") as fh:
                start = fh.read(64)
        except OSError:
            raise BundleError(f"{path}: party {i}'s Persistence file is missing.") from None
        if not start.startswith(head):
            other: Security = "active" if security == "passive" else "passive"
            raise BundleError(
                f"{path}: not an MP-SPDZ {security} Persistence file"
                + (f" (it has the {other} header)." if start.startswith(header(other)) else " (header mismatch).")
            )
        if (size - len(head)) % 16:
            raise BundleError(f"{path}: body of {size - len(head)} bytes is not a whole number of 16-byte shares.")


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "<no log>"
    return "\n".join(text.strip().splitlines()[-lines:]) or "<empty log>"


def run_parties(
    installation: Installation,
    workdir: Path,
    program: str,
    *,
    security: Security,
    parties: Sequence[int] = (0, 1, 2),
    host: str = "localhost",
    port: int | None = None,
    hosts: Sequence[str] | None = None,
    timeout: float = 3600.0,
    extra_args: Sequence[str] = (),
) -> list[PartyReport]:
    """Run the party binaries of ``parties`` in ``workdir`` and wait for them.

    Parameters
    ----------
    installation : Installation
    workdir : Path
        Prepared by :func:`prepare_workspace` (the binaries run with it as cwd).
    program : str
        Compiled program name (``protocol1-...``).
    security : {"passive", "active"}
    parties : sequence of int, default (0, 1, 2)
        Which parties to start here (one per host in a distributed run).
    host : str, default "localhost"
        Host of party 0 (MP-SPDZ's ``-h``), used when ``hosts`` is None.
    port : int or None, default None
        Base port (party i listens on ``port + i``); a free one when None.
    hosts : sequence of str or None, default None
        ``host[:port]`` of parties 0, 1, 2, written to an ``-ip`` file.
    timeout : float, default 3600
        Seconds before all parties are killed and :class:`ProtocolError` raised.
    extra_args : sequence of str, default ()
        More party-binary arguments. The binaries always get
        ``-o no_memory_output`` (merged with any ``-o``/``--options`` given here):
        otherwise each party dumps its secret-shared memory -- shares of the
        inputs and every intermediate value -- to ``Player-Data/Memory-*-P<i>``,
        and in a local run the three dumps side by side reveal them.

    Raises
    ------
    BundleError
        A local party's Persistence file is missing or has the wrong header
        (:func:`check_inputs`), before anything is started.
    ProtocolError
        A party exited non-zero or the timeout passed. All local parties are
        then killed; the message gives every party's status, an explanation of
        known MP-SPDZ failures (:func:`diagnose`) and the tail of every party's
        log (never secret data: the binaries log none).
    """
    binary = installation.binary(security)
    workdir = Path(workdir)
    check_inputs(workdir, parties, security)
    base = [str(binary)]
    if hosts is not None:
        if len(hosts) != 3:
            raise ProtocolError(f"hosts must name three parties, got {len(hosts)}.")
        ip_file = workdir / "HOSTS"
        ip_file.write_text("\n".join(hosts) + "\n")
        net = ["-ip", str(ip_file)]
    else:
        port = port if port is not None else free_base_port()
        net = ["-h", host, "-pn", str(port)]
    logs = {i: workdir / "logs" / f"party-{i}.log" for i in parties}
    logs[parties[0]].parent.mkdir(parents=True, exist_ok=True)
    procs: dict[int, subprocess.Popen] = {}
    handles = []
    try:
        for i in parties:
            cmd = base + ["-p", str(i), *net, *_with_options(extra_args, NO_MEMORY_DUMP), program]
            logger.info("starting MP-SPDZ party %d (%s)", i, binary.name)
            handles.append(open(logs[i], "w"))
            procs[i] = subprocess.Popen(cmd, cwd=workdir, stdout=handles[-1], stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        failed = None
        while any(p.poll() is None for p in procs.values()):
            bad = [i for i, p in procs.items() if p.poll() not in (None, 0)]
            if bad:
                failed = f"party {bad[0]} exited with status {procs[bad[0]].returncode}"
                grace = time.monotonic() + 2.0  # let the others log their own error
                while any(p.poll() is None for p in procs.values()) and time.monotonic() < grace:
                    time.sleep(0.05)
                break
            if time.monotonic() > deadline:
                failed = f"timeout after {timeout:g} s"
                break
            time.sleep(0.05)
        if not failed:
            bad = [i for i, p in procs.items() if p.returncode != 0]
            if bad:
                failed = f"party {bad[0]} exited with status {procs[bad[0]].returncode}"
        if failed:
            _stop(procs)
            for fh in handles:
                fh.flush()
            statuses = ", ".join(f"party {i}: {_status(p.returncode)}" for i, p in procs.items())
            texts = {i: logs[i].read_text(errors="replace") if logs[i].is_file() else "" for i in parties}
            hint = next(filter(None, (diagnose(t) for t in texts.values())), None)
            raise ProtocolError(
                f"MP-SPDZ run of {program} ({security}) failed: {failed} ({statuses})."
                + (f"\n{hint}" if hint else "")
                + "".join(f"\n--- party {i} ({logs[i]}):\n{_tail(logs[i])}" for i in parties)
            )
    finally:
        _stop(procs)
        for fh in handles:
            fh.close()
    return [parse_log(i, logs[i].read_text(errors="replace")) for i in parties]


def program_digest(compiled: CompiledProgram) -> str:
    """SHA-256 (hex) over the compiled program: every file under ``Programs/`` by relative path.

    Compilation is deterministic (same MP-SPDZ, same source and arguments:
    byte-identical bytecode and schedule; checked by the tests), so servers
    that compiled independently compare this digest before they run.
    """
    root = compiled.directory / "Programs"
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix().encode()
        data = path.read_bytes()
        h.update(len(rel).to_bytes(8, "little") + rel + len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def write_hosts(workdir: str | os.PathLike, addresses: Sequence[tuple[str, int]]) -> Path:
    """MP-SPDZ's ``-ip`` file: ``host:port`` of party 0, 1, 2, one a line."""
    path = Path(workdir) / "HOSTS"
    path.write_text("".join(f"{h}:{p}\n" for h, p in addresses))
    return path


def party_command(installation: Installation, program: str, index: int, *, security: Security,
                  hosts_file: str | os.PathLike, extra_args: Sequence[str] = ()) -> list[str]:
    """Command line of party ``index`` with an ``-ip`` file (always ``-o no_memory_output``)."""
    return [str(installation.binary(security)), "-p", str(index), "-ip", str(hosts_file),
            *_with_options(extra_args, NO_MEMORY_DUMP), program]


def start_party(command: Sequence[str], workdir: str | os.PathLike, log: str | os.PathLike) -> subprocess.Popen:
    """Start one party binary in ``workdir``, output to ``log``, in its own session.

    On Linux the party gets SIGKILL when the process that started it dies
    (``setpriv --pdeathsig KILL`` when installed): a killed ``fedsyn serve``
    leaves no MP-SPDZ party behind, so its peers see the connection drop.
    """
    cmd = list(command)
    if sys.platform.startswith("linux") and shutil.which("setpriv"):
        cmd = [shutil.which("setpriv") or "setpriv", "--pdeathsig", "KILL", "--", *cmd]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def stop_party(proc: subprocess.Popen) -> None:
    """Kill a party started by :func:`start_party` (its whole process group) and reap it."""
    _stop({0: proc})


def progress(pid: int) -> tuple[int, int] | None:
    """``(CPU ticks, bytes read + written)`` of a process from Linux ``/proc``, or None.

    Both stay constant while a party is stuck waiting for a peer: no
    computation and no socket traffic (``rchar``/``wchar`` count socket I/O).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        cpu = int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None
    io = 0
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith(("rchar:", "wchar:")):
                io += int(line.split()[1])
    except (OSError, ValueError):
        pass
    return cpu, io


def _with_options(args: Sequence[str], option: str) -> list[str]:
    """``args`` with ``option`` added to its ``-o``/``--options`` list (or a new ``-o``)."""
    out = list(args)
    for k, a in enumerate(out[:-1]):
        if a in ("-o", "--options"):
            out[k + 1] = f"{out[k + 1]},{option}"
            return out
    return out + ["-o", option]


def _status(code: int | None) -> str:
    if code is None:
        return "running"
    return f"killed by signal {-code}" if code < 0 else f"exit {code}"


def _stop(procs: dict) -> None:
    """Kill every party process still running (each leads its own session) and reap it."""
    for p in procs.values():
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                p.kill()
            p.wait()
