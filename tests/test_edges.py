"""Quartile edges from the noisy histogram (``fedsyn.edges``): post-processing only."""

import numpy as np
import pytest

from fedsyn import fixedpoint as fp
from fedsyn import reference as ref
from fedsyn.edges import bin_geometry, edges_from_histogram
from fedsyn.params import ProtocolParams


def _params(sigma=0.0, hist_bits=6):
    return ProtocolParams(n_labels=2, sigma=max(sigma, 1.0), hist_sigma=sigma, sum_sigma=10.0, profile="strict",
                          value_range=(0.0, 16.0), hist_bits=hist_bits, noise=sigma > 0)


def _to_float(edges_fp):
    return fp.decode(edges_fp)


def test_noiseless_histogram_gives_the_quartiles_to_within_a_cell():
    rng = np.random.default_rng(0)
    x = rng.uniform(2.0, 10.0, size=(4000, 3))
    params = _params(0.0)
    hist = ref.histograms(ref.clip_to_range(fp.encode(x), params), params)
    edges = _to_float(edges_from_histogram(hist, params))
    true = np.quantile(x, [0.25, 0.5, 0.75], axis=0).T
    assert np.abs(edges - true).max() <= 16.0 / 64  # one cell of the 64-cell grid


def test_a_spread_out_gene_is_found_on_a_coarser_grid_not_replaced_by_the_pool():
    # gene 0: 200 records spread over 32 cells (~6 a cell, under the 3-sigma threshold at sigma 4);
    # gene 1: the same records squeezed into 2 cells. Gene 0's edges must follow its own spread.
    params = _params(4.0)
    hist = np.zeros((2, 64), dtype=np.int64)
    hist[0, 16:48] = 200 // 32 + np.arange(32) % 2  # ~6-7 a cell
    hist[1, 60:62] = 100
    n = hist[1].sum()
    hist[0, 16] += n - hist[0].sum()
    edges = _to_float(edges_from_histogram(hist, params))
    # gene 0's median is near the middle of cells 16..48, i.e. near 8.0; the pooled one would be near 12
    assert abs(edges[0, 1] - 8.0) < 1.0
    assert edges[0, 0] < edges[0, 1] < edges[0, 2]
    assert edges[1, 0] >= 15.0


def test_a_gene_with_no_signal_falls_back_to_the_pooled_histogram():
    params = _params(4.0)
    hist = np.zeros((3, 64), dtype=np.int64)
    hist[0, 10:20] = 50
    hist[1, 10:20] = 50
    hist[2] = np.where(np.arange(64) % 2 == 0, 3, -3)  # noise only, no mass anywhere
    edges = edges_from_histogram(hist, params)
    # the pool is cells 10..19 (2.5 to 5.0): gene 2 gets its quartiles, not the whole range's
    assert np.allclose(_to_float(edges[2]), [3.125, 3.75, 4.375], atol=0.02)


@pytest.mark.parametrize("seed", range(5))
def test_edges_are_ordered_on_the_grid_and_give_a_valid_geometry(seed):
    rng = np.random.default_rng(seed)
    params = _params(5.0)
    hist = rng.normal(0, 5, size=(20, 64)).round().astype(np.int64)
    hist[:10, rng.integers(0, 64, size=3)] += 300
    edges = edges_from_histogram(hist, params)
    assert edges.dtype == np.int64 and edges.shape == (20, 3)
    assert np.all(np.diff(edges, axis=1) >= 0)
    lo, hi = params.range_fp
    assert edges.min() >= lo and edges.max() <= hi
    bin_geometry(edges, params)  # does not raise


def test_the_edges_depend_on_the_noisy_histogram_only():
    params = _params(4.0)
    hist = np.zeros((2, 64), dtype=np.int64)
    hist[:, 20:30] = 40
    a = edges_from_histogram(hist, params)
    b = edges_from_histogram(hist.copy(), params)
    assert np.array_equal(a, b)


def test_shape_is_checked():
    from fedsyn.errors import InputError

    with pytest.raises(InputError, match="shape"):
        edges_from_histogram(np.zeros((2, 10), dtype=np.int64), _params(1.0))
