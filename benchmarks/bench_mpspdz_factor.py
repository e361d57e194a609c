"""MP-SPDZ engine: the MPC phase of the factor model against the star model (issue 12's cost, on MP-SPDZ).

Runs :class:`fedsyn.engines.mpspdz.MpSpdzEngine` with ``model="star"`` and
``model="factor"`` side by side on the input of ``bench_factor.py``'s cost part
(``fedsyn simulate --preset simulated-brca --genes 2000 --seed 7``, preprocessed
to 978 genes: 1,089 samples, 5 classes, split among 3 holders in contiguous
blocks), noise of a real plan (``plan_privacy(10, 1e-5, profile, model)``,
calibrated before any timing), value range (0, 32), profiles ``strict`` and
``paper``. Star and factor alternate (star first in even repeats) so that drift in
the machine's load hits both alike; medians of ``--repeats`` runs. Passive at
all genes; active (one repeat) on the first ``--active-genes`` genes (0 skips:
an active run at 978 genes takes 10-13 minutes per model).

Seconds are party 0's ``Time`` summed over the MP-SPDZ runs of a model (MPC
only: no compilation, no sharing); data is what party 0 sent. Timings are
recorded, never asserted.

Usage::

    MP_SPDZ_HOME=/path/to/MP-SPDZ python benchmarks/bench_mpspdz_factor.py \\
        [--repeats 3] [--profiles strict paper] [--active-genes 100] [--data-dir DIR]

Writes ``benchmarks/results/mpspdz_factor.json`` and ``mpspdz_factor.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_factor import DELTA, VALUE_RANGE, code_state, load1, load_input, make_inputs  # noqa: E402

from fedsyn.atomic import write_json_atomic, write_text_atomic  # noqa: E402

RESULTS = HERE / "results"
N_HOLDERS = 3


def brca978_holders(data_dir: Path | None, genes: int | None = None):
    """``bench_factor.py``'s 978-gene simulated-brca input (made in ``data_dir``, or a temporary directory), its
    first ``genes`` genes, split among :data:`N_HOLDERS` holders in contiguous blocks: ``(data, holders)``."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="fedsyn-bench-mpspdz-") as tmp:
        inputs = make_inputs(data_dir or Path(tmp) / "data", ["brca978"])
        data = load_input(inputs["brca978"]["path"])
    if genes is not None and genes < data.n_genes:
        data = data.subset(genes=np.arange(genes))
    cuts = np.linspace(0, data.n_samples, N_HOLDERS + 1).astype(int)
    return data, [data.subset(rows=np.arange(a, b)) for a, b in zip(cuts[:-1], cuts[1:])]


def _params(data, profile: str, model: str):
    from fedsyn.accounting import plan_privacy
    from fedsyn.params import ProtocolParams

    plan = plan_privacy(10.0, DELTA, n_genes=data.n_genes, n_labels=data.n_labels, profile=profile, model=model)
    return plan, ProtocolParams(**ProtocolParams.sigmas_from_plan(plan), n_labels=data.n_labels, profile=profile,
                                model=model, value_range=VALUE_RANGE, n_genes=data.n_genes)


def run_one(holders, params, plan, security: str, timeout: float) -> dict:
    from fedsyn.engines.mpspdz import MpSpdzEngine, MpSpdzOptions

    with tempfile.TemporaryDirectory(prefix="bench-mpspdz-factor-") as work:
        engine = MpSpdzEngine(MpSpdzOptions(security=security, timeout=timeout, workdir=Path(work)))
        t0 = time.perf_counter()
        measured = engine.measure(holders, params, privacy=plan)
        wall = time.perf_counter() - t0
    rep = measured.stats["mpspdz"]
    record = measured.measurements.model_record()
    return {"seconds": rep["party_seconds"], "wall_seconds": round(wall, 2), "compile_seconds": rep["compile_seconds"],
            "compile_cached": rep["compile_cached"], "data_sent_mb": rep["data_sent_mb"], "rounds": rep["rounds"],
            "phases": rep["phases"], "program": rep["program"], "factor_found": record.get("factor_found")}


def _median(rows, key):
    return statistics.median(r[key] for r in rows)


def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [
        "# MP-SPDZ engine: factor model vs star model",
        "",
        f"Machine: {meta['machine']}, {meta['cpus']} CPU(s), three parties on localhost, shared with other jobs "
        f"(1-min load average {meta['load_start']:.2f} at start, {meta['load_end']:.2f} at end). Input: "
        f"{meta['input']}. Noise of `plan_privacy(10, 1e-5, ...)` for each profile and model; value range (0, 32). "
        "Seconds are party 0's `Time` summed over the model's MP-SPDZ runs (MPC only: no compilation, no "
        "sharing), medians over the repeats; star and factor alternate. `x star` = factor / star of the same "
        f"profile and security. Code: commit {meta['code']['commit']}.",
        "",
        "| security | genes | profile | model | runs | MPC s (median) | x star | MB sent | rounds | factor found |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    groups: dict[tuple, list] = {}
    for r in result["rows"]:
        groups.setdefault((r["security"], r["genes"], r["profile"], r["model"]), []).append(r)
    for (sec, genes, profile, model), rows in groups.items():
        star = groups.get((sec, genes, profile, "star"))
        ratio = f"{_median(rows, 'seconds') / _median(star, 'seconds'):.2f}" if star and model == "factor" else ""
        found = "" if model == "star" else f"{sum(bool(r['factor_found']) for r in rows)}/{len(rows)}"
        lines.append(f"| {sec} | {genes} | {profile} | {model} | {len(rows)} | {_median(rows, 'seconds'):.1f} | "
                     f"{ratio} | {_median(rows, 'data_sent_mb'):.0f} | {int(_median(rows, 'rounds'))} | {found} |")
    lines += ["", "## The factor model's own phases (median seconds / MB of party 0)", ""]
    for (sec, genes, profile, model), rows in groups.items():
        if model != "factor":
            continue
        names = [k for k in rows[0]["phases"] if k.startswith(("gram", "factor"))]
        parts = ", ".join(f"{k} {statistics.median(r['phases'][k]['seconds'] for r in rows):.2f} s / "
                          f"{statistics.median(r['phases'][k]['mb'] for r in rows):.1f} MB" for k in names)
        added = statistics.median(sum(r["phases"][k]["seconds"] for k in names) for r in rows)
        lines.append(f"- {sec} {genes} genes {profile}: {parts}; together {added:.2f} s")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profiles", nargs="+", default=["strict", "paper"], choices=["strict", "paper"])
    ap.add_argument("--active-genes", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=7200.0)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if not os.environ.get("MP_SPDZ_HOME"):
        print("MP_SPDZ_HOME is not set", file=sys.stderr)
        return 2
    data, all_genes = brca978_holders(args.data_dir)
    result = {"meta": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                       "load_start": load1(), "code": code_state(),
                       "input": f"simulated-brca, {data.n_genes} genes x {data.n_samples} samples, "
                                f"{data.n_labels} classes, {N_HOLDERS} holders"},
              "rows": []}
    plans = {(p, m): _params(data, p, m) for p in args.profiles for m in ("star", "factor")}
    settings = [("passive", data.n_genes, args.repeats)]
    if args.active_genes:
        settings.append(("active", min(args.active_genes, data.n_genes), 1))
    for security, genes, repeats in settings:
        sub, holders = (data, all_genes) if genes == data.n_genes else brca978_holders(args.data_dir, genes)
        for profile in args.profiles:
            for rep in range(repeats):
                for model in (("star", "factor") if rep % 2 == 0 else ("factor", "star")):
                    plan, params = plans[profile, model] if genes == data.n_genes else _params(sub, profile, model)
                    row = {"security": security, "genes": genes, "profile": profile, "model": model, "repeat": rep,
                           **run_one(holders, params, plan, security, args.timeout)}
                    result["rows"].append(row)
                    print(json.dumps({k: row[k] for k in ("security", "genes", "profile", "model", "seconds",
                                                          "data_sent_mb", "rounds", "factor_found")}), flush=True)
    save(args.out, "mpspdz_factor", result, markdown)
    return 0


def save(out: Path, name: str, result: dict, render) -> None:
    """Close ``result`` (the load at the end) and write ``<name>.json`` and ``<name>.md`` atomically."""
    result["meta"]["load_end"] = load1()
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"{name}.json", result)
    write_text_atomic(out / f"{name}.md", render(result))
    print(render(result))


if __name__ == "__main__":
    sys.exit(main())
