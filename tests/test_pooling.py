"""Every engine brings holders onto one gene order and label domain the same way."""

from dataclasses import replace

import numpy as np
import pytest

from fedsyn.engines import get_engine
from fedsyn.engines.pooling import align_holders
from fedsyn.errors import ConfigError, InputError
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
    aligned = align_holders([a, _reordered(b)], params)
    assert aligned[1].gene_names == a.gene_names and aligned[1].label_names == a.label_names
    assert np.array_equal(aligned[1].values, b.values)
    assert np.array_equal(aligned[1].labels, b.labels)


@pytest.mark.parametrize("engine,opts", [("plaintext", {}), ("rep3", {"transport": "inprocess"})])
def test_engines_give_the_same_result_for_reordered_holders(small_data, engine, opts):
    a, b = small_data.subset(rows=np.arange(30)), small_data.subset(rows=np.arange(30, 61))
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False)
    ref = get_engine("plaintext").measure([a, b], params)
    got = get_engine(engine, **opts).measure([a, _reordered(b)], params)
    for field in ("one_way", "label", "two_way", "bin_means"):
        assert np.array_equal(getattr(got, field), getattr(ref, field)), field


def test_mismatches_are_refused_naming_the_gene_or_label(small_data):
    params = ProtocolParams(n_labels=3, sigma=0.0, noise=False)
    fewer = small_data.subset(genes=np.arange(5))
    with pytest.raises(InputError, match="lacks gene 'G5'"):
        align_holders([small_data, fewer], params)
    other = replace(small_data, label_names=("a", "b", "zz"), source="other")
    with pytest.raises(InputError, match="label 'zz'"):
        align_holders([small_data, other], params)
    with pytest.raises(ConfigError, match="3 labels"):
        align_holders([small_data], ProtocolParams(n_labels=4, sigma=0.0, noise=False))
