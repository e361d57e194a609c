"""MP-SPDZ engine: the MPC phase of the privacy profiles side by side (issue 11 item 6: strict <= 1.5x paper).

Runs ``paper`` (``protocol1.mpc``, select binning), ``strict`` (``protocol1_edges.mpc``:
phase ``hist`` then ``bins``) and ``public-edges`` (``bins`` only) through
:class:`fedsyn.engines.mpspdz.MpSpdzEngine` on the same simulated input
(``bench_mpspdz.simulated``: VST-like values, 5 labels), noise on, in one run,
passive at ``--genes`` x ``--samples`` and active at ``--active-genes`` x
``--samples`` (0 = skip). Times are party 0's ``Time`` summed over the
profile's MP-SPDZ runs (MPC only: no compilation, no sharing); data is what
party 0 sent.

Usage::

    MP_SPDZ_HOME=/path/to/MP-SPDZ python benchmarks/bench_mpspdz_profiles.py \\
        [--genes 978] [--samples 1089] [--active-genes 50]

Writes ``benchmarks/results/mpspdz_profiles.json`` and ``mpspdz_profiles.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench_mpspdz import simulated

from fedsyn.engines.mpspdz import MpSpdzEngine, MpSpdzOptions
from fedsyn.params import ProtocolParams

RESULTS = Path(__file__).resolve().parent / "results"
PROFILES = ("paper", "strict", "public-edges")


def params_for(profile: str, d: int) -> ProtocolParams:
    """Noise on (the sigmas do not change the cost); value range (0, 32), 32 histogram cells."""
    common = dict(n_labels=5, sigma=23.4)
    if profile == "paper":
        return ProtocolParams(**common)
    edges = ((4.0, 8.0, 12.0),) * d if profile == "public-edges" else None
    return ProtocolParams(**common, profile=profile, value_range=(0.0, 32.0), hist_sigma=20.0, sum_sigma=60.0,
                          edges=edges)


def run_one(profile: str, security: str, n: int, d: int, timeout: float) -> dict:
    data = simulated(n, d)
    params = params_for(profile, d)
    with tempfile.TemporaryDirectory(prefix="bench-mpspdz-profiles-") as work:
        engine = MpSpdzEngine(MpSpdzOptions(security=security, timeout=timeout, workdir=Path(work)))
        start = time.perf_counter()
        measured = engine.measure([data], params)
        wall = time.perf_counter() - start
    rep = measured.stats["mpspdz"]
    row = {"profile": profile, "security": security, "samples": n, "genes": d,
           "seconds": rep["party_seconds"], "wall_seconds": wall, "compile_seconds": rep["compile_seconds"],
           "compile_cached": rep["compile_cached"], "data_sent_mb": rep["data_sent_mb"],
           "global_data_mb": rep["global_data_mb"], "rounds": rep["rounds"], "phases": rep["phases"]}
    print(json.dumps({k: row[k] for k in ("profile", "security", "genes", "seconds", "data_sent_mb", "rounds")}),
          flush=True)
    return row


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# MP-SPDZ engine: privacy profiles side by side",
        "",
        f"Machine: {meta['machine']}, {meta['cpus']} CPU(s), three parties on localhost, shared with other jobs. "
        f"MP-SPDZ at `$MP_SPDZ_HOME`. Samples: {meta['samples']}; 5 labels; noise on. Seconds are party 0's "
        "`Time` summed over the profile's MP-SPDZ runs (MPC only: no compilation, no sharing); data is what "
        "party 0 sent. `strict` = phase `hist` (clip, histogram cells, noisy histogram opened) + phase "
        "`bins`; `public-edges` = `bins` only; `paper` = `protocol1.mpc` with select binning.",
        "",
        "| security | genes | profile | seconds | x paper | data sent (MB) | rounds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        base = next((b for b in rows if b["profile"] == "paper" and b["security"] == r["security"]
                     and b["genes"] == r["genes"]), None)
        ratio = f"{r['seconds'] / base['seconds']:.2f}" if base and base["seconds"] else ""
        lines.append(f"| {r['security']} | {r['genes']} | {r['profile']} | {r['seconds']:.1f} | {ratio} | "
                     f"{r['data_sent_mb']:.0f} | {r['rounds']} |")
    lines += ["", "## Per timer: seconds / MB", ""]
    for r in rows:
        parts = ", ".join(f"{k} {v['seconds']:.1f} s / {v['mb']:.0f} MB" for k, v in r["phases"].items())
        lines.append(f"- {r['security']} {r['genes']} genes {r['profile']}: {parts}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--genes", type=int, default=978)
    ap.add_argument("--samples", type=int, default=1089)
    ap.add_argument("--active-genes", type=int, default=50)
    ap.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=PROFILES)
    ap.add_argument("--timeout", type=float, default=7200.0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if not os.environ.get("MP_SPDZ_HOME"):
        print("MP_SPDZ_HOME is not set", file=sys.stderr)
        return 2
    rows = [run_one(p, "passive", args.samples, args.genes, args.timeout) for p in args.profiles]
    if args.active_genes:
        rows += [run_one(p, "active", args.samples, args.active_genes, args.timeout) for p in args.profiles]
    meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "samples": args.samples,
            "python": platform.python_version()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mpspdz_profiles.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (args.out / "mpspdz_profiles.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
