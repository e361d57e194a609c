"""Every bad input that load_expression must refuse, with a message naming file and place."""

from __future__ import annotations

import gzip

import pytest

from fedsyn.errors import InputError
from fedsyn.readers import load_expression

GOOD = "sample_id,G1,G2,G3,label\nS1,1,2,3,a\nS2,4,5,6,b\nS3,7,8,9,a\n"


def write(tmp_path, text, name="x.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def refused(path, *fragments, **kwargs):
    with pytest.raises(InputError) as info:
        load_expression(path, **kwargs)
    msg = str(info.value)
    assert str(path) in msg, msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


def test_good_file_loads(tmp_path):
    data = load_expression(write(tmp_path, GOOD))
    assert data.n_samples == 3 and data.n_genes == 3


def test_missing_file(tmp_path):
    refused(tmp_path / "absent.csv", "not found")


def test_directory(tmp_path):
    refused(tmp_path, "directory")


def test_empty_file(tmp_path):
    refused(write(tmp_path, ""), "empty")
    refused(write(tmp_path, "\n\n  \n", "blank.csv"), "empty")


def test_binary_file(tmp_path):
    p = tmp_path / "x.csv"
    p.write_bytes(b"\xff\xfe\x00\x81garbage\x00\xff")
    refused(p, "UTF-8")


def test_corrupt_gzip(tmp_path):
    p = tmp_path / "x.csv.gz"
    p.write_bytes(b"\x1f\x8b" + b"not really gzip")
    refused(p, "cannot read")


def test_header_only(tmp_path):
    refused(write(tmp_path, "sample_id,G1,label\n"), "no samples")


def test_ragged_rows(tmp_path):
    refused(write(tmp_path, GOOD.replace("S2,4,5,6,b", "S2,4,5,6,7,b")), "line 3", "'S2'", "6 fields")
    refused(write(tmp_path, GOOD.replace("S3,7,8,9,a", "S3,7,9,a"), "short.csv"), "line 4", "4 fields")


def test_non_numeric_value(tmp_path):
    p = write(tmp_path, GOOD.replace("S2,4,5,6,b", "S2,4,x5,6,b"))
    refused(p, "non-numeric", "'x5'", "'G2'", "'S2'", "line 3")


def test_non_numeric_value_is_ambiguity_without_label_column_name(tmp_path):
    text = GOOD.replace("label", "subtype").replace("S2,4,5,6,b", "S2,4,x5,6,b")
    refused(write(tmp_path, text), "'G2'", "'subtype'", "label_column")
    # naming the label column turns it into a precise cell error
    refused(write(tmp_path, text, "y.csv"), "'G2'", "line 3", label_column="subtype")


@pytest.mark.parametrize("token", ["NA", "", "nan"])
def test_missing_value(tmp_path, token):
    p = write(tmp_path, GOOD.replace("S3,7,8,9,a", f"S3,7,{token},9,a"))
    refused(p, "missing value", "'G2'", "'S3'", "line 4")


@pytest.mark.parametrize("token", ["inf", "-Inf"])
def test_infinite_value(tmp_path, token):
    p = write(tmp_path, GOOD.replace("S3,7,8,9,a", f"S3,7,8,{token},a"))
    refused(p, "infinite", "'G3'", "'S3'", "line 4")


def test_negative_counts(tmp_path):
    p = write(tmp_path, GOOD.replace("S2,4,5,6,b", "S2,4,-5,6,b"))
    refused(p, "negative value -5.0 for gene 'G2'", "'S2'", "line 3", kind="counts")
    assert load_expression(p).kind == "normalized"  # auto accepts it as normalized


def test_non_integer_counts(tmp_path):
    p = write(tmp_path, GOOD.replace("S2,4,5,6,b", "S2,4,5.5,6,b"))
    refused(p, "non-integer value 5.5 for gene 'G2'", "'S2'", kind="counts")


def test_duplicate_sample_ids(tmp_path):
    p = write(tmp_path, GOOD.replace("S3,", "S1,"))
    refused(p, "duplicate sample id", "'S1'", "line 4", "line 2")


def test_duplicate_gene_names(tmp_path):
    p = write(tmp_path, GOOD.replace("G3", "G1"))
    refused(p, "duplicate", "'G1'")


def test_missing_label_column(tmp_path):
    text = "sample_id,G1,G2\nS1,1,2\nS2,3,4\n"
    refused(write(tmp_path, text), "label column")
    refused(write(tmp_path, GOOD, "y.csv"), "no label column 'subtype'", label_column="subtype")


def test_ambiguous_label_column(tmp_path):
    text = "sample_id,G1,tissue,subtype\nS1,1,x,a\nS2,2,y,b\n"
    msg = refused(write(tmp_path, text), "'tissue'", "'subtype'")
    assert "label_column" in msg


def test_missing_label_value(tmp_path):
    p = write(tmp_path, GOOD.replace("S2,4,5,6,b", "S2,4,5,6,"))
    refused(p, "missing label", "'S2'", "line 3")


def test_fewer_than_two_classes(tmp_path):
    p = write(tmp_path, GOOD.replace(",b\n", ",a\n"))
    refused(p, "fewer than 2 classes")


def test_fewer_than_two_samples(tmp_path):
    p = write(tmp_path, "sample_id,G1,label\nS1,1,a\n")
    refused(p, "only 1 sample")


def test_zero_genes(tmp_path):
    p = write(tmp_path, "sample_id,label\nS1,a\nS2,b\n")
    refused(p, "zero gene")


def test_label_outside_agreed_domain(tmp_path):
    p = write(tmp_path, GOOD)
    refused(p, "'b'", "'S2'", "line 3", "domain", label_names=["a", "c"])


def test_missing_sample_column(tmp_path):
    refused(write(tmp_path, GOOD), "no sample-id column 'id'", sample_column="id")


def test_gzip_ragged_is_reported_with_line(tmp_path):
    p = tmp_path / "x.tsv.gz"
    p.write_bytes(gzip.compress(GOOD.replace(",", "\t").replace("S3\t7", "S3\t7\t7").encode()))
    refused(p, "line 4")


def test_h5ad_unreadable(tmp_path):
    p = tmp_path / "x.h5ad"
    p.write_bytes(b"not hdf5")
    refused(p, "AnnData")


def test_h5ad_missing_label_and_nan(tmp_path):
    anndata = pytest.importorskip("anndata")
    import numpy as np
    import pandas as pd

    X = np.arange(12, dtype=float).reshape(4, 3)
    obs = pd.DataFrame({"label": ["a", "b", None, "a"]}, index=[f"S{i}" for i in range(4)])
    adata = anndata.AnnData(X=X, obs=obs, var=pd.DataFrame(index=["G1", "G2", "G3"]))
    p = tmp_path / "x.h5ad"
    adata.write_h5ad(p)
    refused(p, "missing label", "'S2'", "row 3")
    X[1, 2] = np.nan
    adata2 = anndata.AnnData(X=X, obs=obs.fillna("b"), var=pd.DataFrame(index=["G1", "G2", "G3"]))
    p2 = tmp_path / "y.h5ad"
    adata2.write_h5ad(p2)
    refused(p2, "NaN", "'G3'", "'S1'")
    refused(p2, "no label column 'subtype'", label_column="subtype")


def test_ragged_with_quoted_separators(tmp_path):
    text = 'sample_id,G1,label\nS1,1,"a, b"\nS2,2,"c, d",9\n'
    refused(write(tmp_path, text), "line 3", "'S2'", "4 fields")


def test_single_column_header_suggests_sep(tmp_path):
    refused(write(tmp_path, "a|b|c\n1|2|3\n", "x.csv"), "single column", "sep=")
