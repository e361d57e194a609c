"""MP-SPDZ active: what each lever buys (issue 10 item 4: active security in minutes).

Runs the active protocol (``malicious-rep-ring-party.x``) through
:class:`fedsyn.engines.mpspdz.MpSpdzEngine` on the first ``--genes`` genes of
``bench_factor.py``'s input (simulated-brca preprocessed to 978 genes; 1,089
samples, 5 classes, 3 holders), star model, noise of ``plan_privacy(10, 1e-5)``,
value range (0, 32), once per lever and profile, all in one run:

``baseline``
    what fedsyn runs.
``-B 3``
    MP-SPDZ's sacrifice bucket size 3 instead of 4 (``--bucket-size``).
``-b 100000``
    preprocessing batches of 100,000 instead of 10,000 (``--batch-size``).
``narrow``
    the programs compiled for ``|x| < 2^22`` instead of ``2^40``
    (``fedsyn.fixedpoint.MAX_VALUE_BITS``): the width a public value range of
    (0, 32) at 16 fractional bits needs. Keys, thresholds and the clip then take
    24-35-bit comparisons instead of 42-53. NOT adopted: it is correct only if
    every holder clips to the range before sharing (``fedsyn share --clip`` is
    optional; a holder that does not would corrupt the comparisons); measured to
    know what it would buy.

Seconds are party 0's ``Time`` summed over the profile's MP-SPDZ runs (MPC
only); data is what party 0 sent. Timings are recorded, never asserted.

Usage::

    MP_SPDZ_HOME=/path/to/MP-SPDZ python benchmarks/bench_mpspdz_levers.py [--genes 100] [--data-dir DIR]

Writes ``benchmarks/results/mpspdz_levers.json`` and ``mpspdz_levers.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_factor import DELTA, VALUE_RANGE, code_state, load1  # noqa: E402

RESULTS = HERE / "results"
LEVERS = {"baseline": [], "-B 3": ["-B", "3"], "-b 100000": ["-b", "100000"], "narrow": []}
NARROW_BITS = 22


@contextlib.contextmanager
def lever(name: str):
    """Party arguments (MP-SPDZ options) or the narrow value bound, for one run."""
    from fedsyn.engines.mpspdz import engine, runner

    real_run, real_bits = runner.run_parties, engine.MAX_VALUE_BITS
    try:
        if LEVERS[name]:
            runner.run_parties = functools.partial(real_run, extra_args=LEVERS[name])
        if name == "narrow":
            engine.MAX_VALUE_BITS = NARROW_BITS
        yield
    finally:
        runner.run_parties, engine.MAX_VALUE_BITS = real_run, real_bits


def run_one(holders, params, name: str, timeout: float) -> dict:
    from fedsyn.engines.mpspdz import MpSpdzEngine, MpSpdzOptions

    with lever(name), tempfile.TemporaryDirectory(prefix="bench-mpspdz-levers-") as work:
        m = MpSpdzEngine(MpSpdzOptions(security="active", timeout=timeout, workdir=Path(work))).measure(holders, params)
    r = m.stats["mpspdz"]
    return {"seconds": r["party_seconds"], "data_sent_mb": r["data_sent_mb"], "rounds": r["rounds"],
            "phases": {k: round(v["seconds"], 2) for k, v in r["phases"].items()}}


def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [
        "# MP-SPDZ active: what each lever buys",
        "",
        f"Machine: {meta['machine']}, {meta['cpus']} CPU(s), three parties on localhost, shared with other jobs "
        f"(1-min load average {meta['load_start']:.2f} at start, {meta['load_end']:.2f} at end). Input: "
        f"{meta['input']}. Active (`malicious-rep-ring-party.x`), star model, noise of `plan_privacy(10, 1e-5)`. "
        "Seconds are party 0's `Time` summed over the profile's runs (MPC only); one run each, side by side. "
        f"Code: commit {meta['code']['commit']}. Levers: see `benchmarks/bench_mpspdz_levers.py`.",
        "",
        "| profile | lever | MPC s | x baseline | MB sent | rounds | per timer (s) |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in result["rows"]:
        base = next(b for b in result["rows"] if b["profile"] == r["profile"] and b["lever"] == "baseline")
        timers = ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items() if v >= 0.05)
        lines.append(f"| {r['profile']} | {r['lever']} | {r['seconds']:.1f} | {r['seconds'] / base['seconds']:.2f} | "
                     f"{r['data_sent_mb']:.0f} | {r['rounds']} | {timers} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--genes", type=int, default=100)
    ap.add_argument("--profiles", nargs="+", default=["paper", "strict"], choices=["paper", "strict"])
    ap.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    ap.add_argument("--timeout", type=float, default=7200.0)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if not os.environ.get("MP_SPDZ_HOME"):
        print("MP_SPDZ_HOME is not set", file=sys.stderr)
        return 2
    from bench_mpspdz_factor import brca978_holders, save

    from fedsyn.accounting import plan_privacy
    from fedsyn.params import ProtocolParams

    data, holders = brca978_holders(args.data_dir, args.genes)
    result = {"meta": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                       "load_start": load1(), "code": code_state(),
                       "input": f"simulated-brca, first {data.n_genes} genes x {data.n_samples} samples, "
                                f"{data.n_labels} classes, 3 holders"},
              "rows": []}
    for profile in args.profiles:
        plan = plan_privacy(10.0, DELTA, n_genes=data.n_genes, n_labels=data.n_labels, profile=profile)
        params = ProtocolParams(**ProtocolParams.sigmas_from_plan(plan), n_labels=data.n_labels, profile=profile,
                                value_range=VALUE_RANGE, n_genes=data.n_genes)
        for name in args.levers:
            row = {"profile": profile, "lever": name, **run_one(holders, params, name, args.timeout)}
            result["rows"].append(row)
            print(json.dumps({k: row[k] for k in ("profile", "lever", "seconds", "data_sent_mb", "rounds")}), flush=True)
    save(args.out, "mpspdz_levers", result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
