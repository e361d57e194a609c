"""The reference semantics against brute-force and numpy definitions."""

import numpy as np
import pytest

from fedsyn import fixedpoint as fp
from fedsyn import reference as ref
from fedsyn.errors import InputError


def brute_force_bins(x: np.ndarray) -> np.ndarray:
    """Bins from numpy's linear quantiles, in exact rational arithmetic."""
    from fractions import Fraction

    n, d = x.shape
    out = np.zeros((n, d), dtype=np.uint8)
    for g in range(d):
        v = sorted(int(a) for a in x[:, g])
        qs = []
        for j in (1, 2, 3):
            pos = Fraction((n - 1) * j, 4)
            lo = int(pos)
            frac = pos - lo
            hi = v[min(lo + 1, n - 1)]
            qs.append(v[lo] + frac * (hi - v[lo]))
        for i in range(n):
            out[i, g] = sum(int(x[i, g]) >= q for q in qs)
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 33, 100])
def test_bins_match_exact_quantile_definition(n):
    rng = np.random.default_rng(n)
    x = fp.encode(rng.normal(size=(n, 5)))
    x[:, 1] = 7  # constant
    x[: (3 * n) // 5, 2] = 0  # sparse
    x[:, 3] = (x[:, 3] // 65536) * 65536  # heavy ties
    stats = ref.bin_statistics(x, np.arange(n) % 2, 2)
    assert np.array_equal(stats.bins, brute_force_bins(x))


def test_thresholds_equal_numpy_linear_quantiles_times_four():
    rng = np.random.default_rng(0)
    x = fp.encode(rng.normal(size=(101, 7)))
    t = ref.quartile_thresholds(x)
    q = np.quantile(x.astype(np.float64), [0.25, 0.5, 0.75], axis=0)
    assert np.array_equal(t, np.rint(4 * q).astype(np.int64))


def test_quartile_plan_positions():
    plan = ref.QuartilePlan.for_n(10)  # (n-1)q = 2.25, 4.5, 6.75
    assert plan.lo == (2, 4, 6) and plan.k == (1, 2, 3)
    assert plan.ranks == (2, 3, 4, 5, 6, 7)
    assert ref.QuartilePlan.for_n(5).ranks == (1, 2, 3)  # exact positions: no interpolation
    with pytest.raises(InputError):
        ref.QuartilePlan.for_n(0)


def test_counts_sums_marginals_consistent():
    rng = np.random.default_rng(3)
    n, L = 57, 4
    x = fp.encode(rng.normal(size=(n, 9)))
    y = rng.integers(0, L, n)
    s = ref.bin_statistics(x, y, L)
    assert np.all(s.counts.sum(axis=1) == n)
    assert np.array_equal(s.two_way.sum(axis=2), s.counts)
    assert np.array_equal(s.two_way.sum(axis=1), np.tile(s.label_counts, (9, 1)))
    assert np.array_equal(s.label_counts, np.bincount(y, minlength=L))
    for g in range(9):
        for k in range(4):
            members = s.bins[:, g] == k
            assert s.counts[g, k] == members.sum()
            assert s.sums[g, k] == x[members, g].sum()
            for lab in range(L):
                assert s.two_way[g, k, lab] == (members & (y == lab)).sum()


def test_indicator_polynomials_are_one_hot():
    rng = np.random.default_rng(5)
    x = fp.encode(rng.normal(size=(40, 3)))
    bits = ref.comparison_bits(x, ref.quartile_thresholds(x))
    ind = ref.indicators_from_bits(bits)
    assert set(np.unique(ind)) <= {0, 1}
    assert np.all(ind.sum(axis=-1) == 1)
    assert np.array_equal(ind.argmax(axis=-1), bits.sum(axis=0))


def test_ties_and_empty_bin_rule():
    x = np.zeros((10, 3), dtype=np.int64)
    x[:, 0] = 5 << 16  # constant: everything in bin 3
    x[:, 1] = [0] * 6 + [1, 2, 3, 4]  # sparse: Q1 = Q2 = 0, Q3 = 1.75; bins 0, 1 empty
    x[:, 2] = np.arange(10)
    s = ref.bin_statistics(x, np.arange(10) % 2, 2)
    assert list(s.counts[0]) == [0, 0, 0, 10]
    assert np.all(s.bins[:, 0] == 3)
    assert list(s.counts[1]) == [0, 0, 7, 3]
    means = s.means
    assert list(means[0]) == [5 << 16] * 4  # constant gene maps every bin to its value
    assert list(means[1]) == [0, 0, 0, 3]  # empty bins take the next non-empty bin above
    assert np.all(s.counts[:, 3] > 0)


def test_bin_means_floor_towards_minus_infinity():
    sums = np.array([[-7, 7, 0, 9]])
    counts = np.array([[2, 2, 0, 3]])
    assert list(ref.bin_means(sums, counts)[0]) == [-4, 3, 3, 3]
    with pytest.raises(InputError):
        ref.bin_means(np.zeros((1, 4), dtype=np.int64), np.zeros((1, 4), dtype=np.int64))


def test_opened_outputs_are_integers_on_their_grids():
    from fedsyn.params import ProtocolParams

    rng = np.random.default_rng(1)
    x = fp.encode(rng.normal(5, 2, size=(40, 3)))
    y = rng.integers(0, 2, size=40)
    stats = ref.bin_statistics(x, y, 2)
    exact = ref.protocol1_outputs(stats, ProtocolParams(n_labels=2, sigma=0, noise=False), rng=rng)
    assert np.array_equal(exact["one_way"], stats.counts) and np.array_equal(exact["means"], stats.means)
    noisy = ref.protocol1_outputs(stats, ProtocolParams(n_labels=2, sigma=3.0), rng=rng)
    for name in ("one_way", "label", "two_way"):
        assert noisy[name].dtype == np.int64 and noisy[name].shape == exact[name].shape
    assert not np.array_equal(noisy["two_way"], exact["two_way"])
    from fedsyn.edges import bin_geometry, edges_from_histogram

    strict = ProtocolParams(n_labels=2, sigma=3.0, hist_sigma=3.0, sum_sigma=40.0, profile="strict",
                            value_range=(0.0, 10.0), hist_bits=4)
    hist = ref.noisy_histograms(x, strict, rng=rng)
    assert hist.dtype == np.int64 and hist.shape == (3, 16)
    geometry = bin_geometry(edges_from_histogram(hist, strict), strict)
    st2 = ref.edge_statistics(x, y, 2, geometry, strict)
    out = ref.edge_outputs(st2, geometry, strict, rng=rng)
    assert set(out) == {"label", "two_way", "sums"}
    unit = ref.round_to_unit(st2.sums, geometry.unit_bits)
    assert out["sums"].dtype == np.int64 and np.abs(out["sums"] - unit).max() <= 6 * 40 + 1


def test_round_to_unit_rounds_halves_up():
    v = np.array([-3, -2, -1, 0, 1, 2, 3, 5, 6], dtype=np.int64)
    assert ref.round_to_unit(v, 0).tolist() == v.tolist()
    assert ref.round_to_unit(v, 2).tolist() == [-1, 0, 0, 0, 0, 1, 1, 1, 2]


def test_bad_inputs():
    with pytest.raises(InputError, match="int64"):
        ref.bin_statistics(np.zeros((3, 2)), np.zeros(3, dtype=int), 2)
    with pytest.raises(InputError, match="labels"):
        ref.bin_statistics(np.zeros((3, 2), dtype=np.int64), np.zeros(4, dtype=int), 2)
    with pytest.raises(InputError, match="0..1"):
        ref.label_onehot(np.array([0, 2]), 2)
