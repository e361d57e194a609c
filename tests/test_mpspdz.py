"""The MP-SPDZ engine against fedsyn.reference, and its Persistence files.

Tests marked ``mpspdz`` need an MP-SPDZ build at ``$MP_SPDZ_HOME`` with
``replicated-ring-party.x`` (and ``malicious-rep-ring-party.x`` for the active
tests); they are skipped otherwise. Compiled programs are cached in
``~/.cache/fedsyn/mp-spdz``, so a second run skips the ~5 s compilations.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from test_privacy_audit import _neighbours  # the audit's neighbouring datasets: D and D plus one record

from fedsyn import fixedpoint, reference
from fedsyn.data import ExpressionData
from fedsyn.engines.mpspdz import persistence
from fedsyn.errors import BundleError, ConfigError, EngineUnavailableError, ProtocolError
from fedsyn.holder import replicated_pairs, split_shares
from fedsyn.measurements import OutputLayout
from fedsyn.noise import GridNoise
from fedsyn.params import ProtocolParams


def _pairs(secret):
    """The three parties' replicated pairs of ``secret`` (fedsyn's one share splitter)."""
    return list(replicated_pairs(split_shares(secret)))


def _rows(x, y, n_labels):
    """protocol1.mpc's row layout: the fixed-point values, then the one-hot label."""
    return np.concatenate([fixedpoint.encode(x), reference.label_onehot(y, n_labels)], axis=1)


def _engine(**options):
    from fedsyn.engines.mpspdz import MpSpdzEngine, MpSpdzOptions

    return MpSpdzEngine(MpSpdzOptions(**options))

HOME = os.environ.get("MP_SPDZ_HOME")
FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tcga_brca_vst_100x978.csv"


def _has(binary: str) -> bool:
    return bool(HOME) and os.access(Path(HOME) / binary, os.X_OK) and (Path(HOME) / "compile.py").is_file()


needs_passive = pytest.mark.skipif(
    not _has("replicated-ring-party.x"), reason="MP_SPDZ_HOME unset or replicated-ring-party.x not built"
)
needs_active = pytest.mark.skipif(
    not _has("malicious-rep-ring-party.x"), reason="MP_SPDZ_HOME unset or malicious-rep-ring-party.x not built"
)


# ------------------------------------------------------- Persistence format --
def test_headers_match_mp_spdz_signatures():
    passive = persistence.header("passive")
    active = persistence.header("active")
    assert passive == (20).to_bytes(8, "little") + b"replicated Z2^64" + (64).to_bytes(4, "little")
    assert active == (30).to_bytes(8, "little") + b"malicious replicated Z2^64" + (64).to_bytes(4, "little")


def test_shares_round_trip_through_files(tmp_path):
    rng = np.random.default_rng(0)
    secret = rng.integers(-(2**40), 2**40, size=(7, 5), dtype=np.int64)
    pairs = _pairs(secret)
    files = persistence.write_persistence_shares(pairs, tmp_path, security="active")
    assert [f.name for f in files] == [f"Transactions-P{i}.data" for i in range(3)]
    read = [persistence.read_persistence_shares(f, security="active") for f in files]
    for i in range(3):  # party i holds (s_i, s_{i-1}): its second half is party i-1's first
        assert np.array_equal(read[i][1], read[(i - 1) % 3][0])
        assert files[i].stat().st_size == 38 + 16 * secret.size
    total = read[0][0] + read[1][0] + read[2][0]
    assert np.array_equal(total.view(np.int64).reshape(secret.shape), secret)
    with pytest.raises(BundleError, match="header"):
        persistence.read_persistence_shares(files[0], security="passive")


def test_holders_files_concatenate_under_one_header(tmp_path):
    a = _pairs(np.arange(6, dtype=np.int64))
    b = _pairs(np.arange(6, 10, dtype=np.int64))
    persistence.write_persistence_shares(a, tmp_path / "a")
    persistence.write_persistence_shares(b, tmp_path / "b")
    merged = [
        persistence.append_persistence_shares(
            [tmp_path / "a" / f"Transactions-P{i}.data", tmp_path / "b" / f"Transactions-P{i}.data"],
            tmp_path / "m" / f"Transactions-P{i}.data",
        )
        for i in range(3)
    ]
    total = sum(persistence.read_persistence_shares(p)[0] for p in merged)
    assert total.tolist() == list(range(10))
    # holders' passive files serve an active run: same pairs, the active header
    active = persistence.append_persistence_shares(
        [tmp_path / "a" / "Transactions-P1.data", tmp_path / "b" / "Transactions-P1.data"],
        tmp_path / "act" / "Transactions-P1.data", security="active",
    )
    assert active.read_bytes().startswith(persistence.header("active"))
    assert np.array_equal(persistence.read_persistence_shares(active, security="active")[0],
                          persistence.read_persistence_shares(merged[1])[0])
    (tmp_path / "bad.data").write_bytes(b"\x14" + bytes(40))
    with pytest.raises(BundleError, match="bad.data"):
        persistence.append_persistence_shares([tmp_path / "bad.data"], tmp_path / "x.data")


def test_unset_home_is_reported_with_instructions(monkeypatch):
    from fedsyn.engines.mpspdz import MpSpdzEngine

    monkeypatch.delenv("MP_SPDZ_HOME", raising=False)
    with pytest.raises(EngineUnavailableError, match="MP_SPDZ_HOME"):
        MpSpdzEngine()


def test_wrong_home_or_missing_binary_is_reported(tmp_path):

    with pytest.raises(EngineUnavailableError, match="no compile.py"):
        _engine(home=tmp_path)
    (tmp_path / "compile.py").write_text("")
    with pytest.raises(EngineUnavailableError, match="make malicious-rep-ring-party.x"):
        _engine(home=tmp_path, security="active")


def _fake_installation(tmp_path):
    """A 'compile.py' that only records its command line: tests the cache without MP-SPDZ."""
    from fedsyn.engines.mpspdz import runner

    home = tmp_path / "fake-mp-spdz"
    home.mkdir()
    (home / "compile.py").write_text(
        "import sys, pathlib\n"
        "out = pathlib.Path('Programs/Schedules'); out.mkdir(parents=True, exist_ok=True)\n"
        "(out / ('-'.join(a for a in sys.argv[1:] if not a.startswith('-') and a != '64' and a != '3')"
        " + '.sch')).write_text(' '.join(sys.argv[1:]))\n"
    )
    return runner.Installation(home)


def test_compile_cache_is_keyed_on_source_args_and_flags(tmp_path):
    from fedsyn.engines.mpspdz import runner

    inst = _fake_installation(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "prog.mpc").write_text("print_ln('a')\n")
    kw = dict(cache_dir=tmp_path / "cache", source_dir=src)
    first = runner.compile_program(inst, "prog", [1, 2], security="passive", **kw)
    assert not first.cached and first.name == "prog-1-2"
    assert (first.directory / "Programs" / "Schedules" / "prog-1-2.sch").read_text() == "-R 64 -Z 3 prog 1 2"
    assert runner.compile_program(inst, "prog", [1, 2], security="passive", **kw).directory == first.directory
    assert runner.compile_program(inst, "prog", [1, 2], security="passive", **kw).cached
    other_args = runner.compile_program(inst, "prog", [1, 3], security="passive", **kw)
    other_flags = runner.compile_program(inst, "prog", [1, 2], security="active", **kw)
    assert (other_flags.directory / "Programs" / "Schedules" / "prog-1-2.sch").read_text() == "-R 64 prog 1 2"
    (src / "prog.mpc").write_text("print_ln('b')\n")
    other_src = runner.compile_program(inst, "prog", [1, 2], security="passive", **kw)
    (inst.home / "Compiler").mkdir()
    (inst.home / "Compiler" / "types.py").write_text("# MP-SPDZ updated in place\n")
    other_mpspdz = runner.compile_program(inst, "prog", [1, 2], security="passive", **kw)
    dirs = {first.directory, other_args.directory, other_flags.directory, other_src.directory,
            other_mpspdz.directory}
    assert len(dirs) == 5 and not other_src.cached and not other_mpspdz.cached
    assert not any(p.name.startswith(".") for p in (tmp_path / "cache").iterdir())  # no staging left


def test_inputs_are_checked_before_the_parties_start(tmp_path):
    from fedsyn.engines.mpspdz import runner

    pairs = _pairs(np.arange(4, dtype=np.int64))
    persistence.write_persistence_shares(pairs[:2], tmp_path / "Persistence", security="passive")
    with pytest.raises(BundleError, match="Transactions-P2.data: party 2's Persistence file is missing"):
        runner.check_inputs(tmp_path, [0, 1, 2], "passive")
    with pytest.raises(BundleError, match="it has the passive header"):
        runner.check_inputs(tmp_path, [0], "active")
    runner.check_inputs(tmp_path, [0, 1], "passive")
    assert "consistency check failed" in runner.diagnose("Fatal error at p-0:95 (SECSHUFFLE): check hash mismatch")
    assert runner.diagnose("Time = 1.0 seconds") is None


# --------------------------------------------------------------- engine -----
def _holders(values: np.ndarray, labels: np.ndarray, n_labels: int, splits) -> list[ExpressionData]:
    genes = tuple(f"g{j}" for j in range(values.shape[1]))
    names = tuple(f"c{i}" for i in range(n_labels))
    out = []
    for k, rows in enumerate(np.split(np.arange(values.shape[0]), splits)):
        out.append(ExpressionData(values=values[rows], gene_names=genes, sample_ids=tuple(f"s{r}" for r in rows),
                                  labels=labels[rows], label_names=names, source=f"holder{k}"))
    return out


def _hard_inputs(n: int, d: int, n_labels: int, seed: int):
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(5.0, 2.0, size=(n, d)), 1)  # rounding makes ties
    x[:, 0] = 3.25                                       # constant gene
    x[: int(0.6 * n), 1] = 0.0                           # sparse gene: 60 % zeros
    x[:, 2] = -x[:, 2]                                   # negative values
    y = rng.integers(0, n_labels, size=n)
    return x, y


def _assert_exact(meas, x, y, n_labels, frac_bits=16):
    st = reference.bin_statistics(fixedpoint.encode(x, frac_bits), y, n_labels)
    assert np.array_equal(meas.one_way, st.counts)
    assert np.array_equal(meas.label, st.label_counts)
    assert np.array_equal(meas.two_way, st.two_way)
    assert np.array_equal(fixedpoint.encode(meas.bin_means, frac_bits), st.means)


@pytest.mark.mpspdz
@needs_passive
@pytest.mark.parametrize("binning", ["select", "sort"])
def test_passive_matches_reference_on_ties_constant_sparse(binning, tmp_path):
    x, y = _hard_inputs(23, 5, 3, seed=1)  # n = 23: quartiles interpolate (k = 2, 0, 2)
    engine = _engine(security="passive", workdir=tmp_path / "run")
    measured = engine.measure(_holders(x, y, 3, [9]),
                              ProtocolParams(n_labels=3, sigma=0.0, noise=False, binning=binning))
    meas = measured.measurements
    _assert_exact(meas, x, y, 3)
    assert meas.engine == "mp-spdz-passive" and meas.meta["binning"] == binning
    assert measured.stats["mpspdz"]["phases"]["order_statistics"]["mb"] > 0
    # a kept run directory keeps the logs, not the shares: no Persistence files
    # (inputs and output shares), no memory dumps (shares of every intermediate
    # value), and no output opened to any party
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "logs").iterdir()) == [f"party-{i}.log" for i in range(3)]
    assert not list((run / "Player-Data").glob("*Output*"))
    assert not list((run / "Persistence").iterdir())
    assert not list((run / "Player-Data").glob("Memory-*"))


@pytest.mark.mpspdz
@needs_passive
def test_bin_means_of_500_genes_are_exact():
    """Regression: MP-SPDZ's compiler keeps the order of memory accesses of a vector only for its
    first `budget` (1,000) elements. Without a break point after the long division's stores, bin 2's
    means of every gene read 0 from d = 500 on (4d >= 2,000 quotients)."""
    x, y = _hard_inputs(12, 500, 2, seed=9)
    meas = _engine(security="passive").measure(
        _holders(x, y, 2, [5]), ProtocolParams(n_labels=2, sigma=0.0, noise=False)).measurements
    _assert_exact(meas, x, y, 2)


@pytest.mark.mpspdz
@needs_passive
@pytest.mark.parametrize("binning", ["select", "sort"])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_tiny_n_one_holder_per_sample_matches_reference(binning, n):
    rng = np.random.default_rng(n)
    x = np.round(rng.normal(0.0, 2.0, size=(n, 5)), 0)   # heavy ties
    x[:, 0] = 1.5                                         # constant gene
    x[: max(1, int(0.6 * n)), 1] = 0.0                    # sparse gene
    x[:, 2] = -1e6                                        # large negative constant
    x[:, 3] = rng.choice([-2.0, 2.0], size=n)             # two values only
    y = rng.integers(0, 2, size=n)
    holders = _holders(x, y, 2, list(range(1, n)))
    assert len(holders) == n
    meas = _engine(security="passive").measure(
        holders, ProtocolParams(n_labels=2, sigma=0.0, noise=False, binning=binning)
    ).measurements
    _assert_exact(meas, x, y, 2)


@pytest.mark.mpspdz
@needs_passive
@pytest.mark.skipif(not FIXTURE.is_file(), reason="real-data fixture absent")
def test_passive_select_on_real_fixture_columns():
    import pandas as pd

    frame = pd.read_csv(FIXTURE)
    genes = [c for c in frame.columns if c not in ("sample_id", "subtype")][::80]  # 13 genes
    x = frame[genes].to_numpy(dtype=float)
    names, y = np.unique(frame["subtype"].to_numpy(), return_inverse=True)
    meas = _engine(security="passive").measure(
        _holders(x, y, len(names), [30, 70]), ProtocolParams(n_labels=len(names), sigma=0.0, noise=False)
    ).measurements
    _assert_exact(meas, x, y, len(names))


@pytest.mark.mpspdz
@needs_passive
def test_noise_follows_the_plaintext_engine():
    from fedsyn.engines.plaintext import PlaintextEngine
    from fedsyn.noise import GridNoise

    x, y = _hard_inputs(30, 20, 3, seed=2)
    holders = _holders(x, y, 3, [12])
    noisy = _engine(security="passive").measure(holders, ProtocolParams(n_labels=3, sigma=2.0)).measurements
    exact = PlaintextEngine().measure(holders, ProtocolParams(n_labels=3, sigma=0.0, noise=False)).measurements
    err = np.concatenate([(noisy.one_way - exact.one_way).ravel(), (noisy.label - exact.label).ravel(),
                          (noisy.two_way - exact.two_way).ravel()])
    assert err.size == 20 * 4 + 3 + 20 * 4 * 3
    assert np.array_equal(err, np.round(err))                  # integers: on the grid of one count
    assert 1.6 < err.std() < 2.4 and abs(err.mean()) < 0.4     # rounded Irwin-Hall, sigma = 2
    assert np.abs(err).max() <= GridNoise(2.0).pmf()[0][-1]    # inside the exact support
    assert np.array_equal(noisy.bin_means, exact.bin_means)    # paper profile: exact means


def test_each_program_refuses_profiles_it_does_not_implement():
    from fedsyn.engines.mpspdz.engine import edges_program_args, program_args, programs_for

    strict = ProtocolParams(n_labels=2, sigma=0.0, noise=False, profile="strict", value_range=(0.0, 32.0))
    with pytest.raises(ConfigError, match="paper profile.*protocol1_edges"):
        program_args(10, 3, strict)
    with pytest.raises(ConfigError, match="strict and public-edges"):
        edges_program_args("bins", 10, 3, ProtocolParams(n_labels=2, sigma=0.0, noise=False))
    assert [p[0] for p in programs_for(10, 3, strict)] == ["hist", "bins"]
    public = ProtocolParams(n_labels=2, sigma=0.0, noise=False, profile="public-edges", value_range=(0.0, 32.0),
                            edges=((1.0, 2.0, 3.0),) * 3)
    (only,) = programs_for(10, 3, public)
    assert only[0] == "bins" and only[2] == programs_for(10, 3, strict)[1][2]  # one compiled phase 2 for both
    assert "m" not in "".join(map(str, programs_for(10, 3, strict)[1][2][1:]))
    assert any(str(a).startswith("m") for a in edges_program_args("hist", 10, 3, replace_range(strict, -4.0)))


def replace_range(params, lo):
    from dataclasses import replace

    return replace(params, value_range=(lo, 32.0))


# --------------------------------------------- strict and public-edges ------
def _edge_case(n: int, d: int, seed: int):
    """Values with clipping at both ends, a constant gene and a sparse one at the lower bound."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(8, 4, size=(n, d)), 2)
    x[:4, 0] = -40.0       # below the value range
    x[4:7, 1] = 90.0       # above it
    x[7, 1] = 32.0         # exactly hi: clipped to hi - 1 ulp
    x[:, 2] = 7.25         # constant
    x[: n // 2, 3] = 0.0   # sparse, at lo
    y = rng.integers(0, 3, size=n)
    edges = tuple((float(a), float(b), float(c)) for a, b, c in np.sort(rng.uniform(2, 14, size=(d, 3)), axis=1))
    return x, y, edges


def _edge_reference(xf, y, n_labels, params):
    from fedsyn.edges import bin_geometry, edges_from_histogram, public_edges_fp

    hist = reference.histograms(xf, params) if params.profile == "strict" else None
    edges = edges_from_histogram(hist, params) if hist is not None else public_edges_fp(params)
    geometry = bin_geometry(edges, params)
    return hist, geometry, reference.edge_statistics(xf, y, n_labels, geometry, params)


@pytest.fixture
def unclipped_holders(monkeypatch):
    """Holders that do not clip before sharing: the MPC's own clip to the value range is what is tested."""
    from fedsyn.engines.mpspdz import engine

    real = engine.encode_holders
    monkeypatch.setattr(engine, "encode_holders", lambda holders, **kw: real(holders, **dict(kw, clip=None)))


@pytest.mark.mpspdz
@needs_passive
@pytest.mark.parametrize("profile", ["strict", "public-edges"])
def test_edge_profiles_match_reference_and_rep3_bit_for_bit(profile, unclipped_holders, tmp_path):
    from fedsyn.engines.rep3.protocol1 import run_in_process

    x, y, edges = _edge_case(41, 7, seed=3)
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False, profile=profile, value_range=(0.0, 32.0),
                            hist_bits=5, edges=edges if profile == "public-edges" else None)
    engine = _engine(security="passive", workdir=tmp_path / "run")
    opened, report, _ = engine.open_outputs(_holders(x, y, 3, [15]), params)
    xf = fixedpoint.encode(x)
    hist, geometry, ref = _edge_reference(xf, y, 3, params)
    assert set(opened) == {"label", "two_way", "sums"} | ({"histogram"} if profile == "strict" else set())
    if hist is not None:
        np.testing.assert_array_equal(opened["histogram"], hist)   # phase 1, opened to every party
    np.testing.assert_array_equal(opened["label"], ref.label_counts)
    np.testing.assert_array_equal(opened["two_way"], ref.two_way)
    np.testing.assert_array_equal(opened["sums"], reference.round_to_unit(ref.sums, geometry.unit_bits))
    # the embedded engine on the same pooled data: the same numbers
    rep3, _ = run_in_process([xf[:15], xf[15:]], [reference.label_onehot(y[:15], 3),
                                                   reference.label_onehot(y[15:], 3)], params, seed=1)
    for name in opened:
        np.testing.assert_array_equal(opened[name], rep3[name])
    assert ("hist_cells" in report.phases) == (profile == "strict") and report.phases["comparison_bits"]["mb"] > 0
    # only the phase-1 histogram was ever opened to a party, and a kept run directory keeps no shares
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "Player-Data").glob("*Output*")) == (
        [f"Binary-Output-P{i}-0" for i in range(3)] if profile == "strict" else [])
    assert not list((run / "Persistence").iterdir())


@pytest.mark.mpspdz
@needs_passive
def test_strict_measurements_equal_rep3s():
    """The decoded measurements (edges, histogram, bin representatives) of both engines agree."""
    from fedsyn.engines.rep3.engine import Rep3Engine

    x, y, _ = _edge_case(30, 5, seed=5)
    holders = _holders(x, y, 3, [11])
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False, profile="strict", value_range=(0.0, 32.0))
    mp = _engine(security="passive").measure(holders, params).measurements
    r3 = Rep3Engine().measure(holders, params).measurements
    for name in ("label", "two_way", "bin_means", "edges", "histogram"):
        np.testing.assert_array_equal(getattr(mp, name), getattr(r3, name))
    assert mp.meta["hist_bits"] == r3.meta["hist_bits"] and mp.profile == "strict"


@pytest.mark.mpspdz
@needs_passive
def test_strict_noise_is_on_every_grid_and_inside_its_support():
    from dataclasses import replace

    from fedsyn.edges import bin_geometry, edges_from_histogram
    from fedsyn.noise import GridNoise

    rng = np.random.default_rng(9)
    n, d = 60, 6
    x = rng.normal(8, 3, size=(n, d))
    y = rng.integers(0, 2, size=n)
    params = ProtocolParams(n_labels=2, sigma=1.5, hist_sigma=2.0, sum_sigma=20.0, profile="strict",
                            value_range=(0.0, 32.0), hist_bits=5)
    opened, _, _ = _engine(security="passive").open_outputs(_holders(x, y, 2, [25]), params)
    xf = fixedpoint.encode(np.clip(x, 0.0, 32.0))
    exact = replace(params, noise=False, sigma=0.0, hist_sigma=0.0, sum_sigma=0.0)
    dev_h = opened["histogram"] - reference.histograms(xf, exact)
    assert 0 < np.abs(dev_h).max() <= GridNoise(2.0).pmf()[0][-1]
    assert 1.2 < dev_h.std() < 2.8
    # phase 2 used the edges of the NOISY histogram
    geometry = bin_geometry(edges_from_histogram(opened["histogram"], params), params)
    ref = reference.edge_statistics(xf, y, 2, geometry, params)
    dev_c = np.concatenate([(opened["two_way"] - ref.two_way).ravel(), opened["label"] - ref.label_counts])
    assert 0 < np.abs(dev_c).max() <= GridNoise(1.5).pmf()[0][-1] and 0.9 < dev_c.std() < 2.1
    dev_s = opened["sums"] - reference.round_to_unit(ref.sums, geometry.unit_bits)
    assert 0 < np.abs(dev_s).max() <= GridNoise(20.0).pmf()[0][-1]
    assert 8 < dev_s.std() < 32


@pytest.mark.mpspdz
@needs_passive
def test_strict_of_500_genes_is_exact():
    """MP-SPDZ orders a vector's memory accesses only for its first 1,000 elements: the break points
    after the large stores of both phases are what keeps 500 genes x 32 cells and 500 x 4 sums exact."""
    x, y, _ = _edge_case(9, 500, seed=11)
    params = ProtocolParams(n_labels=2, sigma=0.0, noise=False, profile="strict", value_range=(0.0, 32.0))
    y = y % 2
    opened, _, _ = _engine(security="passive").open_outputs(_holders(x, y, 2, [4]), params)
    hist, geometry, ref = _edge_reference(fixedpoint.encode(np.clip(x, 0.0, 32.0)), y, 2, params)
    np.testing.assert_array_equal(opened["histogram"], hist)
    np.testing.assert_array_equal(opened["two_way"], ref.two_way)
    np.testing.assert_array_equal(opened["sums"], reference.round_to_unit(ref.sums, geometry.unit_bits))


@pytest.mark.mpspdz
@pytest.mark.slow
@needs_active
@pytest.mark.parametrize("profile", ["strict"])
def test_active_strict_matches_reference(profile):
    x, y, _ = _edge_case(16, 4, seed=13)
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False, profile=profile, value_range=(0.0, 32.0),
                            hist_bits=3)
    opened, _, _ = _engine(security="active").open_outputs(_holders(x, y, 3, [7]), params)
    hist, geometry, ref = _edge_reference(fixedpoint.encode(np.clip(x, 0.0, 32.0)), y, 3, params)
    np.testing.assert_array_equal(opened["histogram"], hist)
    np.testing.assert_array_equal(opened["label"], ref.label_counts)
    np.testing.assert_array_equal(opened["two_way"], ref.two_way)
    np.testing.assert_array_equal(opened["sums"], reference.round_to_unit(ref.sums, geometry.unit_bits))


@pytest.mark.mpspdz
@needs_passive
def test_rep3_pairs_written_as_persistence_round_trip_through_the_program(tmp_path):
    from fedsyn.engines.mpspdz import engine as eng
    from fedsyn.engines.mpspdz import outputs, runner

    rep3 = pytest.importorskip("fedsyn.engines.rep3.sharing")
    x, y = _hard_inputs(23, 5, 3, seed=1)
    rows = _rows(x, y, 3)
    inst = runner.find_installation()
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False)
    compiled = runner.compile_program(inst, "protocol1", eng.program_args(23, 5, params))
    work = runner.prepare_workspace(inst, tmp_path / "run", compiled)
    persistence.write_persistence_shares(list(rep3.share_array(rows)), work / "Persistence")
    runner.run_parties(inst, work, compiled.name, security="passive", timeout=120)
    layout = OutputLayout(5, 3)
    pairs = {i: outputs.read_party_outputs(work / "Persistence", i, n=23, layout=layout, security="passive")
             for i in range(3)}
    st = reference.bin_statistics(fixedpoint.encode(x), y, 3)
    opened = layout.split(outputs.open_party_outputs(pairs, layout))
    assert np.array_equal(opened["one_way"], st.counts)
    assert np.array_equal(opened["means"], st.means)


@pytest.mark.mpspdz
@pytest.mark.slow
@needs_active
def test_active_run_is_correct_and_a_flipped_byte_aborts(tmp_path):
    from fedsyn.engines.mpspdz import engine as eng
    from fedsyn.engines.mpspdz import outputs, runner

    x, y = _hard_inputs(12, 3, 2, seed=4)
    rows = _rows(x, y, 2)
    inst = runner.find_installation()
    params = ProtocolParams(n_labels=2, sigma=0.0, noise=False)
    compiled = runner.compile_program(inst, "protocol1", eng.program_args(12, 3, params),
                                      security="active")
    st = reference.bin_statistics(fixedpoint.encode(x), y, 2)
    for tamper in (False, True):
        work = runner.prepare_workspace(inst, tmp_path / f"run{tamper}", compiled)
        files = persistence.write_persistence_shares(_pairs(rows), work / "Persistence",
                                                     security="active")
        if not tamper:
            runner.run_parties(inst, work, compiled.name, security="active", timeout=120)
            layout = OutputLayout(3, 2)
            pairs = {i: outputs.read_party_outputs(work / "Persistence", i, n=12, layout=layout,
                                                   security="active") for i in range(3)}
            opened = layout.split(outputs.open_party_outputs(pairs, layout))
            assert np.array_equal(opened["one_way"], st.counts)
            assert np.array_equal(opened["label"], st.label_counts)
            assert np.array_equal(opened["two_way"], st.two_way)
            assert np.array_equal(opened["means"], st.means)
        else:
            data = bytearray(files[1].read_bytes())
            data[38 + 16 * 5 + 3] ^= 0x10  # one byte of one share of party 1
            files[1].write_bytes(bytes(data))
            with pytest.raises(ProtocolError, match="consistency check failed") as info:
                runner.run_parties(inst, work, compiled.name, security="active", timeout=120)
            assert all(f"--- party {i}" in str(info.value) for i in range(3))


def _processes_in(directory: Path) -> list[int]:
    """Pids of this user's processes whose working directory is ``directory`` (Linux /proc)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if Path(os.readlink(proc / "cwd")) == directory:
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


@pytest.mark.mpspdz
@needs_passive
@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs Linux /proc")
def test_timeout_kills_the_parties_and_shows_their_logs(tmp_path):
    from fedsyn.engines.mpspdz import engine as eng
    from fedsyn.engines.mpspdz import runner

    inst = runner.find_installation()
    params = ProtocolParams(n_labels=2, sigma=0.0, noise=False)
    compiled = runner.compile_program(inst, "protocol1", eng.program_args(12, 3, params))
    work = runner.prepare_workspace(inst, tmp_path / "run", compiled).resolve()
    rows = _rows(np.ones((12, 3)), np.arange(12) % 2, 2)
    persistence.write_persistence_shares(_pairs(rows), work / "Persistence")
    # parties 0 and 1 only: they wait for party 2 until the timeout
    with pytest.raises(ProtocolError, match=r"timeout after 1\.5 s \(party 0: killed by signal 9, party 1: ") as info:
        runner.run_parties(inst, work, compiled.name, security="passive", parties=[0, 1], timeout=1.5)
    assert f"--- party 1 ({work}/logs/party-1.log)" in str(info.value)
    assert _processes_in(work) == []


@pytest.mark.mpspdz
@needs_passive
def test_released_counts_of_neighbouring_datasets_overlap():
    """The privacy audit on MP-SPDZ's real path: integer outputs whose supports overlap for c and c + 1."""
    from fedsyn import audit

    (x, y), (x1, y1) = _neighbours(n=24, d=200, seed=12)  # every released cell repeats d times
    params = ProtocolParams(n_labels=2, sigma=8.0)
    engine = _engine(security="passive")
    a = engine.measure(_holders(x, y, 2, [10]), params).measurements
    b = engine.measure(_holders(x1, y1, 2, [10]), params).measurements
    for name in ("one_way", "two_way"):
        for k in range(4):
            va, vb = getattr(a, name)[:, k].ravel(), getattr(b, name)[:, k].ravel()
            assert np.array_equal(va, np.round(va))
            assert audit.support_overlap(va, vb) > 0.9, (name, k)


@pytest.mark.mpspdz
@needs_passive
def test_strict_released_families_of_neighbouring_datasets_overlap():
    """The privacy audit on MP-SPDZ's strict path: histograms, tables and bin sums of D and D + one record."""
    from fedsyn import audit

    (x, y), (x1, y1) = _neighbours(n=24, d=200, seed=12)  # every released cell repeats d times
    params = ProtocolParams(n_labels=2, sigma=8.0, hist_sigma=8.0, sum_sigma=8.0 * 16, profile="strict",
                            value_range=(0.0, 16.0), hist_bits=4)
    engine = _engine(security="passive")
    a, _, _ = engine.open_outputs(_holders(x, y, 2, [10]), params)
    b, _, _ = engine.open_outputs(_holders(x1, y1, 2, [10]), params)
    for name, cells in (("histogram", range(16)), ("two_way", range(4))):
        for k in cells:
            va, vb = a[name][:, k].ravel(), b[name][:, k].ravel()
            assert va.dtype == np.int64 and audit.support_overlap(va, vb) > 0.85, (name, k)
    for k in range(4):  # sums: on the full integer grid (no lattice) with overlapping ranges
        va, vb = a["sums"][:, k].ravel(), b["sums"][:, k].ravel()
        assert np.gcd.reduce(np.diff(np.sort(va))) == 1 and np.gcd.reduce(np.diff(np.sort(vb))) == 1, k
        assert np.mean((va >= vb.min()) & (va <= vb.max())) > 0.9, k


# ------------------------------------------------------------ factor model --
def _factor_params(profile, *, noise=False):
    from test_factor import params

    return params(profile, noise=noise)


@pytest.mark.mpspdz
@needs_passive
@pytest.mark.parametrize("profile", ["paper", "strict"])
def test_factor_model_matches_reference_and_rep3_bit_for_bit(profile, tmp_path):
    """protocol1_factor.mpc after either profile's program: the opened Gram entries, the plan every party
    computes from them and phase B's tables equal the plaintext reference and the embedded engine's."""
    from test_factor import L, _reference, modules

    from fedsyn.engines.rep3.protocol1 import run_in_process

    x, y = modules(seed=3)
    xf = fixedpoint.encode(x)
    params = _factor_params(profile)
    opened, report, _ = _engine(security="passive", workdir=tmp_path / "run").open_outputs(
        _holders(x, y, L, [100]), params)
    _, (gram, plan, extra) = _reference(xf, y, params, np.random.default_rng(0))
    assert plan["found"] and opened["factor"] == plan
    np.testing.assert_array_equal(opened["gram"], gram)
    assert set(extra) == {"factor_label", "gene_factor"} and "two_way_again" not in opened
    for name, value in extra.items():
        np.testing.assert_array_equal(opened[name], value)
    rep3, _ = run_in_process([xf[:100], xf[100:]], [reference.label_onehot(y[:100], L),
                                                     reference.label_onehot(y[100:], L)], params, seed=1)
    for name in ("gram", "factor_label", "gene_factor", "two_way", "label"):
        np.testing.assert_array_equal(opened[name], rep3[name])
    assert {"gram", "factor_levels", "factor_tables"} <= set(report.phases)
    assert "protocol1_factor-levels" in report.program and "again" not in report.program
    # a kept run directory keeps no shares (the comparison bits included)
    assert not list((tmp_path / "run" / "Persistence").iterdir())


@pytest.mark.mpspdz
@pytest.mark.slow
@needs_active
def test_active_factor_model_matches_reference():
    """The factor phases under the malicious protocol (checked openings of the phase-A release)."""
    from test_factor import L, _reference, modules

    x, y = modules(n=60, d=6, seed=3)
    params = _factor_params("strict")
    opened, report, _ = _engine(security="active").open_outputs(_holders(x, y, L, [25]), params)
    _, (gram, plan, extra) = _reference(fixedpoint.encode(x), y, params, np.random.default_rng(0))
    assert plan["found"] and opened["factor"] == plan and "protocol1_factor-levels" in report.program
    np.testing.assert_array_equal(opened["gram"], gram)
    for name, value in extra.items():
        np.testing.assert_array_equal(opened[name], value)


@pytest.mark.mpspdz
@needs_passive
def test_factor_model_without_a_factor_measures_the_tables_again(monkeypatch):
    """No factor above the noise: phase ``again`` measures the (gene, label) tables a second time."""
    from fedsyn import factor as factor_mod
    from fedsyn.measurements import decode_outputs

    # The gate is a quantile of the noise's null spectrum: at 6 genes pure noise passes it in about 1 run of 16
    # (MP-SPDZ's noise cannot be seeded), so the public plan step is made to say "no factor" outright.
    monkeypatch.setattr(factor_mod, "FACTOR_EDGE_MARGIN", 1e12)
    rng = np.random.default_rng(5)
    x = rng.normal(6, 1, size=(90, 6))
    y = rng.integers(0, 3, 90)
    params = ProtocolParams(n_labels=3, sigma=3.0, gram_sigma=5000.0, pair_sigma=3.0, model="factor")
    opened, report, _ = _engine(security="passive").open_outputs(_holders(x, y, 3, [40]), params)
    assert opened["factor"]["found"] is False and "protocol1_factor-again" in report.program
    assert "gene_factor" not in opened and "levels" not in report.program
    exact = reference.bin_statistics(fixedpoint.encode(x), y, 3).two_way
    dev = opened["two_way_again"] - exact
    assert 0 < np.abs(dev).max() <= GridNoise(3.0).pmf()[0][-1]
    m = decode_outputs(opened, gene_names=tuple("abcdef"), label_names=tuple("xyz"), params=params,
                       engine="mp-spdz", gram=opened.pop("gram"), factor=opened.pop("factor"))
    assert m.gene_factor is None and m.two_way_sigma is not None and m.two_way_sigma < params.sigma


@pytest.mark.mpspdz
@needs_passive
def test_factor_noise_is_on_the_grid_and_inside_its_support():
    """Noise on: the Gram entries and phase B's tables lie within the accounted support of their exact values
    (the tables under the plan the parties computed from the noisy phase-A release)."""
    from test_factor import L, modules

    from fedsyn import factor as fac

    x, y = modules(n=300, d=16, seed=4)
    xf = fixedpoint.encode(x)
    params = _factor_params("paper", noise=True)
    opened, _, _ = _engine(security="passive").open_outputs(_holders(x, y, L, [120]), params)
    bins = reference.bin_statistics(xf, y, L).bins
    plan = fac.FactorPlan.from_public(opened["factor"])
    assert plan.found
    dev_g = opened["gram"] - reference.gram_upper(bins)
    assert 0 < np.abs(dev_g).max() <= GridNoise(params.gram_sigma).pmf()[0][-1]
    levels = reference.factor_levels(bins, plan.loadings_fp, plan.thresholds_fp)
    factor_label, gene_factor = reference.factor_tables(bins, y, levels, L)
    dev_f = opened["factor_label"] - factor_label
    dev_p = opened["gene_factor"] - gene_factor
    assert 0 < np.abs(dev_f).max() <= GridNoise(params.sigma).pmf()[0][-1]
    assert 0 < np.abs(dev_p).max() <= GridNoise(params.pair_sigma).pmf()[0][-1]
    assert 2.5 < dev_p.std() < 5.5  # sigma 4


@pytest.mark.mpspdz
@needs_passive
def test_factor_releases_of_neighbouring_datasets_overlap(monkeypatch):
    """The privacy audit on MP-SPDZ's factor path: the Gram entries of D and D + one record overlap on the
    full integer grid, and phase B's (gene, factor) cells overlap under one public plan."""
    from fedsyn import audit
    from fedsyn import factor as fac
    from fedsyn.engines.mpspdz import engine as mpengine

    (x, y), (x1, y1) = _neighbours(n=24, d=200, seed=12)
    d = x.shape[1]
    params = ProtocolParams(n_labels=2, sigma=8.0, gram_sigma=300.0, pair_sigma=8.0, model="factor",
                            factor_anchors=60)
    anchors = fac.anchor_genes(d, 60)
    loadings = np.zeros(d, np.int64)
    loadings[anchors] = 500
    plan = fac.FactorPlan(True, loadings, np.array([-20000, 0, 20000]), 1.0, 0.0)
    monkeypatch.setattr(mpengine, "factor_plan", lambda *a, **k: plan)  # one public plan for both datasets
    engine = _engine(security="passive")
    a, _, _ = engine.open_outputs(_holders(x, y, 2, [10]), params)
    b, _, _ = engine.open_outputs(_holders(x1, y1, 2, [10]), params)
    ga, gb = a["gram"], b["gram"]
    assert ga.dtype == np.int64 and ga.size == 60 * 59 // 2
    assert np.gcd.reduce(np.diff(np.sort(ga))) == 1 and np.gcd.reduce(np.diff(np.sort(gb))) == 1  # no lattice
    assert np.mean((ga >= gb.min()) & (ga <= gb.max())) > 0.9 and np.mean((gb >= ga.min()) & (gb <= ga.max())) > 0.9
    for k in range(4):
        for m in range(4):
            va, vb = a["gene_factor"][:, k, m], b["gene_factor"][:, k, m]
            assert audit.support_overlap(va, vb) > 0.85, (k, m)
