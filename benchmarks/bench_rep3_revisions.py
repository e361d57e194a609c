"""Two versions of the rep3 engine side by side on the same input (the real three-process deployment).

Absolute times on this shared machine drift from hour to hour, so a change to
the engine is measured against the code before it in one sitting: for every
size and profile, ``bench_rep3.py --transport tcp`` runs alternately from a
checkout of the older version (``--base``, any directory holding an older
fedsyn tree, e.g. ``git worktree add /tmp/base <commit>``) and from this tree,
``--reps`` times each, with the same seed (hence the same simulated input).
Each run is a separate process tree whose ``PYTHONPATH`` points at its own
checkout. Reports the MPC phase, the servers' largest byte count and the
rounds of every run, and the ratio this/base of the medians.

Writes ``rep3_revisions.json`` and ``rep3_revisions.md`` to ``--out``
atomically.

Usage::

    python benchmarks/bench_rep3_revisions.py --base /tmp/base [--sizes 2910x4323]
        [--binning select,strict] [--reps 1] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from fedsyn.atomic import write_json_atomic, write_text_atomic
from fedsyn.errors import ConfigError

HERE = Path(__file__).resolve().parents[1]


def _revision(tree: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True)
        dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--", "fedsyn"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return out.stdout.strip() + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_once(tree: Path, size: str, binning: str, seed: int) -> dict:
    """One ``bench_rep3.py`` tcp run from ``tree``; its row."""
    with tempfile.TemporaryDirectory(prefix="fedsyn-revisions-") as tmp:
        env = dict(os.environ, PYTHONPATH=str(tree), NUMPY_MADVISE_HUGEPAGE=os.environ.get("NUMPY_MADVISE_HUGEPAGE", "0"))
        cmd = [sys.executable, str(tree / "benchmarks" / "bench_rep3.py"), "--sizes", size, "--binning", binning,
               "--transport", "tcp", "--seed", str(seed), "--out", tmp]
        subprocess.run(cmd, env=env, check=True, cwd=str(tree), stdout=subprocess.DEVNULL)
        (row,) = json.loads((Path(tmp) / "rep3.json").read_text())["runs"]
    return {"mpc_phase_s": row["mpc_phase_s"], "mb_max": round(max(row["bytes_sent_per_party"]) / 1e6, 1),
            "rounds": row["rounds"], "load_after": row.get("loadavg_1min_after")}


def to_markdown(result: dict) -> str:
    lines = [
        "# rep3: two versions side by side",
        "",
        f"Machine: {result['machine']['cpus']} CPUs, {result['machine']['platform']}. Base: "
        f"`{result['base_revision']}`; this: `{result['this_revision']}`. Real deployment (three `fedsyn serve` "
        "processes over TLS on loopback, `bench_rep3.py --transport tcp`), runs alternating base / this on the "
        f"same simulated input, {result['reps']} each; medians.",
        "",
        "| genes | samples | profile | base MPC s | this MPC s | ratio | base MB | this MB | base rounds | this rounds |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['genes']} | {r['samples']} | {'paper (select)' if r['binning'] == 'select' else r['binning']} "
            f"| {r['base']['mpc_phase_s']:.1f} | {r['this']['mpc_phase_s']:.1f} | {r['ratio']:.2f}x "
            f"| {r['base']['mb_max']:,.0f} | {r['this']['mb_max']:,.0f} "
            f"| {r['base']['rounds']:,} | {r['this']['rounds']:,} |"
        )
    lines += ["", "MPC s: server 0's protocol seconds; MB: the largest of the three servers' bytes sent."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="checkout of the older version")
    ap.add_argument("--sizes", default="2910x4323", help="genes x samples list")
    ap.add_argument("--binning", default="select,strict", help="select (paper profile), strict")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args(argv)
    base = args.base.resolve()
    if not (base / "fedsyn" / "__init__.py").is_file() or not (base / "benchmarks" / "bench_rep3.py").is_file():
        raise ConfigError(f"{base}: not a fedsyn checkout (needs fedsyn/ and benchmarks/bench_rep3.py).")
    rows = []
    for size in (s for s in args.sizes.split(",") if s):
        d, n = (int(v) for v in size.split("x"))
        for binning in (b for b in args.binning.split(",") if b):
            runs: dict[str, list[dict]] = {"base": [], "this": []}
            for _ in range(args.reps):
                for name, tree in (("base", base), ("this", HERE)):
                    runs[name].append(run_once(tree, size, binning, args.seed))
                    print(f"{size} {binning} {name}: {runs[name][-1]}", flush=True)
            med = {k: {f: statistics.median(r[f] for r in v) for f in ("mpc_phase_s", "mb_max", "rounds")}
                   for k, v in runs.items()}
            rows.append({"genes": d, "samples": n, "binning": binning, "runs": runs, "base": med["base"],
                         "this": med["this"], "ratio": med["this"]["mpc_phase_s"] / med["base"]["mpc_phase_s"]})
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "reps": args.reps,
              "base_revision": _revision(base), "this_revision": _revision(HERE), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "rep3_revisions.json", result)
    write_text_atomic(args.out / "rep3_revisions.md", to_markdown(result))
    return result


if __name__ == "__main__":
    main()
