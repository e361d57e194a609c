"""The holder role: alignment, encoding, the one share splitter; every engine uses it the same way."""

from dataclasses import replace

import numpy as np
import pytest

from fedsyn.engines import make_engine
from fedsyn.errors import ConfigError, InputError
from fedsyn.fixedpoint import encode
from fedsyn.holder import (
    ShareStream,
    align_holders,
    encode_holder,
    replicated_pairs,
    share_holder,
    split_shares,
)
from fedsyn.params import ProtocolParams


def _reordered(h):
    """The same holder with genes reversed and the label domain listed in another order."""
    r = h.subset(genes=np.arange(h.n_genes)[::-1])
    names = tuple(reversed(h.label_names))
    codes = np.array([names.index(n) for n in h.label_names])[h.labels]
    return replace(r, labels=codes, label_names=names, source="reordered")


def test_reordered_holder_is_aligned(small_data):
    a, b = small_data.subset(rows=np.arange(30)), small_data.subset(rows=np.arange(30, 61))
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False)
    aligned = align_holders([a, _reordered(b)], n_labels=params.n_labels)
    assert aligned[1].gene_names == a.gene_names and aligned[1].label_names == a.label_names
    assert np.array_equal(aligned[1].values, b.values)
    assert np.array_equal(aligned[1].labels, b.labels)


@pytest.mark.parametrize("engine,opts", [("plaintext", {}), ("rep3", {"transport": "inprocess"})])
def test_engines_give_the_same_result_for_reordered_holders(small_data, engine, opts):
    a, b = small_data.subset(rows=np.arange(30)), small_data.subset(rows=np.arange(30, 61))
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False)
    ref = make_engine("plaintext").measure([a, b], params).measurements
    got = make_engine(engine, **opts).measure([a, _reordered(b)], params).measurements
    for field in ("one_way", "label", "two_way", "bin_means"):
        assert np.array_equal(getattr(got, field), getattr(ref, field)), field


def test_mismatches_are_refused_naming_the_gene_or_label(small_data):
    fewer = small_data.subset(genes=np.arange(5))
    with pytest.raises(InputError, match="lacks gene 'G5'"):
        align_holders([small_data, fewer], n_labels=3)
    other = replace(small_data, label_names=("a", "b", "zz"), source="other")
    with pytest.raises(InputError, match="label 'zz'"):
        align_holders([small_data, other], n_labels=3)
    with pytest.raises(ConfigError, match="3 labels"):
        align_holders([small_data], n_labels=4)


def test_split_shares_reconstruct_and_each_pair_is_replicated():
    x = np.array([[-3, 0, 7], [2**40 - 1, -(2**40) + 1, 5]], dtype=np.int64)
    s = split_shares(x, stream=ShareStream(np.random.default_rng(0)))
    assert np.array_equal((s[0] + s[1] + s[2]).view(np.int64), x)
    pairs = replicated_pairs(s)
    for i in range(3):
        assert pairs[i][0] is s[i] and pairs[i][1] is s[(i - 1) % 3]
    # the CSPRNG stream gives fresh shares every time
    a, b = split_shares(x), split_shares(x)
    assert not np.array_equal(a[0], b[0])


def test_split_shares_refuses_floats():
    with pytest.raises(InputError, match="encode to fixed point"):
        split_shares(np.array([0.5]))


def test_one_sharing_serves_both_formats(small_data):
    e = encode_holder(small_data, frac_bits=16)
    sh = share_holder(e, rng=np.random.default_rng(1))
    rows = [sh.rows_pair(i) for i in range(3)]
    opened = (rows[0][0] + rows[1][0] + rows[2][0]).view(np.int64)
    assert np.array_equal(opened, e.rows())
    assert np.array_equal(opened[:, : small_data.n_genes], encode(small_data.values))
    # the MP-SPDZ row pairs are the bundles' value and label pairs side by side
    for i in range(3):
        assert np.array_equal(rows[i][1][:, : small_data.n_genes], sh.values[i][1])
        assert np.array_equal(rows[i][0][:, small_data.n_genes :], sh.labels[i][0])


# -- a refusal names the holder that differs (issue 9) -----------------------------------------


def _holders(small_data, k=3):
    parts = np.array_split(np.arange(small_data.n_samples), k)
    return [replace(small_data.subset(rows=p), source=f"hosp{i}.csv") for i, p in enumerate(parts)]


def test_the_odd_holder_is_named_even_when_it_comes_first(small_data):
    hs = _holders(small_data)
    hs[0] = replace(hs[0].subset(genes=np.arange(small_data.n_genes - 1)), source="hosp0.csv")
    with pytest.raises(InputError) as exc:
        align_holders(hs)
    msg = str(exc.value)
    assert msg.startswith("hosp0.csv: its gene list lacks gene 'G5'")
    assert "hosp1.csv, hosp2.csv" in msg


def test_two_disagreeing_holders_are_both_named(small_data):
    a, b = _holders(small_data, 2)
    b = replace(b.subset(genes=np.arange(1, small_data.n_genes)), source="hosp1.csv")
    with pytest.raises(InputError, match="hosp1.csv: its gene list lacks gene 'G0'.*compared with hosp0.csv.*"
                                         "cannot tell which one is wrong"):
        align_holders([a, b])


def test_a_label_outside_the_others_domain_names_the_holder_and_label(small_data):
    hs = _holders(small_data)
    odd = hs[0]
    hs[0] = replace(odd, label_names=("a", "b", "x"), source="hosp0.csv")  # class 'c' is called 'x' there
    if 2 not in set(odd.labels.tolist()):
        pytest.skip("no sample of class c in the first part")
    with pytest.raises(InputError, match=r"hosp0.csv: its label 'x' is outside the label domain \['a', 'b', 'c'\]"):
        align_holders(hs)


def test_a_holder_holding_only_some_classes_is_aligned(small_data):
    hs = _holders(small_data)
    keep = np.flatnonzero(hs[2].labels < 2)
    sub = hs[2].subset(rows=keep)
    hs[2] = replace(sub, label_names=("a", "b"), labels=sub.labels)  # its own, smaller domain
    aligned = align_holders(hs)
    assert aligned[2].label_names == ("a", "b", "c") and np.array_equal(aligned[2].labels, sub.labels)
