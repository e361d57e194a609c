"""Loading (fedsyn.readers), writing (fedsyn.writers) and the atomic output helpers (fedsyn.atomic)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from fedsyn.atomic import atomic_path, save_npz_atomic, write_bytes_atomic, write_json_atomic, write_text_atomic
from fedsyn.data import ExpressionData
from fedsyn.errors import InputError
from fedsyn.readers import load_expression
from fedsyn.writers import write_expression

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tcga_brca_vst_100x978.csv"


def make_data(kind="normalized", n=6, d=4):
    rng = np.random.default_rng(0)
    values = rng.poisson(20, size=(n, d)).astype(float) if kind == "counts" else rng.normal(size=(n, d))
    return ExpressionData(
        values=values,
        gene_names=tuple(f"ENSG{i:011d}" for i in range(d)),
        sample_ids=tuple(f"S{i}" for i in range(n)),
        labels=np.arange(n) % 3,
        label_names=("Basal", "LumA", "LumB"),
        kind=kind,
    )


@pytest.mark.skipif(not FIXTURE.exists(), reason="shared TCGA-BRCA fixture absent")
def test_fixture_loads():
    data = load_expression(FIXTURE)
    assert data.values.shape == (100, 978)
    assert data.n_labels == 5
    assert data.label_names == ("BRCA.Basal", "BRCA.Her2", "BRCA.LumA", "BRCA.LumB", "BRCA.Normal")
    assert np.bincount(data.labels).tolist() == [15, 6, 58, 18, 3]
    assert data.kind == "normalized"
    assert data.sample_ids[0].startswith("TCGA-")
    assert data.gene_names[0] == "ENSG00000000003"
    assert np.all(np.isfinite(data.values))
    assert data.source == str(FIXTURE)


@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.csv.gz", "d.tsv.gz", "d.txt"])
def test_round_trip(tmp_path, name):
    data = make_data()
    path = write_expression(data, tmp_path / name)
    back = load_expression(path)
    np.testing.assert_array_equal(back.values, data.values)  # repr floats round-trip exactly
    assert back.gene_names == data.gene_names
    assert back.sample_ids == data.sample_ids
    assert back.label_names == data.label_names
    np.testing.assert_array_equal(back.labels, data.labels)
    assert list(tmp_path.iterdir()) == [path]  # no temp files left


def test_counts_round_trip_and_auto_kind(tmp_path):
    data = make_data("counts")
    path = write_expression(data, tmp_path / "c.csv")
    assert path.read_text().splitlines()[1].split(",")[1].isdigit()  # integers, not "20.0"
    back = load_expression(path)
    assert back.kind == "counts"
    assert load_expression(path, kind="normalized").kind == "normalized"


def test_label_names_domain_order(tmp_path):
    path = write_expression(make_data(), tmp_path / "d.csv")
    back = load_expression(path, label_names=["LumB", "LumA", "Basal", "Her2"])
    assert back.label_names == ("LumB", "LumA", "Basal", "Her2")
    names = np.array(back.label_names)[back.labels]
    assert names.tolist() == ["Basal", "LumA", "LumB"] * 2


def test_integer_labels_sorted_numerically(tmp_path):
    text = "sample_id,G1,label\n" + "".join(f"S{i},{i},{lab}\n" for i, lab in enumerate([10, 2, 1, 2]))
    (tmp_path / "x.csv").write_text(text)
    data = load_expression(tmp_path / "x.csv")
    assert data.label_names == ("1", "2", "10")
    assert data.labels.tolist() == [2, 1, 0, 1]


def test_column_detection(tmp_path):
    # no "sample_id"/"label" names: first unique text column = ids, other text column = labels
    text = "barcode;G1;G2;subtype\nA;1,5;2;x\nB;3;4;y\n".replace(",", ".")
    (tmp_path / "x.dat").write_text(text)
    data = load_expression(tmp_path / "x.dat")  # separator sniffed
    assert data.sample_ids == ("A", "B") and data.gene_names == ("G1", "G2")
    assert data.label_names == ("x", "y") and data.values[0, 0] == 1.5


def test_no_sample_column_uses_line_numbers(tmp_path):
    (tmp_path / "x.csv").write_text("G1,G2,label\n1,2,a\n3,4,b\n")
    data = load_expression(tmp_path / "x.csv")
    assert data.sample_ids == ("line2", "line3")


def test_label_column_option_and_quoted_header(tmp_path):
    (tmp_path / "x.tsv").write_text('"id"\t"G1"\t"grp"\t"other"\nA\t1\tx\tu\nB\t2\ty\tv\n')
    with pytest.raises(InputError, match="'grp', 'other'"):
        load_expression(tmp_path / "x.tsv", sample_column="id")  # ambiguous labels
    # with the label column named, the other text column is a gene with a bad value
    with pytest.raises(InputError, match="non-numeric value 'u' for gene 'other'"):
        load_expression(tmp_path / "x.tsv", label_column="grp", sample_column="id")
    (tmp_path / "y.tsv").write_text('"id"\t"G1"\t"grp"\t"G2"\nA\t1\tx\t3\nB\t2\ty\t4\n')
    data = load_expression(tmp_path / "y.tsv", label_column="grp", sample_column="id")
    assert data.label_names == ("x", "y") and data.gene_names == ("G1", "G2")
    assert data.values.tolist() == [[1.0, 3.0], [2.0, 4.0]]


def test_h5ad_counts_layer(tmp_path):
    anndata = pytest.importorskip("anndata")
    import pandas as pd

    counts = np.array([[1, 0, 5], [2, 3, 4], [0, 0, 9]], dtype=float)
    obs = pd.DataFrame({"subtype": ["a", "b", "a"], "batch": [1, 2, 3]}, index=["s1", "s2", "s3"])
    adata = anndata.AnnData(X=np.log1p(counts), obs=obs, var=pd.DataFrame(index=["g1", "g2", "g3"]))
    adata.layers["counts"] = counts
    adata.write_h5ad(tmp_path / "x.h5ad")
    data = load_expression(tmp_path / "x.h5ad")  # label = the single non-numeric obs column
    assert data.kind == "counts" and data.sample_ids == ("s1", "s2", "s3")
    np.testing.assert_array_equal(data.values, counts)
    norm = load_expression(tmp_path / "x.h5ad", kind="normalized", label_column="subtype")
    np.testing.assert_allclose(norm.values, np.log1p(counts))


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith("out.txt") and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_writers(tmp_path):
    write_text_atomic(tmp_path / "sub" / "a.txt", "héllo")
    assert (tmp_path / "sub" / "a.txt").read_text(encoding="utf-8") == "héllo"
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01", mode=0o600)
    assert stat.S_IMODE(os.stat(tmp_path / "b.bin").st_mode) == 0o600
    write_json_atomic(tmp_path / "c.json", {"x": np.int64(3), "y": np.arange(2), "p": tmp_path})
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": 3, "y": [0, 1], "p": str(tmp_path)}
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "d.json", {"x": float("nan")})
    assert not (tmp_path / "d.json").exists()
    save_npz_atomic(tmp_path / "e.bundle", a=np.arange(3), path=np.ones(2))
    assert (tmp_path / "e.bundle").exists() and not (tmp_path / "e.bundle.npz").exists()
    with np.load(tmp_path / "e.bundle") as z:
        assert z["a"].tolist() == [0, 1, 2] and z["path"].tolist() == [1.0, 1.0]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_quoted_fields_with_separators(tmp_path):
    # a quoted comma forces the csv-module path; both paths give the same result
    text = 'sample_id,G1,G2,label\nS1,1,2,"Her2, enriched"\nS2,3,4,LumA\n'
    (tmp_path / "q.csv").write_text(text)
    data = load_expression(tmp_path / "q.csv")
    assert data.label_names == ("Her2, enriched", "LumA")
    assert data.values.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    (tmp_path / "r.csv").write_text(text.replace('"Her2, enriched"', '"Her2"'))
    assert load_expression(tmp_path / "r.csv").label_names == ("Her2", "LumA")


def test_sample_ids_keep_leading_zeros_and_crlf(tmp_path):
    (tmp_path / "z.csv").write_bytes(b"sample_id,G1,label\r\n001,1.5,a\r\n002,2.5,b\r\n")
    data = load_expression(tmp_path / "z.csv")
    assert data.sample_ids == ("001", "002") and data.values[:, 0].tolist() == [1.5, 2.5]


@pytest.mark.parametrize("kind", ["normalized", "counts"])
def test_h5ad_round_trip(tmp_path, kind):
    data = make_data(kind)
    path = write_expression(data, tmp_path / "d.h5ad")
    assert path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"  # HDF5, not CSV text under an .h5ad name
    back = load_expression(path)
    np.testing.assert_array_equal(back.values, data.values)
    assert (back.gene_names, back.sample_ids, back.label_names) == (
        data.gene_names, data.sample_ids, data.label_names)
    np.testing.assert_array_equal(back.labels, data.labels)
    assert back.kind == kind
    assert list(tmp_path.iterdir()) == [path]
