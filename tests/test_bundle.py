"""Holder-side share bundles: round trip and every refusal case."""

from __future__ import annotations

import json
import os
import stat
import struct

import numpy as np
import pytest

from fedsyn.bundle import (
    FORMAT_VERSION,
    find_bundles,
    gene_digest,
    load_bundle,
    load_server_bundles,
)
from fedsyn.data import ExpressionData
from fedsyn.errors import BundleError, InputError
from fedsyn.fixedpoint import encode
from fedsyn.holder import encode_holder, share_to_files


def make_data(n=7, d=4, *, seed=0, labels=("A", "B", "C"), source="h"):
    rng = np.random.default_rng(seed)
    return ExpressionData(
        values=rng.normal(3.0, 2.0, size=(n, d)),
        gene_names=tuple(f"g{j}" for j in range(d)),
        sample_ids=tuple(f"s{i}" for i in range(n)),
        labels=rng.integers(0, len(labels), size=n),
        label_names=tuple(labels),
        source=source,
    )


def opened(paths, **kw):
    bs = [load_bundle(p, expected_party=i, **kw) for i, p in enumerate(paths)]
    values = (bs[0].values[0] + bs[1].values[0] + bs[2].values[0]).view(np.int64)
    labels = (bs[0].labels[0] + bs[1].labels[0] + bs[2].labels[0]).view(np.int64)
    return bs, values, labels


@pytest.mark.parametrize("csprng", [True, False])
def test_round_trip_reconstructs_the_encoded_matrix(tmp_path, csprng):
    data = make_data()
    rng = None if csprng else np.random.default_rng(5)
    paths = share_to_files(data, holder_id="hospA", out_dir=tmp_path, rng=rng, run_id="r1")
    assert [p.name for p in paths] == [f"hospA.server{i}.fsb" for i in range(3)]
    bs, values, labels = opened(paths)
    assert np.array_equal(values, encode(data.values, 16))
    expect = np.zeros((7, 3), dtype=np.int64)
    expect[np.arange(7), data.labels] = 1
    assert np.array_equal(labels, expect)  # one-hot 0/1, not scaled
    # replication: server i's second share is server (i-1)'s first
    for i in range(3):
        assert np.array_equal(bs[i].values[1], bs[(i - 1) % 3].values[0])
        assert np.array_equal(bs[i].labels[1], bs[(i - 1) % 3].labels[0])
        assert stat.S_IMODE(os.stat(paths[i]).st_mode) == 0o600
    m = bs[0].manifest
    assert (m.n_samples, m.n_genes, m.n_labels, m.frac_bits, m.ring_bits) == (7, 4, 3, 16, 64)
    assert m.gene_digest == gene_digest(data.gene_names) and m.run_id == "r1"
    # one random sharing id binds the three bundles of this sharing
    assert len(m.sharing_id) == 32 and {b.manifest.sharing_id for b in bs} == {m.sharing_id}
    # one server's shares look nothing like the data
    assert not np.array_equal(bs[0].values[0].view(np.int64), values)


def test_csprng_shares_differ_between_calls(tmp_path):
    data = make_data()
    a = share_to_files(data, holder_id="a", out_dir=tmp_path / "a")
    b = share_to_files(data, holder_id="a", out_dir=tmp_path / "b")
    assert not np.array_equal(load_bundle(a[0], expected_party=0).values[0], load_bundle(b[0], expected_party=0).values[0])


def test_label_domain_and_gene_order_are_aligned(tmp_path):
    data = make_data(labels=("B", "A"))
    genes = ("g3", "g0", "g1", "g2")
    e = encode_holder(data, label_names=("A", "B", "C"), gene_names=genes)
    assert e.gene_names == genes and e.label_names == ("A", "B", "C")
    assert np.array_equal(e.values_fp, encode(data.values[:, [3, 0, 1, 2]]))
    # holder label 0 is "B" -> column 1 of the public domain
    assert np.array_equal(np.argmax(e.onehot, axis=1), np.where(data.labels == 0, 1, 0))
    with pytest.raises(InputError, match="not in the public label domain"):
        encode_holder(data, label_names=("A", "C"))
    with pytest.raises(InputError, match="missing"):
        encode_holder(data, gene_names=("g0", "zzz"))


def test_clip_is_applied_and_recorded(tmp_path):
    data = make_data()
    paths = share_to_files(data, holder_id="h", out_dir=tmp_path, clip=(0.0, 4.0), rng=np.random.default_rng(0))
    bs, values, _ = opened(paths)
    assert np.array_equal(values, encode(np.clip(data.values, 0, 4)))
    assert bs[0].manifest.clip == (0.0, 4.0)


@pytest.fixture
def bundles(tmp_path):
    return share_to_files(make_data(), holder_id="h1", out_dir=tmp_path, rng=np.random.default_rng(1), run_id="run")


def test_wrong_server_refused(bundles):
    with pytest.raises(BundleError, match=rf"{bundles[1].name}.*for server 1, but this is server 0"):
        load_bundle(bundles[1], expected_party=0)


def test_other_gene_list_label_domain_frac_bits_run_refused(bundles, tmp_path):
    with pytest.raises(BundleError, match=rf"{bundles[0].name}.*different gene list"):
        load_bundle(bundles[0], expected_party=0, expected_gene_digest=gene_digest(["x", "y"]))
    with pytest.raises(BundleError, match=rf"{bundles[0].name}.*different label domain"):
        load_bundle(bundles[0], expected_party=0, expected_labels=("A", "B"))
    with pytest.raises(BundleError, match=rf"{bundles[0].name}.*16 fractional bits.*12"):
        load_bundle(bundles[0], expected_party=0, expected_frac_bits=12)
    with pytest.raises(BundleError, match="run 'run'"):
        load_bundle(bundles[0], expected_party=0, expected_run_id="other")
    # and between holders given to the same server
    other = share_to_files(make_data(d=5, seed=3), holder_id="h2", out_dir=tmp_path / "o", rng=np.random.default_rng(2), run_id="run")
    with pytest.raises(BundleError, match=rf"{other[0].name}: holder 'h2': its gene list has gene 'g4' in addition"
                                          r".*compared with holder 'h1'.*cannot tell which one is wrong"):
        load_server_bundles([bundles[0], other[0]], party=0)
    with pytest.raises(BundleError, match="already given"):
        load_server_bundles([bundles[0], bundles[0]], party=0)


def test_server_bundles_come_in_holder_id_order(bundles, tmp_path):
    other = share_to_files(make_data(seed=3), holder_id="a0", out_dir=tmp_path / "o", run_id="run")
    got = load_server_bundles([bundles[1], other[1]], party=1)
    assert [b.manifest.holder_id for b in got] == ["a0", "h1"]


def test_truncated_refused(bundles):
    raw = bundles[2].read_bytes()
    for cut in (10, len(raw) // 2, len(raw) - 1):
        bundles[2].write_bytes(raw[:cut])
        with pytest.raises(BundleError, match=rf"{bundles[2].name}.*truncated"):
            load_bundle(bundles[2], expected_party=2)


def test_corrupted_refused(bundles):
    raw = bytearray(bundles[0].read_bytes())
    raw[-100] ^= 0x01  # a share byte
    bundles[0].write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=rf"{bundles[0].name}.*checksum"):
        load_bundle(bundles[0], expected_party=0)


def test_edited_manifest_refused(bundles):
    raw = bundles[0].read_bytes()
    raw2 = raw.replace(b'"party":0', b'"party":1')  # same length, valid JSON
    assert raw2 != raw
    bundles[0].write_bytes(raw2)
    with pytest.raises(BundleError, match="checksum"):
        load_bundle(bundles[0], expected_party=1)


def test_unknown_version_and_not_a_bundle_refused(bundles, tmp_path):
    raw = bytearray(bundles[0].read_bytes())
    struct.pack_into("<I", raw, 8, FORMAT_VERSION + 1)
    bundles[0].write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=rf"{bundles[0].name}.*unknown bundle format version {FORMAT_VERSION + 1}"):
        load_bundle(bundles[0], expected_party=0)
    junk = tmp_path / "junk.server0.fsb"
    junk.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(BundleError, match="not a fedsyn share bundle"):
        load_bundle(junk, expected_party=0)
    with pytest.raises(BundleError, match="cannot read"):
        load_bundle(tmp_path / "missing.fsb", expected_party=0)


def test_find_bundles(bundles, tmp_path):
    assert find_bundles([bundles[0].parent], party=1) == [bundles[1]]
    with pytest.raises(BundleError, match="no bundles for server 2"):
        find_bundles([tmp_path / "empty"] if (tmp_path / "empty").mkdir() is None else [], party=2)


def test_bad_holder_id(tmp_path):
    with pytest.raises(InputError, match="holder id"):
        share_to_files(make_data(), holder_id="../x", out_dir=tmp_path)


def test_manifest_is_documented_json(bundles):
    raw = bundles[0].read_bytes()
    mlen = struct.unpack_from("<I", raw, 12)[0]
    meta = json.loads(raw[16 : 16 + mlen])
    assert meta["version"] == FORMAT_VERSION and meta["shape"] == [7, 4]
    assert [a["share"] for a in meta["arrays"]] == ["s_0", "s_2", "s_0", "s_2"]
