"""The factor model of co-expression (fedsyn.factor): reference, rep3, accounting, privacy, release, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_privacy_audit import _neighbours  # genes that are copies of one column, and the same plus one record

from fedsyn import accounting as acc
from fedsyn import audit, factor, reference
from fedsyn.engines.rep3 import Party, reconstruct, run_parties, share_array
from fedsyn.engines.rep3.protocol1 import run_in_process
from fedsyn.engines.rep3.runtime import ring_matmul
from fedsyn.errors import ConfigError, InputError, ProtocolError
from fedsyn.fixedpoint import encode
from fedsyn.noise import GridNoise
from fedsyn.params import ProtocolParams

L = 3


def modules(n=240, d=16, *, strength=1.5, seed=0):
    """Values with one co-expressed module (genes 0..d/2-1 load on a latent factor), the label moving the rest."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, L, n)
    f = rng.normal(size=n)
    load = np.zeros(d)
    load[: d // 2] = strength
    de = np.zeros(d)
    de[d // 2:] = 0.8  # the label moves the other genes (a module aligned with the label effect would be
    # partly projected out with the class directions, fedsyn.factor.within_class_projection)
    x = 6 + de[None, :] * y[:, None] + f[:, None] * load[None, :] + rng.normal(size=(n, d))
    return x, y


def params(profile="paper", *, noise=False, **kw):
    extra = {"value_range": (0.0, 16.0), "hist_bits": 4} if profile == "strict" else {}
    if noise:
        extra.update(sigma=4.0, gram_sigma=40.0, pair_sigma=4.0)
        if profile == "strict":
            extra.update(hist_sigma=4.0, sum_sigma=64.0)
    else:
        extra.update(sigma=0.0, noise=False)
    return ProtocolParams(n_labels=L, profile=profile, model="factor", **extra, **kw)


def _reference(x_fp, y, p, rng):
    """Exact phase-A tables and the reference's factor release for the profile's bins."""
    if p.profile == "paper":
        st = reference.bin_statistics(x_fp, y, L)
    else:
        from fedsyn.edges import bin_geometry, edges_from_histogram

        xc = reference.clip_to_range(x_fp, p)
        geo = bin_geometry(edges_from_histogram(reference.noisy_histograms(xc, p, rng=rng), p), p)
        st = reference.edge_statistics(xc, y, L, geo, p)
    opened = {"two_way": st.two_way, "label": st.label_counts}
    return st, reference.factor_outputs(st.bins, y, st.two_way, opened, p, rng=rng)


# ------------------------------------------------------------- arithmetic ---
@pytest.mark.parametrize("shape", [(600, 420, 600), (5, 7, 3), (1, 1089, 2)])
def test_ring_matmul_is_bit_identical_to_integer_matmul(shape):
    m, k, n = shape
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**63, (m, k), dtype=np.int64).view(np.uint64) * np.uint64(3)
    b = rng.integers(0, 2**63, (k, n), dtype=np.int64).view(np.uint64) * np.uint64(5)
    assert np.array_equal(ring_matmul(a, b), np.matmul(a, b))


def test_anchor_genes_are_evenly_spaced_public_columns():
    assert np.array_equal(factor.anchor_genes(5, 200), np.arange(5))
    a = factor.anchor_genes(978, 200)
    assert a.size == 200 and a[0] == 0 and a[-1] == 977 and np.all(np.diff(a) >= 4)
    with pytest.raises(InputError):
        factor.anchor_genes(10, 0)


# ------------------------------------------------------------ public step ---
def test_plan_finds_the_planted_module_and_splits_records_into_four_levels():
    x, y = modules()
    st = reference.bin_statistics(encode(x), y, L)
    plan = factor.plan_factor(reference.gram_upper(st.bins), st.two_way, st.label_counts, gram_sigma=0.0)
    assert plan.found and plan.eigenvalue > 0
    load = np.abs(plan.loadings_fp)
    assert load[:8].min() > 3 * load[8:].max()  # the module's genes carry the factor
    levels = reference.factor_levels(st.bins, plan.loadings_fp, plan.thresholds_fp)
    share = np.bincount(levels, minlength=4) / levels.size
    # normal quartiles of z (public rule): a sum of 8 correlated 4-valued scores is flatter than a normal,
    # so the outer levels get more than a quarter, but every level is well populated
    assert np.all((share > 0.1) & (share < 0.4)), share


def test_plan_without_co_expression_under_noise_finds_no_factor():
    rng = np.random.default_rng(2)
    n, d = 300, 30
    b = rng.integers(0, 4, size=(n, d))
    y = rng.integers(0, L, n)
    two_way = reference.attr_label_tables(b, y, L)
    sigma = 1000.0  # the DP noise dominates the entries' own sampling spread (5 sqrt(n) = 87)
    g = reference.gram_upper(b) + rng.normal(0, sigma, size=d * (d - 1) // 2)
    plan = factor.plan_factor(g, two_way, np.bincount(y, minlength=L), gram_sigma=sigma)
    assert not plan.found and plan.eigenvalue < plan.edge
    assert not plan.loadings_fp.any()


def test_servers_adopt_server_0s_plan_and_refuse_a_different_one():
    x, y = modules()
    st = reference.bin_statistics(encode(x), y, L)
    plan = factor.plan_factor(reference.gram_upper(st.bins), st.two_way, st.label_counts, gram_sigma=0.0)
    near = factor.FactorPlan(True, plan.loadings_fp + 1, plan.thresholds_fp, plan.eigenvalue, plan.edge)
    assert factor.agree(near, plan) is plan  # a few units of floating-point difference between hosts
    far = factor.FactorPlan(True, plan.loadings_fp + 50, plan.thresholds_fp, plan.eigenvalue, plan.edge)
    with pytest.raises(ProtocolError, match="different factor loadings"):
        factor.agree(far, plan)
    none = factor.FactorPlan(False, 0 * plan.loadings_fp, plan.thresholds_fp, plan.eigenvalue, 10 * plan.eigenvalue)
    with pytest.raises(ProtocolError, match="whether a factor was found"):
        factor.agree(none, plan)
    assert factor.FactorPlan.from_public(plan.to_public()).digest() == plan.digest()


# ------------------------------------------------------------ rep3 engine ---
@pytest.mark.parametrize("profile", ["paper", "strict"])
def test_rep3_factor_release_equals_the_reference_bit_for_bit(profile):
    x, y = modules(seed=3)
    x_fp = encode(x)
    p = params(profile)
    onehot = reference.label_onehot(y, L)
    out, stats = run_in_process([x_fp[:100], x_fp[100:]], [onehot[:100], onehot[100:]], p, seed=4)
    _, (gram, plan, extra) = _reference(x_fp, y, p, np.random.default_rng(0))
    assert plan["found"] and out["factor"] == plan
    assert np.array_equal(out["gram"], gram)
    assert set(extra) == {"factor_label", "gene_factor"}
    for name, value in extra.items():
        assert np.array_equal(out[name], value), name
    assert out["gene_factor"].sum(axis=(1, 2)).tolist() == [len(y)] * x.shape[1]
    assert {"gram", "factor"} <= set(stats[0]["phases"])


def test_rep3_without_a_factor_measures_the_gene_label_tables_again():
    rng = np.random.default_rng(5)
    x = rng.normal(6, 1, size=(90, 6))  # no co-expression; the Gram noise hides everything
    y = rng.integers(0, L, 90)
    p = ProtocolParams(n_labels=L, sigma=3.0, gram_sigma=5000.0, pair_sigma=3.0, model="factor")
    out, _ = run_in_process([encode(x)], [reference.label_onehot(y, L)], p, seed=6)
    assert out["factor"]["found"] is False
    assert "two_way_again" in out and "gene_factor" not in out
    exact = reference.bin_statistics(encode(x), y, L).two_way
    assert np.abs(out["two_way_again"] - exact).max() <= 6 * 3.0 + 1  # Irwin-Hall noise is bounded
    from fedsyn.measurements import decode_outputs

    m = decode_outputs(out, gene_names=tuple("abcdef"), label_names=tuple("xyz"), params=p, engine="rep3",
                       gram=out.pop("gram"), factor=out.pop("factor"))
    assert m.gene_factor is None and m.two_way_sigma is not None and m.two_way_sigma < p.sigma


# ------------------------------------------------------------- accounting ---
def test_accounting_families_of_the_factor_model():
    d = 300
    t = {f.name: f for f in acc.release_templates(n_genes=d, n_labels=L, profile="paper", model="factor")}
    assert t["counts"].tables == 2 * d + 2 and t["pair"].tables == d
    assert t["gram"].tables == 200 * 199 // 2 and t["gram"].shift == factor.GRAM_SHIFT
    s = {f.name: f for f in acc.release_templates(n_genes=d, n_labels=L, profile="strict", model="factor")}
    assert set(s) == {"histogram", "counts", "bin_sums", "gram", "pair"} and s["counts"].tables == d + 2
    plan = acc.plan_privacy(10, 1e-5, n_genes=40, n_labels=L, profile="strict", model="factor")
    assert plan.epsilon_spent <= 10 and {f.name for f in plan.families} >= {"gram", "pair"}
    p = ProtocolParams(n_labels=L, profile="strict", model="factor", value_range=(0.0, 16.0), n_genes=40,
                       **ProtocolParams.sigmas_from_plan(plan))
    assert acc.plan_for_params(p, n_genes=40).epsilon_spent == pytest.approx(plan.epsilon_spent, rel=1e-3)


def test_factor_model_keeps_about_the_stars_noise_on_the_gene_label_tables():
    # DE-TPR follows the (gene, label) tables' noise alone (docs/coexpression.md, "Measured"): the factor
    # model's Gram matrix and (gene, factor) tables are paid mostly from the histograms and bin sums; the
    # earlier split gave these tables 1.31 times the star's sigma and cost 0.04 of DE-TPR at epsilon 10
    star = acc.plan_privacy(10, 1e-5, n_genes=40, n_labels=L, profile="strict")
    fplan = acc.plan_privacy(10, 1e-5, n_genes=40, n_labels=L, profile="strict", model="factor")
    assert fplan.family("counts").sigma < 1.06 * star.family("counts").sigma
    assert fplan.family("histogram").sigma > star.family("histogram").sigma


def test_release_keeps_a_gene_factor_association_that_passes_the_gate_unshrunk():
    # consistent tables with one (gene, factor) linear-by-linear association 2.5 noise sds strong in every gene:
    # the fit keeps it (James-Stein in the warm start shrank it to 0.88 of itself and cost within-class recall)
    from fedsyn import release
    from fedsyn.measurements import NoisyMeasurements

    d, n, sigma = 200, 1000, 20.0
    uv = np.outer(np.arange(4) - 1.5, np.arange(4) - 1.5)
    pair = np.full((4, 4), n / 16) + 2.5 * sigma / np.sqrt((uv**2).sum()) * uv
    m = NoisyMeasurements(
        gene_names=tuple(f"g{i}" for i in range(d)), label_names=("a", "b"), n_records=n, one_way=None,
        label=np.full(2, n / 2), two_way=np.full((d, 4, 2), n / 8), bin_means=np.tile(np.arange(4.0), (d, 1)),
        sigma=sigma, model="factor", factor_label=np.full((4, 2), n / 8), gene_factor=np.repeat(pair[None], d, 0),
        pair_sigma=sigma)
    fitted = release.fit(m).tree_fit.pair()[:d, :4, :4]
    kept = np.einsum("gij,ij->g", fitted - n / 16, uv) / np.sum((pair - n / 16) * uv)
    assert np.all(np.abs(kept - 1) < 0.02), kept[:3]


def test_a_star_plan_does_not_cover_factor_parameters():
    from fedsyn.params import RunParams
    from fedsyn.serving import check_run_params

    d = 12
    star = acc.plan_privacy(10, 1e-5, n_genes=d, n_labels=L, profile="paper")
    fplan = acc.plan_privacy(10, 1e-5, n_genes=d, n_labels=L, profile="paper", model="factor")
    p = ProtocolParams(n_labels=L, model="factor", n_genes=d, **ProtocolParams.sigmas_from_plan(fplan))

    class _M:
        n_genes, n_labels = d, L

    class _B:
        manifest = _M()

    assert check_run_params(RunParams(p, fplan), [_B()]) is fplan
    with pytest.raises(ConfigError, match="does not describe what these parameters release"):
        check_run_params(RunParams(p, star), [_B()])


def test_noise_on_needs_the_factor_noise():
    with pytest.raises(ConfigError, match="gram_sigma"):
        ProtocolParams(n_labels=L, sigma=3.0, model="factor", pair_sigma=2.0)
    with pytest.raises(ConfigError, match="Unknown model"):
        ProtocolParams(n_labels=L, sigma=3.0, model="tree")


def test_mpspdz_runs_the_factor_phases_after_the_profile_program():
    """The factor model appends protocol1_factor.mpc's phases and makes the profile's program keep its
    comparison bits; the star model's programs (and so their compiled bytecode and digests) are unchanged."""
    from dataclasses import replace

    from fedsyn.engines.mpspdz import engine as mp

    for profile, last in (("paper", "paper"), ("strict", "bins")):
        p = params(profile)
        runs = mp.programs_for(100, 10, p)
        star = mp.programs_for(100, 10, replace(p, model="star", gram_sigma=0.0, pair_sigma=0.0))
        assert [ph for ph, _, _ in runs] == [ph for ph, _, _ in star] + ["gram", "levels", "again"]
        profile_args = dict((ph, a) for ph, _, a in runs)[last]
        assert profile_args[-1] in (1, "1") and profile_args[:-1] == dict((ph, a) for ph, _, a in star)[last]
        assert {prog for ph, prog, _ in runs[-3:]} == {"protocol1_factor"}
    # positions: the comparison bits after the profile's outputs, phase B after the bits
    p = params("paper")
    off = mp._factor_offsets(100, 10, p)
    assert off["bits"] == 100 * (10 + L) + (4 * 10 + L + 4 * 10 * L + 4 * 10)
    assert off["out"] == off["bits"] + 3 * 100 * 10
    # the compiled comparison width holds every plan's z - t
    plan = factor.FactorPlan(True, np.full(10, 1 << factor.LOADING_FRAC_BITS, np.int64), np.array([-1, 0, 1]),
                             1.0, 0.0)
    assert plan.compare_bits <= mp.factor_compare_bits(10)
    with pytest.raises(ProtocolError, match="level comparisons"):
        mp.factor_public_input("levels", 10, p, replace(plan, thresholds_fp=np.array([0, 0, 1 << 40])))


# ---------------------------------------------------------------- privacy ---
def test_rep3_gram_entries_of_neighbouring_datasets_overlap():
    """The Gram family on the real protocol: integers on the full grid, ranges overlapping (shift <= 9)."""
    (x0, y0), (x1, y1) = _neighbours(n=30, d=60)
    p = ProtocolParams(n_labels=2, sigma=8.0, gram_sigma=300.0, pair_sigma=8.0, model="factor")
    out0, _ = run_in_process([encode(x0)], [reference.label_onehot(y0, 2)], p, seed=7)
    out1, _ = run_in_process([encode(x1)], [reference.label_onehot(y1, 2)], p, seed=8)
    a, b = out0["gram"], out1["gram"]
    assert a.dtype == np.int64 and a.size == 60 * 59 // 2
    assert np.gcd.reduce(np.diff(np.sort(a))) == 1 and np.gcd.reduce(np.diff(np.sort(b))) == 1  # no lattice
    assert np.mean((a >= b.min()) & (a <= b.max())) > 0.9 and np.mean((b >= a.min()) & (b <= a.max())) > 0.9
    ks, _ = GridNoise(300.0).pmf()
    exact = reference.gram_upper(reference.bin_statistics(encode(x0), y0, 2).bins)
    assert np.all((a - exact >= ks[0]) & (a - exact <= ks[-1]))  # inside the accounted support


def test_rep3_factor_tables_of_neighbouring_datasets_overlap_under_one_plan():
    """Phase B's tables on rep3's code path for one public plan: every (gene, factor) cell overlaps."""
    from fedsyn.engines.rep3.factor_protocol import _factor_tables

    (x0, y0), (x1, y1) = _neighbours(d=300)
    d = x0.shape[1]
    plan = factor.FactorPlan(True, np.full(d, 500, np.int64), np.array([-20000, 0, 20000]), 1.0, 0.0)
    p = ProtocolParams(n_labels=2, sigma=8.0, gram_sigma=300.0, pair_sigma=8.0, model="factor")

    def release(x, y, seed):
        st = reference.bin_statistics(encode(x), y, 2)
        bits = np.stack([(st.bins >= j).astype(np.int64) for j in (1, 2, 3)])
        scores = 2 * st.bins.astype(np.int64) - 3
        sb, ss, sy = (share_array(v, rng=np.random.default_rng(seed)) for v in
                      (bits, scores, reference.label_onehot(y, 2)))

        def server(i, transport):
            party = Party.setup(i, transport, seed=seed)
            return _factor_tables(party, ss[i], sb[i], sy[i], plan, p)

        res = run_parties(server)
        return {k: reconstruct([r[k] for r in res]).view(np.int64) for k in res[0]}

    out0, out1 = release(x0, y0, 9), release(x1, y1, 10)
    for bx in range(4):
        for lz in range(4):
            a, b = out0["gene_factor"][:, bx, lz], out1["gene_factor"][:, bx, lz]
            assert audit.support_overlap(a, b) > 0.9, (bx, lz)


# ----------------------------------------------------------- release, CLI ---
def _coexpressed_csv(path, n=400, d=40, seed=11):
    x, y = modules(n=n, d=d, strength=1.2, seed=seed)
    names = ("a", "b", "c")
    with open(path, "w") as fh:
        fh.write("sample_id," + ",".join(f"g{j}" for j in range(d)) + ",label\n")
        for i in range(n):
            fh.write(f"s{i}," + ",".join(f"{v:.4f}" for v in x[i]) + f",{names[y[i]]}\n")
    return path


def test_run_with_the_factor_model_records_it_and_carries_co_expression(tmp_path):
    from click.testing import CliRunner

    from fedsyn.cli import cli

    data = _coexpressed_csv(tmp_path / "x.csv")
    recall = {}
    for model in ("star", "factor"):
        out = tmp_path / model
        res = CliRunner().invoke(cli, ["run", "--engine", "plaintext", "--model", model, "--epsilon", "100",
                                        "--seed", "3", "-i", str(data), "-o", str(out), "-q"])
        assert res.exit_code == 0, res.output
        run = json.loads((out / "run.json").read_text())
        assert run["model"]["name"] == model and run["config"]["model"] == model
        fams = {f["name"] for f in run["privacy"]["families"]}
        assert ({"gram", "pair"} <= fams) == (model == "factor")
        recall[model] = json.loads((out / "metrics.json").read_text())["coexpr_recall_within_r03"]
    assert run["model"]["factor_found"] is True
    assert recall["factor"] > 0.3 > 0.05 > recall["star"]


def test_measurements_round_trip_with_the_factor_fields(tmp_path):
    from fedsyn.engines.plaintext import PlaintextEngine, PlaintextOptions
    from fedsyn.measurements import NoisyMeasurements
    from fedsyn.readers import load_expression

    data = load_expression(_coexpressed_csv(tmp_path / "x.csv", n=120, d=10), kind="normalized")
    p = params("paper", noise=True)
    m = PlaintextEngine(PlaintextOptions(seed=1)).measure([data], p).measurements
    assert m.model == "factor" and m.gene_factor.shape == (10, 4, 4) and m.factor["found"]
    back = NoisyMeasurements.from_npz_dict(dict(np.load(_save(m, tmp_path))))
    for name in ("gram", "factor_label", "gene_factor", "two_way"):
        assert np.array_equal(getattr(back, name), getattr(m, name)), name
    assert back.factor == m.factor and back.pair_sigma == m.pair_sigma == p.pair_sigma
    from fedsyn import release

    syn = release.synthesize(m, rng=np.random.default_rng(0))
    assert syn.values.shape == (m.n_records, 10) and release.fit(m).tree_fit is not None


def _save(m, tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, **m.to_npz_dict())
    return path


def test_three_tls_server_processes_release_the_factor_model_as_the_reference(tmp_path):
    """The deployment path (bundles, `fedsyn serve` processes, release listener) carries the factor outputs."""
    from fedsyn.data import ExpressionData
    from fedsyn.engines.rep3.engine import Rep3Engine, Rep3Options

    x, y = modules(n=90, d=8, seed=12)
    data = ExpressionData(values=x, gene_names=tuple(f"g{j}" for j in range(8)), labels=y,
                          sample_ids=tuple(f"s{i}" for i in range(90)), label_names=("a", "b", "c"), source="t")
    p = params("paper")
    m = Rep3Engine(Rep3Options(transport="tcp", workdir=tmp_path, timeout=60)).measure([data], p).measurements
    _, (gram, plan, extra) = _reference(encode(x), y, p, np.random.default_rng(0))
    assert m.model == "factor" and m.factor == plan and plan["found"]
    assert np.array_equal(m.gram, gram)
    assert np.array_equal(m.gene_factor, extra["gene_factor"]) and np.array_equal(m.factor_label, extra["factor_label"])


def test_synthesizer_api_with_the_factor_model(tmp_path):
    import fedsyn
    from fedsyn.readers import load_expression

    data = load_expression(_coexpressed_csv(tmp_path / "x.csv", n=300, d=20), kind="normalized")
    s = fedsyn.Synthesizer(epsilon=100, engine="plaintext", engine_options={"seed": 1}, model="factor", seed=2)
    out = s.fit(data.to_frame(label="label"), label="label").sample(200)
    assert out.shape == (200, 21) and s.model_.estimator == "factor" and s.model_.tree_fit is not None
    assert {f.name for f in s.privacy_.families} >= {"gram", "pair"} and "model='factor'" in repr(s)
    within = out[out["label"] == out["label"].iloc[0]].iloc[:, :10].astype(float)
    assert np.nanmean(np.corrcoef(within.T.values)[np.triu_indices(10, 1)]) > 0.2  # the module is co-expressed
