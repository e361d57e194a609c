"""Protocol 1 on the embedded rep3 engine against the plaintext reference, bit for bit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fedsyn.engines.rep3 import Party, run_parties, share_array
from fedsyn.engines.rep3.binning import SelectionState, select_order_statistics, threshold_bits
from fedsyn.engines.rep3.noise import grid_noise
from fedsyn.engines.rep3.protocol1 import HolderInput, open_outputs, run_in_process, run_protocol1
from fedsyn.errors import InputError, ProtocolError
from fedsyn.fixedpoint import encode
from fedsyn.noise import GridNoise
from fedsyn.params import ProtocolParams
from fedsyn.reference import QuartilePlan, bin_statistics, label_onehot, round_to_unit

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tcga_brca_vst_100x978.csv"
F = 16
ONE = 1 << F


def _split(x, y, n_labels, sizes):
    cuts = np.cumsum([0, *sizes])
    xs = [x[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
    ys = [label_onehot(y[a:b], n_labels) for a, b in zip(cuts[:-1], cuts[1:])]
    return xs, ys


def _check_exact(x, y, n_labels, sizes, *, binning="select", seed=0):
    params = ProtocolParams(n_labels=n_labels, sigma=0.0, noise=False, binning=binning)
    xs, ys = _split(x, y, n_labels, sizes)
    out, stats = run_in_process(xs, ys, params, seed=seed)
    ref = bin_statistics(x, y, n_labels)
    np.testing.assert_array_equal(out["one_way"], ref.counts)
    np.testing.assert_array_equal(out["label"], ref.label_counts)
    np.testing.assert_array_equal(out["two_way"], ref.two_way)
    np.testing.assert_array_equal(out["means"], ref.means)
    assert set(stats[0]["phases"]) >= {"binning", "marginals", "means", "noise"}
    return out, stats


def _random_case(rng, n, d):
    x = rng.integers(-(2**30), 2**30, size=(n, d), dtype=np.int64)
    if d > 1:
        x[:, 0] = 7 * ONE  # constant gene
    if d > 2:
        x[rng.random(n) < 0.6, 1] = 0  # sparse gene
    if d > 3:
        x[:, 2] = rng.integers(-3, 3, size=n) * ONE  # many ties, negative values
    if d > 4:
        x[:, 3] = -(2**40) + 1 + rng.integers(0, 2, size=n)  # extreme negative range
        x[:, 4] = 2**40 - 1 - rng.integers(0, 2, size=n)  # extreme positive range
    return x


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 33])
def test_exact_against_reference_small_n(n):
    rng = np.random.default_rng(n)
    d, n_labels = 6, 3
    x = _random_case(rng, n, d)
    y = rng.integers(0, n_labels, size=n)
    sizes = [n] if n < 3 else [n // 3, n - n // 3 - 1, 1]
    _check_exact(x, y, n_labels, sizes, seed=n)


@pytest.mark.parametrize("n", [1, 2, 5, 8, 33])
def test_sort_binning_gives_identical_outputs(n):
    rng = np.random.default_rng(100 + n)
    x = _random_case(rng, n, 6)
    y = rng.integers(0, 4, size=n)
    a, _ = _check_exact(x, y, 4, [n], binning="sort", seed=1)
    b, _ = _check_exact(x, y, 4, [n], binning="select", seed=2)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_unequal_holders_even_and_odd_n():
    rng = np.random.default_rng(7)
    for n, sizes in ((120, [10, 100, 10]), (121, [1, 60, 40, 20])):
        x = _random_case(rng, n, 9)
        y = rng.integers(0, 5, size=n)
        _check_exact(x, y, 5, sizes, seed=n)


def test_all_samples_tied_and_two_valued_genes():
    rng = np.random.default_rng(3)
    n = 40
    x = np.zeros((n, 4), dtype=np.int64)
    x[:, 1] = rng.integers(0, 2, size=n) * ONE
    x[:, 2] = np.where(rng.random(n) < 0.9, 5, -5) * ONE
    x[:, 3] = np.arange(n)[::-1] * ONE
    y = rng.integers(0, 2, size=n)
    out, _ = _check_exact(x, y, 2, [25, 15])
    # a constant gene puts everybody in bin 3 and maps every bin to its value
    np.testing.assert_array_equal(out["one_way"][0], [0, 0, 0, n])
    np.testing.assert_array_equal(out["means"][0], [0, 0, 0, 0])


def test_selection_state_finds_ranks_and_sorts():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 10, 200):
        d = 20
        keys = rng.permutation(n * d).reshape(d, n)
        plan = QuartilePlan.for_n(n)
        for full in (False, True):
            st = SelectionState(d=d, n=n, ranks=plan.ranks, full_sort=full)
            flat = keys.reshape(-1)
            while not st.done:
                e, p, seg = st.pairs()
                st.update(flat[e] < flat[p][seg])
            got = np.take_along_axis(keys, st.selected(), axis=1)
            np.testing.assert_array_equal(got, np.sort(keys, axis=1)[:, list(plan.ranks)])
            if full:
                np.testing.assert_array_equal(np.take_along_axis(keys, st.perm, 1), np.sort(keys, 1))
            else:
                assert st.comparisons < 7 * n * d + 1


def test_secure_selection_matches_plaintext_order_statistics():
    rng = np.random.default_rng(11)
    d, n = 5, 50
    keys = rng.permutation(2**20)[: n * d].reshape(d, n).astype(np.int64) - 2**19
    shares = share_array(keys, rng=rng)

    def server(i, transport):
        party = Party.setup(i, transport, seed=5)
        pos, _ = select_order_statistics(party, shares[i], ranks=(0, 17, n - 1), cmp_bits=22)
        return pos

    pos = run_parties(server)
    for p in pos[1:]:
        np.testing.assert_array_equal(p, pos[0])
    np.testing.assert_array_equal(np.take_along_axis(keys, pos[0], 1), np.sort(keys, 1)[:, [0, 17, n - 1]])


def test_threshold_bits_equal_three_comparisons_on_ties_and_extremes():
    """The two-step oblivious search gives exactly [4x >= T_j] for every j, ties and the width's extremes included."""
    rng = np.random.default_rng(12)
    top = 2**42 - 1
    # per gene (T1, T2, T3), sorted: distinct, pairs tied, all tied, at the extremes of the comparison width
    t = np.array([[-8, 0, 8], [0, 0, 8], [-8, 8, 8], [5, 5, 5], [-top, 0, top], [top - 1, top, top],
                  [-top, -top, -top + 1]], dtype=np.int64).T
    d = t.shape[1]
    # values: every threshold, its neighbours and random ones (4x within the width)
    near = np.concatenate([t + k for k in (-1, 0, 1)]).clip(-top, top)  # (9, d)
    x4 = np.concatenate([near, rng.integers(-top, top + 1, size=(40, d))])
    x4 = (x4 // 4) * 4  # 4 x
    ts, xs = share_array(t, rng=rng), share_array(np.ascontiguousarray(x4.T), rng=rng)  # genes in rows

    def server(i, transport):
        party = Party.setup(i, transport, seed=8)
        return party.reveal(threshold_bits(party, xs[i], ts[i]))

    got = run_parties(server)
    for g in got[1:]:
        np.testing.assert_array_equal(g, got[0])
    want = (x4.T[None, :, :] >= t[:, :, None]).astype(np.uint64)  # (3, d, n)
    np.testing.assert_array_equal(got[0], want)


def test_in_mpc_noise_has_the_exact_reference_distribution():
    """The rep3 noise is the integer Z of fedsyn.noise: same support, same probabilities."""
    from scipy.stats import chisquare

    from fedsyn.engines.rep3 import reconstruct

    sigma, m = 3.5, 60_000

    def server(i, transport):
        party = Party.setup(i, transport, seed=9)
        return grid_noise(party, m, sigma)

    z = reconstruct(run_parties(server)).view(np.int64)
    ks, probs = GridNoise(sigma).pmf()
    assert z.min() >= ks[0] and z.max() <= ks[-1]  # integers inside the exact support
    counts = np.bincount(z - ks[0], minlength=ks.size)
    expected = probs * m
    keep = expected >= 5  # chi-square on the cells with enough mass, the tails pooled
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    assert chisquare(obs, exp * obs.sum() / exp.sum()).pvalue > 1e-4
    assert abs(z.mean()) < 5 * sigma / np.sqrt(m)


def test_noisy_outputs_are_near_exact_counts():
    rng = np.random.default_rng(5)
    n, d, n_labels, sigma = 60, 30, 3, 2.0
    x = _random_case(rng, n, d)
    y = rng.integers(0, n_labels, size=n)
    params = ProtocolParams(n_labels=n_labels, sigma=sigma)
    xs, ys = _split(x, y, n_labels, [30, 30])
    out, _ = run_in_process(xs, ys, params, seed=4)
    ref = bin_statistics(x, y, n_labels)
    err = np.concatenate(
        [
            (out["one_way"] - ref.counts).ravel(),
            (out["label"] - ref.label_counts).ravel(),
            (out["two_way"] - ref.two_way).ravel(),
        ]
    )
    assert err.dtype == np.int64  # every released count is an integer
    assert err.size == d * 4 + n_labels + d * 4 * n_labels
    assert abs(err.mean()) < 5 * sigma / np.sqrt(err.size)
    assert 0.8 < err.std() / sigma < 1.2
    np.testing.assert_array_equal(out["means"], ref.means)  # means are exact in paper mode


def _edge_reference(x, y, n_labels, params):
    """The reference's strict / public-edges statistics of the pooled data, without noise."""
    from fedsyn.edges import bin_geometry, edges_from_histogram, public_edges_fp
    from fedsyn.reference import edge_statistics, histograms

    hist = histograms(x, params) if params.profile == "strict" else None
    edges = edges_from_histogram(hist, params) if hist is not None else public_edges_fp(params)
    geometry = bin_geometry(edges, params)
    return hist, geometry, edge_statistics(x, y, n_labels, geometry, params)


def test_edge_search_equals_five_comparisons_on_tied_bounds_and_boundary_values():
    """The oblivious search over a_0 <= e_1 <= e_2 <= e_3 <= b_3 gives the reference's bins, tables and clipped sums
    with tied edges and bounds and every value at or next to one of them."""
    from fedsyn.edges import BinGeometry
    from fedsyn.engines.rep3.edges_protocol import edge_statistics
    from fedsyn.reference import edge_statistics as ref_edge_statistics

    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False, profile="public-edges", value_range=(0.0, 32.0),
                            edges=((1.0, 2.0, 3.0),))
    u = 1 << 10
    bounds = np.array([[2 * u, 5 * u, 9 * u, 14 * u, 20 * u],  # distinct
                       [5 * u, 5 * u, 9 * u, 14 * u, 14 * u],  # a_0 = e_1, e_3 = b_3
                       [2 * u, 9 * u, 9 * u, 9 * u, 20 * u],  # all edges tied
                       [0, 0, 0, 0, 0],  # everything at the bottom of the range
                       [2 * u, 5 * u, 5 * u, 14 * u, 30 * u]], dtype=np.int64)  # e_1 = e_2
    d = bounds.shape[0]
    centers = (bounds[:, :4] + bounds[:, 1:]) // 2
    geo = BinGeometry(edges=bounds[:, 1:4].copy(), bounds=bounds, centers=centers,
                      unit_bits=np.zeros((d, 4), np.int64))
    rng = np.random.default_rng(21)
    near = np.concatenate([bounds.T + k for k in (-1, 0, 1)])  # (15, d): every bound and its neighbours
    x = np.concatenate([near, rng.integers(0, 32 * u, size=(30, d))]).clip(0, (32 << 16) - 1)
    y = rng.integers(0, 3, size=x.shape[0])
    want = ref_edge_statistics(x, y, 3, geo, params)
    xs, ys = share_array(x, rng=rng), share_array(label_onehot(y, 3), rng=rng)

    def server(i, transport):
        party = Party.setup(i, transport, seed=2)
        label, two_way, sums, bits = edge_statistics(party, xs[i], ys[i], geo, params, keep_bits=True)
        return [party.reveal(v) for v in (label, two_way, sums, bits)]

    got = run_parties(server)[0]
    np.testing.assert_array_equal(got[0].view(np.int64), want.label_counts)
    np.testing.assert_array_equal(got[1].view(np.int64), want.two_way)
    np.testing.assert_array_equal(got[2].view(np.int64), want.sums)
    np.testing.assert_array_equal(got[3].sum(axis=0), want.bins)


@pytest.mark.parametrize("profile,hist_bits", [("strict", 5), ("public-edges", 5), ("strict", 1), ("strict", 2),
                                               ("strict", 7)])
def test_edge_profiles_match_the_reference_bit_for_bit(profile, hist_bits):
    rng = np.random.default_rng(8)
    n, d = 57, 9
    x = rng.normal(8, 4, size=(n, d))
    x[:6, 0] = -40.0  # below the value range: clipped inside the MPC
    x[6:9, 1] = 90.0  # above it
    x[:, 2] = 7.25  # constant
    x[:30, 3] = 0.0  # sparse, at the lower bound
    xf = encode(x)
    y = rng.integers(0, 3, size=n)
    edges = tuple((float(a), float(b), float(c)) for a, b, c in np.sort(rng.uniform(2, 14, size=(d, 3)), axis=1))
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False, profile=profile, value_range=(0.0, 32.0),
                            hist_bits=hist_bits, edges=edges if profile == "public-edges" else None)
    hist, geometry, ref = _edge_reference(xf, y, 3, params)
    out, stats = run_in_process([xf[:20], xf[20:]], [label_onehot(y[:20], 3), label_onehot(y[20:], 3)], params,
                                seed=1)
    assert set(out) == {"label", "two_way", "sums"} | ({"histogram"} if profile == "strict" else set())
    if hist is not None:
        np.testing.assert_array_equal(out["histogram"], hist)  # phase 1, opened to every server
    np.testing.assert_array_equal(out["label"], ref.label_counts)
    np.testing.assert_array_equal(out["two_way"], ref.two_way)
    np.testing.assert_array_equal(out["sums"], round_to_unit(ref.sums, geometry.unit_bits))  # on each bin's grid
    assert {"clip", "marginals", "noise"} <= set(stats[0]["phases"])


def test_strict_noise_is_on_every_grid_and_inside_its_support():
    rng = np.random.default_rng(9)
    n, d = 60, 6
    x = encode(rng.normal(8, 3, size=(n, d)))
    y = rng.integers(0, 2, size=n)
    params = ProtocolParams(n_labels=2, sigma=1.5, hist_sigma=2.0, sum_sigma=20.0, profile="strict",
                            value_range=(0.0, 32.0), hist_bits=5)
    out, _ = run_in_process([x], [label_onehot(y, 2)], params, seed=2)
    exact = replace(params, noise=False, sigma=0.0, hist_sigma=0.0, sum_sigma=0.0)
    hist = out["histogram"]
    from fedsyn.edges import bin_geometry, edges_from_histogram
    from fedsyn.reference import edge_statistics, histograms

    dev_h = hist - histograms(x, exact)
    assert 0 < np.abs(dev_h).max() <= GridNoise(2.0).pmf()[0][-1]
    # phase 2 used the edges of the NOISY histograms, which every party computes alike
    geometry = bin_geometry(edges_from_histogram(hist, params), params)
    ref = edge_statistics(x, y, 2, geometry, params)
    assert np.abs(out["two_way"] - ref.two_way).max() <= GridNoise(1.5).pmf()[0][-1]
    dev_s = out["sums"] - round_to_unit(ref.sums, geometry.unit_bits)
    assert 0 < np.abs(dev_s).max() <= GridNoise(20.0).pmf()[0][-1]


def test_open_outputs_detects_inconsistent_shares():
    rng = np.random.default_rng(1)
    x = _random_case(rng, 9, 3)
    y = rng.integers(0, 2, size=9)
    params = ProtocolParams(n_labels=2, sigma=0.0, noise=False)
    shared = (share_array(x, rng=rng), share_array(label_onehot(y, 2), rng=rng))

    def server(i, transport):
        party = Party.setup(i, transport, seed=1)
        return run_protocol1(party, [HolderInput(shared[0][i], shared[1][i])], params)

    res = run_parties(server)
    open_outputs(res, params)  # consistent
    res[1].one_way.b[0, 0] += np.uint64(1)
    with pytest.raises(ProtocolError):
        open_outputs(res, params)


@pytest.mark.parametrize("profile", ["paper", "strict"])
def test_output_shares_are_fresh(profile):
    # The release server sees all three shares of every output: they must be
    # re-randomized, not e.g. the holders' label shares summed (noise off here).
    rng = np.random.default_rng(2)
    x = _random_case(rng, 12, 3)
    y = rng.integers(0, 3, size=12)
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False, profile=profile,
                            value_range=(-2.0**20, 2.0**20) if profile == "strict" else None, hist_bits=4)
    shared = (share_array(x, rng=rng), share_array(label_onehot(y, 3), rng=rng))

    def run(seed):
        def server(i, transport):
            party = Party.setup(i, transport, seed=seed)
            return run_protocol1(party, [HolderInput(shared[0][i], shared[1][i])], params)

        return run_parties(server)

    first, second = run(1), run(2)
    a, b = open_outputs(first, params), open_outputs(second, params)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    label_sum = shared[1][0].a.sum(axis=0, dtype=np.uint64)
    assert not np.any(first[0].label.a == label_sum)
    for name in first[0].outputs():
        for j in range(3):  # every share of every output element changes with the servers' keys
            assert not np.any(first[j].outputs()[name].a == second[j].outputs()[name].a), (name, j)


def test_bad_inputs_are_refused():
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False)
    with pytest.raises(InputError, match="one-hot"):
        run_in_process([np.zeros((4, 2), np.int64)], [np.zeros((4, 2), np.int64)], params)
    with pytest.raises(InputError, match="int64"):
        run_in_process([np.zeros((4, 2))], [label_onehot(np.zeros(4, int), 3)], params)


def test_real_fixture_subset_matches_reference():
    if not FIXTURE.exists():
        pytest.skip(f"fixture {FIXTURE} absent")
    import pandas as pd

    df = pd.read_csv(FIXTURE)
    genes = [c for c in df.columns if c not in ("sample_id", "subtype")][:120]
    x = encode(df[genes].to_numpy(dtype=np.float64))
    codes, _ = pd.factorize(df["subtype"], sort=True)
    n_labels = int(codes.max()) + 1
    _check_exact(x, codes, n_labels, [37, 63], seed=3)


@pytest.mark.slow
def test_real_fixture_all_genes_both_binnings():
    if not FIXTURE.exists():
        pytest.skip(f"fixture {FIXTURE} absent")
    import pandas as pd

    df = pd.read_csv(FIXTURE)
    genes = [c for c in df.columns if c not in ("sample_id", "subtype")]
    x = encode(df[genes].to_numpy(dtype=np.float64))
    codes, _ = pd.factorize(df["subtype"], sort=True)
    n_labels = int(codes.max()) + 1
    _check_exact(x, codes, n_labels, [50, 30, 20], binning="select", seed=4)
    _check_exact(x, codes, n_labels, [100], binning="sort", seed=5)


def test_gene_blocks_give_identical_outputs(monkeypatch):
    from fedsyn.engines.rep3 import protocol1

    rng = np.random.default_rng(42)
    x = encode(rng.normal(5, 2, size=(37, 11)))
    x[:, 3] = 0
    y = rng.integers(0, 3, 37)
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False)
    ref = bin_statistics(x, y, 3)
    monkeypatch.setattr(protocol1, "GENE_BLOCK_ELEMENTS", 37 * 4)  # blocks of 4 genes: 4, 4, 3
    out, stats = protocol1.run_in_process([x[:20], x[20:]], [label_onehot(y[:20], 3), label_onehot(y[20:], 3)], params, seed=1)
    assert stats[0]["phases"]["gene_blocks"] == 3
    assert np.array_equal(out["one_way"], ref.counts)
    assert np.array_equal(out["two_way"], ref.two_way)
    assert np.array_equal(out["means"], ref.means)
