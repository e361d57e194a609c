"""Tests of the co-expression models: fedsyn.graph_model, fedsyn.structure and
the co-expression section of fedsyn.reference."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fedsyn import graph_model as gm
from fedsyn import reference
from fedsyn import structure as cx
from fedsyn.errors import ConfigError, InputError

# --------------------------------------------------------------------------- helpers


def _brute_joint(st: gm.TreeStructure, theta, phi):
    """Normalized joint (L, *sizes) by enumeration."""
    joint = np.zeros((st.n_labels,) + st.sizes)
    for lab in range(st.n_labels):
        for xs in itertools.product(*[range(s) for s in st.sizes]):
            v = phi[lab]
            for a, p in enumerate(st.parent):
                v += theta[a, lab, xs[a], xs[p] if p >= 0 else 0]
            joint[(lab,) + xs] = math.exp(v)
    return joint / joint.sum()


def _clique_from_joint(joint, st, a):
    """P(l, x_a, x_parent) (L, s_a, s_p) from the joint; roots (L, s_a, 1)."""
    p = st.parent[a]
    keep = [a + 1] + ([p + 1] if p >= 0 else [])
    m = joint.sum(axis=tuple(i for i in range(1, joint.ndim) if i not in keep))
    if p < 0:
        return m[:, :, None]
    return m if a < p else m.transpose(0, 2, 1)


def _tables(st, x, y):
    lab = np.bincount(y, minlength=st.n_labels).astype(float)
    al, pr = [], []
    for a in range(st.n_attributes):
        t = np.zeros((st.sizes[a], st.n_labels))
        np.add.at(t, (x[:, a], y), 1)
        al.append(t)
        p = st.parent[a]
        if p >= 0:
            t = np.zeros((st.sizes[a], st.sizes[p]))
            np.add.at(t, (x[:, a], x[:, p]), 1)
            pr.append(t)
        else:
            pr.append(None)
    return lab, al, pr


SMALL = gm.TreeStructure(sizes=(4, 3, 4, 2, 3), parent=(-1, 0, 0, 1, -1), n_labels=3)


def _random_fit(st, rng, total=1000.0, scale=1.0):
    theta = rng.normal(scale=scale, size=(st.n_attributes, st.n_labels, st.max_size, st.max_size))
    phi = rng.normal(size=st.n_labels)
    p, mu = gm.tree_marginals(st, theta, phi)
    return gm.TreeFit(st, theta, phi, p, mu, total=total)


# --------------------------------------------------------------------------- structure


def test_structure_validation():
    with pytest.raises(InputError, match="cycle"):
        gm.TreeStructure(sizes=(4, 4, 4), parent=(1, 2, 0), n_labels=2)
    with pytest.raises(InputError):
        gm.TreeStructure(sizes=(4, 4), parent=(0, -1), n_labels=2, names=("a", "a"))
    with pytest.raises(InputError):
        gm.TreeStructure(sizes=(4,), parent=(0,), n_labels=2)
    st = gm.TreeStructure(sizes=(4, 4, 4), parent=(-1, 0, 1), n_labels=2)
    assert st.depth().tolist() == [0, 1, 2]
    assert st.cliques() == [(0,), (1, 0), (2, 1)]


def test_reroot_at_center_keeps_edges_and_shortens():
    rng = np.random.default_rng(3)
    parent = np.array([-1] + list(range(0, 30)))  # a chain of 31
    parent[5] = -1  # and a second tree
    re = gm.reroot_at_center(parent)
    edges = {frozenset((i, int(p))) for i, p in enumerate(parent) if p >= 0}
    assert {frozenset((i, int(p))) for i, p in enumerate(re) if p >= 0} == edges
    st = gm.TreeStructure(sizes=(2,) * parent.size, parent=tuple(int(p) for p in re), n_labels=1)
    assert st.depth().max() <= 13
    rt = cx.random_tree(40, rng)
    assert (rt < 0).sum() == 1


# --------------------------------------------------------------------------- exact marginals


def test_tree_marginals_match_brute_force():
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(5, 3, 4, 4))
    phi = rng.normal(size=3)
    p, mu = gm.tree_marginals(SMALL, theta, phi)
    joint = _brute_joint(SMALL, theta, phi)
    np.testing.assert_allclose(p, joint.sum(axis=(1, 2, 3, 4, 5)), atol=1e-12)
    for a in range(SMALL.n_attributes):
        ref = _clique_from_joint(joint, SMALL, a)
        got = mu[a][:, : ref.shape[1], : ref.shape[2]]
        np.testing.assert_allclose(got, ref, atol=1e-12)
        assert mu[a].sum() == pytest.approx(1.0)  # padding cells hold no mass


# --------------------------------------------------------------------------- estimation


def test_mirror_descent_recovers_consistent_tables():
    rng = np.random.default_rng(1)
    truth = _random_fit(SMALL, rng, total=4000, scale=0.5)
    x, y = gm.sample(truth, 4000, rng=rng)
    lab, al, pr = _tables(SMALL, x.astype(int), y)
    meas = gm.TreeMeasurements.from_tables(SMALL, label=lab, attr_label=al, pair=pr, total=4000, stddev={})
    fit = gm.mirror_descent(SMALL, meas, iterations=2000)
    assert fit.loss < 0.05
    for a in range(SMALL.n_attributes):
        np.testing.assert_allclose(fit.attr_label()[a, : SMALL.sizes[a]], al[a], atol=0.2)
        if pr[a] is not None:
            np.testing.assert_allclose(fit.pair()[a, : pr[a].shape[0], : pr[a].shape[1]], pr[a], atol=0.2)
    # the warm start alone is already the decomposable fit of consistent tables
    th, ph = gm.warm_start(SMALL, meas, smoothing="none", sweeps=50)
    p, mu = gm.tree_marginals(SMALL, th, ph)
    for a in range(SMALL.n_attributes):
        if pr[a] is not None:
            got = 4000 * mu[a].sum(axis=0)[: pr[a].shape[0], : pr[a].shape[1]]
            np.testing.assert_allclose(got, pr[a], atol=0.5)


def test_mirror_descent_matches_mbi():
    """Same fitted marginals as mbi 2.x's MirrorDescent on the same measurements."""
    mbi = gm._mbi()  # imports mbi with jax in 64-bit mode

    rng = np.random.default_rng(2)
    st = gm.TreeStructure(sizes=(3, 2, 3), parent=(-1, 0, 0), n_labels=2, names=("g0", "g1", "g2"))
    truth = _random_fit(st, rng, total=300)
    x, y = gm.sample(truth, 300, rng=rng)
    lab, al, pr = _tables(st, x.astype(int), y)
    sd = 3.0
    noisy = gm.TreeMeasurements.from_tables(
        st,
        label=lab + rng.normal(0, sd, lab.shape),
        attr_label=[t + rng.normal(0, sd, t.shape) for t in al],
        pair=[None if t is None else t + rng.normal(0, sd, t.shape) for t in pr],
        total=300,
        stddev={"label": sd, "attr_label": sd, "pair": sd},
    )
    ours = gm.mirror_descent(st, noisy, iterations=3000)
    domain = gm.mbi_domain(st)
    meas = gm.to_mbi_measurements(st, noisy)
    st2, noisy2 = gm.from_mbi(domain, meas, st.parent, known_total=300)
    assert st2 == st
    np.testing.assert_allclose(noisy2.pair, noisy.pair)
    loss = mbi.marginal_loss.from_linear_measurements(meas, domain)
    mrf = mbi.estimation.MirrorDescent().estimate(domain, loss, known_total=300.0, iters=3000)
    # both run to convergence (their first steps differ: mbi routes each table to
    # its own clique, which changes the Lipschitz constant and so the first step)
    for a, cl in enumerate(st.cliques()):
        if len(cl) == 2:
            names = (st.names[cl[0]], st.names[cl[1]])
            ref = np.asarray(mrf.project(names).datavector(flatten=False))
            got = ours.pair()[a, : st.sizes[cl[0]], : st.sizes[cl[1]]]
            np.testing.assert_allclose(got, ref, atol=0.05)
        ref = np.asarray(mrf.project((st.names[a], "label")).datavector(flatten=False))
        np.testing.assert_allclose(ours.attr_label()[a, : st.sizes[a]], ref, atol=0.05)
    # our fit exported to mbi gives the same marginals
    exported = gm.to_mbi(ours)
    got = np.asarray(exported.project(("g1", "g0")).datavector(flatten=False))
    np.testing.assert_allclose(got, ours.pair()[1, :2, :3], atol=1e-8)


def test_measurement_errors():
    with pytest.raises(InputError):
        gm.TreeMeasurements.from_tables(
            SMALL, label=np.zeros(2), attr_label=[None] * 5, pair=[None] * 5, total=10, stddev={}
        )
    meas = gm.TreeMeasurements.from_tables(
        SMALL, label=np.zeros(3), attr_label=[None] * 5, pair=[None] * 5, total=10, stddev={}
    )
    with pytest.raises(InputError):
        gm.mirror_descent(SMALL, meas, iterations=-1)
    with pytest.raises(InputError):
        gm.mirror_descent(SMALL, meas, iterations=5, growth=0.5)


# --------------------------------------------------------------------------- sampling


def test_sampler_is_stratified_per_group():
    rng = np.random.default_rng(4)
    fit = _random_fit(SMALL, rng, total=2000)
    n = 2000
    x, y = gm.sample(fit, n, rng=rng)
    x = x.astype(int)
    counts = np.bincount(y, minlength=3)
    expect = n * fit.label_probs
    assert counts.sum() == n and np.all(np.abs(counts - expect) < 1)
    cond = fit.conditional()
    for a, p in enumerate(SMALL.parent):
        xp = x[:, p] if p >= 0 else np.zeros(n, dtype=int)
        for lab in range(3):
            for v in range(SMALL.sizes[p] if p >= 0 else 1):
                rows = (y == lab) & (xp == v)
                c = rows.sum()
                if c == 0:
                    continue
                got = np.bincount(x[rows, a], minlength=SMALL.sizes[a])
                want = c * cond[a, lab, : SMALL.sizes[a], v]
                assert np.all(np.abs(got - want) < 2), (a, lab, v)
    assert x.max(axis=0).tolist() <= [s - 1 for s in SMALL.sizes]


def test_sampler_marginals_match_model_on_average():
    rng = np.random.default_rng(5)
    fit = _random_fit(SMALL, rng, total=1.0, scale=0.7)
    acc = np.zeros((4, 4))
    reps, n = 30, 500
    for _ in range(reps):
        x, y = gm.sample(fit, n, rng=rng)
        t = np.zeros((4, 4))
        np.add.at(t, (x[:, 2].astype(int), x[:, 0].astype(int)), 1)
        acc += t
    np.testing.assert_allclose(acc / (reps * n), fit.clique_probs[2].sum(axis=0), atol=0.01)


def test_sample_zero_and_chunking():
    rng = np.random.default_rng(6)
    fit = _random_fit(SMALL, rng)
    x, y = gm.sample(fit, 0, rng=rng)
    assert x.shape == (0, 5) and y.shape == (0,)
    a = gm.sample(fit, 300, rng=np.random.default_rng(1), chunk_cells=300)
    b = gm.sample(fit, 300, rng=np.random.default_rng(1), chunk_cells=300)
    np.testing.assert_array_equal(a[0], b[0])


# --------------------------------------------------------------------------- selection


def test_max_spanning_tree_is_maximal_and_deterministic():
    from scipy.sparse.csgraph import minimum_spanning_tree

    rng = np.random.default_rng(7)
    w = rng.random((30, 30))
    w = w + w.T
    parent = cx.max_spanning_tree(w)
    assert (parent < 0).sum() == 1
    ours = sum(w[i, p] for i, p in enumerate(parent) if p >= 0)
    ref = -minimum_spanning_tree(-w).sum()
    assert ours == pytest.approx(ref)
    np.testing.assert_array_equal(parent, cx.max_spanning_tree(w.copy()))


def test_gumbel_mst_deterministic_given_noise_and_exact_when_noiseless():
    rng = np.random.default_rng(8)
    u = rng.random((12, 12)) * 10
    u = u + u.T
    a = cx.gumbel_mst(u, 2.0, np.random.default_rng(3))
    b = cx.gumbel_mst(u, 2.0, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(cx.gumbel_mst(u, 0.0, rng), cx.max_spanning_tree(u))


def test_gumbel_mst_has_the_exponential_mechanism_distribution():
    """On 3 nodes: P(tree) equals MST's two sequential exponential-mechanism rounds."""
    u = np.array([[0, 1.0, 0.2], [1.0, 0, -0.5], [0.2, -0.5, 0]])
    edges = [(0, 1), (0, 2), (1, 2)]
    w = np.exp(np.array([u[e] for e in edges]))
    # round 1 picks e with prob w_e / sum; round 2 picks among the other two
    exact = {}
    for i in range(3):
        for j in range(3):
            if i != j:
                missing = ({0, 1, 2} - {i, j}).pop()
                exact[missing] = exact.get(missing, 0) + w[i] / w.sum() * w[j] / (w.sum() - w[i])
    rng = np.random.default_rng(9)
    n = 20000
    seen = np.zeros(3)
    for _ in range(n):
        p = cx.gumbel_mst(u, 1.0, rng)
        tree = {frozenset((i, int(q))) for i, q in enumerate(p) if q >= 0}
        missing = [k for k, e in enumerate(edges) if frozenset(e) not in tree][0]
        seen[missing] += 1
    for k in range(3):
        assert seen[k] / n == pytest.approx(exact[k], abs=0.015)


def test_dp_factors_and_within_class_gram():
    rng = np.random.default_rng(10)
    n, d, n_labels = 2000, 12, 3
    y = rng.integers(0, n_labels, n)
    f = rng.standard_normal(n)
    load = np.r_[np.full(6, 0.9), np.zeros(6)]
    x = f[:, None] * load[None, :] + rng.standard_normal((n, d)) * 0.5 + y[:, None] * 0.8
    q = np.quantile(x, [0.25, 0.5, 0.75], axis=0)
    bins = (x[None] >= q[:, None]).sum(axis=0)
    gram = reference.score_gram(bins).astype(float)
    two = reference.attr_label_tables(bins, y, n_labels)
    within = cx.within_class_gram(gram, two, np.bincount(y, minlength=n_labels))
    s = 2.0 * bins - 3
    means = np.stack([s[y == k].mean(axis=0) for k in range(n_labels)])
    np.testing.assert_allclose(within, (s - means[y]).T @ (s - means[y]), atol=1e-6)
    v, w, attach = cx.dp_factors(within, 2)
    assert np.all(np.abs(v[:6, 0]) > np.abs(v[6:, 0]).max())
    assert np.all(attach[:6] == 0)
    assert w[0] > w[1]


# --------------------------------------------------------------------------- budget


def test_calibrate_families():
    rho = cx.zcdp_rho(10.0, 1e-5)
    assert rho == pytest.approx((math.sqrt(10 + math.log(1e5)) - math.sqrt(math.log(1e5))) ** 2)
    fams = [
        cx.Family("a", 100, 1.0, 3.0),
        cx.Family("b", 50, 9.0, 1.0, "gumbel_max"),
        cx.Family("c", 10, 1.0, 0.0),
    ]
    s = cx.calibrate_families(fams, 10.0, 1e-5)
    assert s["a"] == pytest.approx(math.sqrt(100 / (2 * 0.75 * rho)))
    assert s["b"] == pytest.approx(2 * 9.0 / math.sqrt(8 * 0.25 * rho / 50))
    assert s["c"] == math.inf
    # composing back: the families' rho adds up to the total
    spent = 100 * 1.0 / (2 * s["a"] ** 2) + 50 * (2 * 9.0 / s["b"]) ** 2 / 8
    assert spent == pytest.approx(rho)
    with pytest.raises(ConfigError):
        cx.calibrate_families([cx.Family("a", 1, 1, 1), cx.Family("a", 1, 1, 1)], 1.0, 1e-5)
    with pytest.raises(ConfigError):
        cx.calibrate_families([cx.Family("a", 1, 1, 0)], 1.0, 1e-5)
    with pytest.raises(ConfigError):
        cx.zcdp_rho(1.0, 2.0)


def test_model_families():
    names = lambda fams: [f.name for f in fams]  # noqa: E731
    assert names(cx.model_families("star", 10)) == ["label", "gene_label"]
    tree = cx.model_families("tree", 10)
    assert names(tree) == ["label", "gene_label", "select", "pair"]
    assert next(f for f in tree if f.name == "select").mechanism == "gumbel_max"
    fac = {f.name: f for f in cx.model_families("factor", 10, n_factors=2)}
    assert fac["gene_label"].tables == 12 and fac["gram"].tables == 45 and fac["pair"].tables == 11
    with pytest.raises(ConfigError):
        cx.model_families("tree", 10, weights={"gram": 1.0})
    with pytest.raises(ConfigError):
        cx.model_families("nope", 10)


# --------------------------------------------------------------------------- reference


def test_reference_pair_statistics():
    rng = np.random.default_rng(11)
    n, d, n_labels = 57, 6, 3
    bins = rng.integers(0, 4, (n, d))
    y = rng.integers(0, n_labels, n)
    pairs = [(0, 1), (3, 2), (5, 0)]
    t = reference.pair_tables(bins, pairs)
    tl = reference.pair_tables(bins, pairs, labels=y, n_labels=n_labels)
    for m, (a, c) in enumerate(pairs):
        ref = np.zeros((4, 4), dtype=int)
        refl = np.zeros((4, 4, n_labels), dtype=int)
        np.add.at(ref, (bins[:, a], bins[:, c]), 1)
        np.add.at(refl, (bins[:, a], bins[:, c], y), 1)
        np.testing.assert_array_equal(t[m], ref)
        np.testing.assert_array_equal(tl[m], refl)
    # the all-pairs table is one product of the one-hot matrix
    onehot = np.zeros((n, 4 * d), dtype=np.int64)
    onehot[np.arange(n)[:, None], np.arange(d)[None, :] * 4 + bins] = 1
    big = (onehot.T @ onehot).reshape(d, 4, d, 4)
    np.testing.assert_array_equal(big[3, :, 2, :], t[1])
    s = 2 * bins - 3
    np.testing.assert_array_equal(reference.score_gram(bins), s.T @ s)
    al = reference.attr_label_tables(bins, y, n_labels)
    assert al.shape == (d, 4, n_labels) and al.sum() == n * d


def test_quantile_levels_generalize_quartile_binning():
    from fedsyn import fixedpoint

    rng = np.random.default_rng(12)
    x = np.round(rng.normal(size=(41, 5)), 2)
    x[:, 0] = 0.0  # constant gene
    x[:20, 1] = 0.0  # ties
    fp = fixedpoint.encode(x)
    stats = reference.bin_statistics(fp, np.zeros(41, dtype=np.int64), 1)
    np.testing.assert_array_equal(reference.quantile_levels(fp, 4), stats.bins.astype(np.int64))
    ints = rng.integers(-50, 50, (37, 3)).astype(np.int64)
    for m in (3, 8):
        q = np.quantile(ints, np.arange(1, m) / m, axis=0, method="linear")
        want = (ints[None] >= q[:, None, :]).sum(axis=0)
        np.testing.assert_array_equal(reference.quantile_levels(ints, m), want)
    z = reference.factor_bins(rng.integers(0, 4, (41, 5)), rng.normal(size=(5, 2)), 4)
    assert z.shape == (41, 2)
    j = reference.joint_levels(np.array([[1, 2], [3, 3]]), 4)
    assert j.ravel().tolist() == [6, 15]


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize(
    "kw",
    [
        dict(model="star"),
        dict(model="tree"),
        dict(model="tree", selection="noisy_gram_mst"),
        dict(model="tree", selection="random", pair_label=True),
        dict(model="factor", n_factors=2, factor_levels=4),
        dict(model="factor", n_factors=2, factor_levels=3, joint=True),
    ],
)
def test_simulate_end_to_end(kw):
    rng = np.random.default_rng(13)
    n, d, n_labels = 300, 15, 3
    y = rng.integers(0, n_labels, n)
    f = rng.standard_normal(n)
    x = f[:, None] * np.linspace(0.2, 1.0, d)[None, :] + rng.standard_normal((n, d)) + y[:, None]
    q = np.quantile(x, [0.25, 0.5, 0.75], axis=0)
    bins = (x[None] >= q[:, None]).sum(axis=0)
    for eps in (10.0, math.inf):
        rel = cx.simulate(bins, y, n_labels, cx.CoexpressionConfig(epsilon=eps, iterations=20, **kw), rng=rng)
        assert rel.bins.shape == (n, d) and rel.labels.shape == (n,)
        assert rel.bins.max() <= 3
    if kw["model"] != "star":
        # exact tables: synthetic genes are co-expressed like the real ones
        c_real = np.corrcoef(bins.T)[np.triu_indices(d, 1)]
        c_syn = np.corrcoef(rel.bins.T.astype(float))[np.triu_indices(d, 1)]
        if kw.get("selection") != "random":
            assert np.corrcoef(c_real, c_syn)[0, 1] > 0.3


def test_warm_start_adds_no_within_class_association_when_there_is_none():
    """Genes that depend only on the label: the denoised pair table must not make
    the fit invent within-class association (regression: shrinking towards pooled
    independence forced IPF to cancel the label's pooled association)."""
    st = gm.TreeStructure(sizes=(4, 4), parent=(-1, 0), n_labels=2)
    n = 2000.0
    p_l = np.array([0.5, 0.5])
    cond = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]])  # P(x | l), same for both genes
    al = [(n * p_l[:, None] * cond).T for _ in range(2)]  # (4, L)
    pair_exact = n * np.einsum("l,lx,ly->xy", p_l, cond, cond)  # independent given the label
    rng = np.random.default_rng(15)
    sd = 40.0
    meas = gm.TreeMeasurements.from_tables(
        st,
        label=n * p_l,
        attr_label=al,
        pair=[None, pair_exact + rng.normal(0, sd, (4, 4))],
        total=n,
        stddev={"label": sd, "attr_label": sd, "pair": sd},
    )
    theta, phi = gm.warm_start(st, meas)
    _, mu = gm.tree_marginals(st, theta, phi)
    joint = mu[1]  # P(l, x1, x0)
    within = joint / joint.sum(axis=(1, 2), keepdims=True)
    indep = within.sum(axis=2, keepdims=True) * within.sum(axis=1, keepdims=True)
    assert np.abs(within - indep).max() < 0.02


def test_simulate_keeps_only_factors_above_the_noise_edge():
    rng = np.random.default_rng(16)
    n, d, n_labels = 400, 20, 2
    y = rng.integers(0, n_labels, n)
    x = rng.standard_normal(n)[:, None] * np.r_[np.ones(10), np.zeros(10)][None, :] + rng.standard_normal((n, d))
    q = np.quantile(x, [0.25, 0.5, 0.75], axis=0)
    bins = (x[None] >= q[:, None]).sum(axis=0)
    # the edge is that of the DP noise only: at epsilon 0.1 nothing stands out
    # (the model is the star); at epsilon 100 the real factor does
    for eps, ok in ((100.0, lambda k: k >= 1), (0.1, lambda k: k == 0)):
        cfg = cx.CoexpressionConfig(model="factor", n_factors=3, factor_levels=4, epsilon=eps, iterations=5)
        rel = cx.simulate(bins, y, n_labels, cfg, rng=rng)
        k = rel.fit.structure.n_attributes - d
        assert ok(k) and rel.bins.shape == (n, d)
