"""The privacy-budget ledger a computing server keeps: what each sharing has spent.

Every run of Protocol 1 on a holder's sharing spends privacy budget: running
the same bundles again releases a second, independently noised copy of the
same statistics. A server therefore records, before it computes, one line per
run in its ledger (JSON lines, appended and flushed to disk): the run id, the
holders' sharing ids, epsilon and delta of the plan and the plan's digest. A
run whose sharings already appear in the ledger is refused unless the operator
explicitly allows reuse; the ledger then states the composed total.

The composed total is basic composition (epsilons and deltas add up): always
a valid upper bound, loose for many runs. Entries are never rewritten or
removed by fedsyn.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import ConfigError

__all__ = ["Ledger", "LedgerEntry", "default_ledger_path"]


def default_ledger_path(server: int) -> Path:
    """``$XDG_STATE_HOME/fedsyn/ledger-server<i>.jsonl`` (``~/.local/state`` by default)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "fedsyn" / f"ledger-server{int(server)}.jsonl"


@dataclass(frozen=True)
class LedgerEntry:
    """One run of Protocol 1 on a set of sharings."""

    time: float
    run_id: str | None
    sharings: dict[str, str]
    epsilon: float
    delta: float
    plan_digest: str | None
    reuse: bool = False

    def to_dict(self) -> dict:
        return {"time": self.time, "run_id": self.run_id, "sharings": dict(self.sharings),
                "epsilon": self.epsilon, "delta": self.delta, "plan_digest": self.plan_digest,
                "reuse": self.reuse}


class Ledger:
    """A server's ledger file.

    Parameters
    ----------
    path : path-like
        The JSON-lines file (created with its directory, mode 0600, when missing).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def entries(self) -> list[LedgerEntry]:
        """All recorded runs (a corrupt line is an error naming the line: the ledger is evidence)."""
        if not self.path.exists():
            return []
        out = []
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot read the privacy ledger ({exc.strerror or exc}).") from exc
        for no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                out.append(LedgerEntry(time=float(d["time"]), run_id=d.get("run_id"), sharings=dict(d["sharings"]),
                                       epsilon=float(d["epsilon"]), delta=float(d["delta"]),
                                       plan_digest=d.get("plan_digest"), reuse=bool(d.get("reuse", False))))
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{self.path}, line {no}: not a ledger entry ({exc}); the ledger must not be "
                                  "edited by hand.") from exc
        return out

    def previous_runs(self, sharing_ids: Sequence[str]) -> list[LedgerEntry]:
        """Recorded runs that used any of ``sharing_ids``."""
        wanted = set(sharing_ids)
        return [e for e in self.entries() if wanted & set(e.sharings.values())]

    def spent(self, sharing_ids: Sequence[str]) -> tuple[float, float]:
        """Composed (epsilon, delta) already spent on any of ``sharing_ids`` (basic composition)."""
        prev = self.previous_runs(sharing_ids)
        return sum(e.epsilon for e in prev), sum(e.delta for e in prev)

    def admit(self, *, run_id: str | None, sharings: dict[str, str], epsilon: float, delta: float,
              plan_digest: str | None, allow_reuse: bool = False) -> tuple[float, float]:
        """Check this run against the ledger and record it; returns the composed total after it.

        Raises
        ------
        ConfigError
            The sharings were used before and ``allow_reuse`` is false (nothing is recorded then).
        """
        prev = self.previous_runs(list(sharings.values()))
        if prev and not allow_reuse:
            first = prev[0]
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(first.time))
            total = sum(e.epsilon for e in prev)
            raise ConfigError(
                f"these bundles were already used ({len(prev)} earlier run(s), first {first.run_id or 'without id'} "
                f"on {when}; epsilon {total:g} spent, see {self.path}). Running them again releases a second "
                f"noisy copy and spends epsilon {epsilon:g} more (total {total + epsilon:g}); pass "
                "--allow-reuse to do so knowingly, or ask the holders for a fresh sharing."
            )
        entry = LedgerEntry(time=time.time(), run_id=run_id, sharings=dict(sharings), epsilon=float(epsilon),
                            delta=float(delta), plan_digest=plan_digest, reuse=bool(prev))
        self._append(entry)
        eps_total = sum(e.epsilon for e in prev) + float(epsilon)
        delta_total = sum(e.delta for e in prev) + float(delta)
        return eps_total, delta_total

    def _append(self, entry: LedgerEntry) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry.to_dict(), sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
