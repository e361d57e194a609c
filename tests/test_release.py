"""Tests of the release step: fitting, sampling, de-binning (fedsyn.release, fedsyn.star_model)."""

from __future__ import annotations

import numpy as np
import pytest

from fedsyn import release
from fedsyn.errors import InputError
from fedsyn.measurements import NoisyMeasurements
from fedsyn.star_model import StarMeasurements, mirror_descent, star_marginals


def _truth(d, n_labels, n, rng):
    """Records drawn from a random star model and their exact marginals."""
    label_p = rng.dirichlet(np.full(n_labels, 5.0))
    cond = rng.dirichlet(np.ones(4), size=(d, n_labels)).transpose(0, 2, 1)  # (d, 4, L)
    labels = rng.choice(n_labels, n, p=label_p)
    u = rng.random((n, d))
    cdf = np.cumsum(cond, axis=1)[:, :3, :]  # (d, 3, L)
    bins = (u[:, :, None] >= cdf[:, :, labels].transpose(2, 0, 1)).sum(axis=2)
    two = np.zeros((d, 4, n_labels))
    for g in range(d):
        np.add.at(two[g], (bins[:, g], labels), 1)
    return two, cond


def _measurements(two, sigma, rng, *, n=None):
    d, _, n_labels = two.shape
    noise = (lambda shape: sigma * rng.standard_normal(shape)) if sigma > 0 else (lambda shape: 0.0)
    return NoisyMeasurements(
        gene_names=tuple(f"GENE{i}" for i in range(d)),
        label_names=tuple(f"class{k}" for k in range(n_labels)),
        n_records=int(two[0].sum()) if n is None else n,
        one_way=two.sum(axis=2) + noise((d, 4)),
        label=two[0].sum(axis=0) + noise((n_labels,)),
        two_way=two + noise((d, 4, n_labels)),
        bin_means=np.arange(d * 4, dtype=float).reshape(d, 4) / 7.0,
        sigma=sigma,
    )


@pytest.fixture(scope="module")
def noisy():
    rng = np.random.default_rng(11)
    two, _ = _truth(5, 3, 400, rng)
    return _measurements(two, 4.0, rng)


def test_star_marginals_match_brute_force():
    rng = np.random.default_rng(0)
    d, n_labels = 3, 2
    theta = rng.normal(size=(d, 4, n_labels))
    phi = rng.normal(size=n_labels)
    p, cond = star_marginals(theta, phi)
    # brute-force joint over (x_0, x_1, x_2, l)
    logp = phi[None, None, None, :] + sum(
        np.expand_dims(theta[g], axis=tuple(a for a in range(3) if a != g)) for g in range(d)
    )
    joint = np.exp(logp - logp.max())
    joint /= joint.sum()
    np.testing.assert_allclose(p, joint.sum(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(cond[1] * p, joint.sum(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(cond.sum(axis=1), 1.0)


def test_star_matches_mbi_default_estimator(noisy):
    star = release.fit(noisy, estimator="star", iterations=200, warm_start=False)  # mbi starts uniform
    ref = release.fit(noisy, estimator="mbi", iterations=200)
    assert ref.iterations == 200 and ref.mbi_model is not None
    np.testing.assert_allclose(star.label_counts, ref.label_counts, atol=1e-3)
    np.testing.assert_allclose(star.joint, ref.joint, atol=1e-3)
    # consistency: every clique carries the same label marginal, total = n
    np.testing.assert_allclose(star.joint.sum(axis=1), np.broadcast_to(star.label_counts, (5, 3)))
    assert star.label_counts.sum() == pytest.approx(noisy.n_records)


def test_iterations_and_callback(noisy):
    seen = []
    model = release.fit(noisy, iterations=120, callback=lambda step, loss: seen.append((step, loss)))
    assert [s for s, _ in seen] == [50, 100, 120]
    losses = [loss for _, loss in seen]
    assert losses == sorted(losses, reverse=True)  # Armijo steps never increase the loss
    assert model.star_fit.loss == pytest.approx(losses[-1])
    short = release.fit(noisy, iterations=5)
    # few steps stay close to the uniform start
    assert np.abs(short.conditional - 0.25).max() < np.abs(model.conditional - 0.25).max()


def test_sigma_zero_recovers_consistent_marginals():
    rng = np.random.default_rng(3)
    two, _ = _truth(6, 3, 500, rng)
    meas = _measurements(two, 0.0, rng)
    model = release.fit(meas, iterations=3000)
    np.testing.assert_allclose(model.joint, two, atol=1e-3)
    np.testing.assert_allclose(model.label_counts, two[0].sum(axis=0), atol=1e-3)


def test_star_measurements_roundtrip_and_weights(noisy):
    domain, meas = release.mbi_measurements(noisy)
    assert domain.attributes[0] == "label" and domain.shape == (3,) + (4,) * 5
    assert len(meas) == 2 * 5 + 1
    assert all(m.stddev == noisy.sigma for m in meas)
    star, lab = release.star_measurements(domain, meas, noisy.n_records)
    assert lab == "label"
    np.testing.assert_array_equal(star.two_way, noisy.two_way)
    np.testing.assert_array_equal(star.one_way, noisy.one_way)
    np.testing.assert_allclose(star.w_two_way, 1 / 16)
    # mbi's Lipschitz constant of the same loss
    from mbi import marginal_loss

    assert star.lipschitz() == pytest.approx(marginal_loss.from_linear_measurements(meas, domain).lipschitz)


def test_gene_named_label_gets_other_attribute(noisy):
    from dataclasses import replace

    meas = replace(noisy, gene_names=("label",) + noisy.gene_names[1:])
    model = release.fit(meas, iterations=50)
    assert model.label_attribute == "_label"


def test_to_mbi_model(noisy):
    model = release.fit(noisy, iterations=100)
    mrf = model.to_mbi()
    lab = model.label_attribute
    np.testing.assert_allclose(np.asarray(mrf.project(("GENE2", lab)).datavector(flatten=False)), model.joint[2])
    assert float(mrf.total) == noisy.n_records


def test_sample_matches_rounding_sampler(noisy):
    model = release.fit(noisy, iterations=200)
    n = 777
    bins, labels = release.sample(model, n, rng=np.random.default_rng(5))
    assert bins.shape == (n, 5) and bins.dtype == np.uint8 and labels.dtype == np.int64
    per_label = np.bincount(labels, minlength=3)
    expected = model.label_probs * n
    assert per_label.sum() == n
    assert np.all((per_label == np.floor(expected)) | (per_label == np.ceil(expected)))
    for g in range(5):
        counts = np.zeros((4, 3))
        np.add.at(counts, (bins[:, g], labels), 1)
        # stratified: every (bin, label) count within 2 of its fitted expectation
        assert np.abs(counts - model.conditional[g] * per_label).max() < 2
    # labels are shuffled, not sorted
    assert np.any(np.diff(labels) < 0)
    # reproducible with a seed, different without
    again, _ = release.sample(model, n, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(bins, again)


def test_sample_same_invariants_as_mbi_synthetic_data(noisy):
    """mbi's own sampler on the same model obeys the invariants :func:`sample` is tested for."""
    model = release.fit(noisy, iterations=200)
    data = model.to_mbi().synthetic_data(300).data
    labels = data[model.label_attribute]
    per_label = np.bincount(labels, minlength=3)
    expected = model.label_probs * 300
    assert np.all((per_label == np.floor(expected)) | (per_label == np.ceil(expected)))
    counts = np.zeros((4, 3))
    np.add.at(counts, (data["GENE0"], labels), 1)
    assert np.abs(counts - model.conditional[0] * per_label).max() < 2


def test_sample_chunking_is_consistent(noisy):
    model = release.fit(noisy, iterations=50)
    bins, labels = release.sample(model, 200, rng=np.random.default_rng(9), chunk_cells=7)
    assert bins.shape == (200, 5) and bins.max() <= 3
    for g in range(5):
        counts = np.zeros((4, 3))
        np.add.at(counts, (bins[:, g], labels), 1)
        assert np.abs(counts - model.conditional[g] * np.bincount(labels, minlength=3)).max() < 2


def test_sample_zero_records(noisy):
    model = release.fit(noisy, iterations=10)
    bins, labels = release.sample(model, 0, rng=np.random.default_rng(0))
    assert bins.shape == (0, 5) and labels.shape == (0,)


def test_debin_maps_bins_to_means():
    means = np.array([[1.0, 2.0, 3.0, 4.0], [-1.0, 0.0, 0.5, 9.0]])
    bins = np.array([[0, 3], [2, 1], [3, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(release.debin(bins, means), [[1.0, 9.0], [3.0, 0.0], [4.0, -1.0]])


def test_synthesize(noisy):
    syn = release.synthesize(noisy, iterations=100, rng=np.random.default_rng(2))
    assert syn.values.shape == (noisy.n_records, 5) and syn.values.dtype == np.float64
    assert syn.gene_names == noisy.gene_names and syn.label_names == noisy.label_names
    np.testing.assert_array_equal(syn.values, release.debin(syn.bins, noisy.bin_means))
    assert release.synthesize(noisy, n_records=33, iterations=10).n_records == 33


@pytest.mark.parametrize(
    "call",
    [
        lambda m, mod: release.sample(mod, -1),
        lambda m, mod: release.sample(mod, 2.5),
        lambda m, mod: release.sample("model", 3),
        lambda m, mod: release.sample(mod, 3, rng=np.random.RandomState(0)),
        lambda m, mod: release.fit(m, iterations=0),
        lambda m, mod: release.fit(m, estimator="gum"),
        lambda m, mod: release.fit("measurements"),
        lambda m, mod: release.debin(np.zeros((3, 4), dtype=int), np.zeros((5, 4))),
        lambda m, mod: release.debin(np.full((3, 5), 4), np.zeros((5, 4))),
        lambda m, mod: release.debin(np.zeros((3, 5)), np.zeros((5, 4))),
        lambda m, mod: release.synthesize(m, n_records=-5),
    ],
)
def test_bad_inputs_raise_input_error(noisy, call):
    model = release.fit(noisy, iterations=10)
    with pytest.raises(InputError):
        call(noisy, model)


def test_bad_measurements_raise_input_error(noisy):
    from dataclasses import replace

    bad = replace(noisy, gene_names=("A", "A", "B", "C", "D"))
    with pytest.raises(InputError, match="unique"):
        release.fit(bad)
    two = noisy.two_way.copy()
    two[1, 2, 0] = np.nan
    with pytest.raises(InputError, match="two_way"):
        release.fit(replace(noisy, two_way=two))
    with pytest.raises(InputError, match="shape"):
        StarMeasurements(
            two_way=np.zeros((2, 4, 3)),
            one_way=np.zeros((2, 4)),
            label=np.zeros(2),
            w_two_way=np.ones(2),
            w_one_way=np.ones(2),
            w_label=1.0,
            total=10.0,
        )


def test_star_measurements_rejects_non_star(noisy):
    import mbi

    domain = mbi.Domain(("a", "b", "c"), (4, 4, 4))
    meas = [
        mbi.LinearMeasurement(np.zeros(16), ("a", "b")),
        mbi.LinearMeasurement(np.zeros(16), ("b", "c")),
        mbi.LinearMeasurement(np.zeros(16), ("a", "c")),
    ]
    with pytest.raises(InputError, match="star"):
        release.star_measurements(domain, meas, 10)


def test_mirror_descent_rejects_bad_iterations():
    meas = StarMeasurements(
        two_way=np.ones((2, 4, 3)),
        one_way=np.ones((2, 4)),
        label=np.ones(3),
        w_two_way=np.ones(2),
        w_one_way=np.ones(2),
        w_label=1.0,
        total=24.0,
    )
    with pytest.raises(InputError):
        mirror_descent(meas, iterations=-1)
    fit = mirror_descent(meas, iterations=0)
    np.testing.assert_allclose(fit.conditional, 0.25)


def test_warm_start_begins_at_the_noisy_tables_and_fits_at_least_as_well():
    from fedsyn.star_model import warm_potentials

    rng = np.random.default_rng(3)
    d, k, n_labels = 30, 4, 3
    cond = rng.dirichlet(np.ones(k) * 0.5, size=(d, n_labels)).transpose(0, 2, 1)  # (d, K, L)
    pl = np.array([0.5, 0.3, 0.2])
    total = 1000.0
    y2 = total * cond * pl[None, None, :]
    meas = StarMeasurements(two_way=y2, one_way=y2.sum(axis=2), label=total * pl,
                            w_two_way=np.ones(d), w_one_way=np.zeros(d), w_label=1.0, total=total)
    theta, phi = warm_potentials(meas, floor=1e-9)
    p, c = star_marginals(theta, phi)
    assert np.allclose(p, pl) and np.allclose(c, cond, atol=1e-6)  # exact tables: the start is the answer
    cold = mirror_descent(meas, iterations=50)
    warm = mirror_descent(meas, iterations=50, warm_start=True)
    err = [np.abs(star_marginals(f.theta, f.phi)[1] - cond).max() for f in (cold, warm)]
    assert err[1] <= err[0] and err[1] < 0.01  # (the default floor of 0.5 counts moves the start a little)
