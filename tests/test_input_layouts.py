"""Input problems named for what they are, and the layouts of other tools (issue 9).

* raw counts with a few bad cells are an error naming the cell, never silently "normalized";
* a header-only file, a numeric label column and a genes x samples matrix get the real problem named;
* a separate sample sheet (PyDESeq2's counts + metadata, R's colData) in both orientations;
* ``.txt`` separators sniffed as documented; UTF-16; comment lines before the header;
* in-memory AnnData objects and data frames validated like files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedsyn.data import ExpressionData
from fedsyn.errors import InputError
from fedsyn.readers import load_expression


def counts_frame(n=12, d=5, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.poisson(20, size=(n, d))
    ids = [f"S{i:02d}" for i in range(n)]
    genes = [f"ENSG{j:011d}" for j in range(d)]
    labels = np.array(["basal", "luma", "lumb"])[np.arange(n) % 3]
    return pd.DataFrame(values, index=ids, columns=genes), pd.Series(labels, index=ids)


def write_samples_in_rows(path, frame, labels, *, label_name="label", sep=","):
    out = frame.copy()
    out[label_name] = labels
    out.index.name = "sample_id"
    out.to_csv(path, sep=sep)
    return path


# -- raw counts with bad cells ------------------------------------------------------------------


@pytest.mark.parametrize("bad, what", [(-3, "negative value -3.0"), (2.5, "non-integer value 2.5")])
def test_almost_counts_name_the_bad_cell_instead_of_passing_as_normalized(tmp_path, bad, what):
    frame, labels = counts_frame()
    frame = frame.astype(float)
    frame.iloc[4, 2] = bad
    path = write_samples_in_rows(tmp_path / "c.csv", frame, labels)
    with pytest.raises(InputError) as exc:
        load_expression(path)
    msg = str(exc.value)
    assert what in msg and "'ENSG00000000002'" in msg and "'S04' (line 6)" in msg
    assert "kind='normalized'" in msg and "--kind normalized" in exc.value.cli_message()
    assert load_expression(path, kind="normalized").kind == "normalized"  # the explicit way out


def test_clearly_normalized_values_still_pass_as_normalized(tmp_path):
    frame, labels = counts_frame()
    path = write_samples_in_rows(tmp_path / "v.csv", np.log2(frame + 1.0), labels)
    assert load_expression(path).kind == "normalized"


# -- the real problem named ---------------------------------------------------------------------


def test_header_only_file_without_a_label_column_says_no_samples(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("sample_id,G1,G2,subtype\n")
    with pytest.raises(InputError, match="no samples"):
        load_expression(path)


def test_numeric_label_column_is_named_in_cli_words(tmp_path):
    frame, _ = counts_frame()
    path = write_samples_in_rows(tmp_path / "n.csv", np.log2(frame + 1.0), np.arange(12) % 3, label_name="subtype")
    with pytest.raises(InputError) as exc:
        load_expression(path)
    assert "label_column='subtype'" in str(exc.value)
    cli = exc.value.cli_message()
    assert "'subtype' holds integers (0, 1, 2)" in cli and "--label-column subtype" in cli
    assert "label_column=" not in cli
    data = load_expression(path, label_column="subtype")
    assert data.label_names == ("0", "1", "2") and data.n_genes == 5


def test_genes_in_rows_without_a_sample_sheet_gets_a_hint(tmp_path):
    frame, _ = counts_frame()
    path = tmp_path / "gdc.tsv"
    frame.T.rename_axis("gene_id").to_csv(path, sep="\t")
    with pytest.raises(InputError) as exc:
        load_expression(path)
    assert "genes in rows and samples in columns" in str(exc.value)
    assert "--sample-sheet FILE" in exc.value.cli_message()


# -- sample sheets -------------------------------------------------------------------------------


def sheet(path, labels, *, extra=True):
    table = pd.DataFrame({"condition": labels.to_numpy()}, index=labels.index.rename("sample"))
    if extra:
        table["batch"] = 1  # a numeric covariate: not a label candidate
    table.to_csv(path)
    return path


def test_featurecounts_layout_with_sample_sheet_reads_like_samples_in_rows(tmp_path):
    frame, labels = counts_frame()
    plain = load_expression(write_samples_in_rows(tmp_path / "plain.csv", frame, labels))
    fc = tmp_path / "featurecounts.txt"
    body = frame.T.copy()
    body.insert(0, "Length", 1000)
    body.insert(0, "Chr", "chr1;chr1")
    body.loc["__no_feature"] = 7  # HTSeq/STAR summary rows are not genes
    text = "# Program:featureCounts v2.0.6; Command: featureCounts -a genes.gtf ...\n"
    text += body.rename_axis("Geneid").to_csv(sep="\t")
    fc.write_text(text)
    data = load_expression(fc, sample_sheet=sheet(tmp_path / "coldata.csv", labels))
    assert data.gene_names == plain.gene_names and data.sample_ids == plain.sample_ids
    assert np.array_equal(data.values, plain.values) and data.kind == "counts"
    assert data.label_names == plain.label_names and np.array_equal(data.labels, plain.labels)


def test_samples_in_rows_with_sample_sheet_and_its_refusals(tmp_path):
    frame, labels = counts_frame()
    values = tmp_path / "values.csv"
    frame.rename_axis("sample_id").to_csv(values)
    data = load_expression(values, sample_sheet=sheet(tmp_path / "meta.csv", labels), label_column="condition")
    assert data.n_samples == 12 and data.label_names == ("basal", "luma", "lumb")
    short = sheet(tmp_path / "short.csv", labels.iloc[:-1])
    with pytest.raises(InputError, match=r"sample 'S11' \(line 13\) has no row in the sample sheet"):
        load_expression(values, sample_sheet=short)
    both = write_samples_in_rows(tmp_path / "both.csv", frame, labels, label_name="condition")
    with pytest.raises(InputError, match="keep the labels in one place"):
        load_expression(both, sample_sheet=sheet(tmp_path / "meta2.csv", labels))


# -- separators, encodings, comments ------------------------------------------------------------


@pytest.mark.parametrize("sep", [";", ",", "\t"])
def test_txt_separator_is_sniffed_from_the_header(tmp_path, sep):
    frame, labels = counts_frame()
    path = write_samples_in_rows(tmp_path / "x.txt", frame, labels, sep=sep)
    assert load_expression(path).n_genes == 5


def test_utf16_text_as_spreadsheets_save_it(tmp_path):
    frame, labels = counts_frame()
    text = write_samples_in_rows(tmp_path / "u8.tsv", frame, labels, sep="\t").read_text()
    path = tmp_path / "u16.tsv"
    path.write_bytes(text.encode("utf-16"))
    assert load_expression(path).n_samples == 12


def test_a_single_sample_can_be_loaded_when_allowed(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("sample_id,G1,G2,label\nS1,1.5,2.5,a\n")
    with pytest.raises(InputError, match="only 1 sample; at least 2"):
        load_expression(path)
    one = load_expression(path, min_samples=1, label_names=["a", "b"])
    assert one.n_samples == 1 and one.label_names == ("a", "b")


# -- in memory -----------------------------------------------------------------------------------


def test_frames_in_both_orientations_and_anndata_round_trip():
    frame, labels = counts_frame()
    meta = pd.DataFrame({"condition": labels})
    a = ExpressionData.from_frames(frame, meta, label="condition")
    b = ExpressionData.from_frames(frame.T, meta, label="condition")  # R's genes x samples
    assert a.gene_names == b.gene_names and np.array_equal(a.values, b.values) and a.kind == "counts"
    c = ExpressionData.from_frames(a.to_frame(label="condition"))
    assert np.array_equal(c.values, a.values) and np.array_equal(c.labels, a.labels)
    d = ExpressionData.from_anndata(a.to_anndata(label="condition"), label="condition")
    assert d.sample_ids == a.sample_ids and np.array_equal(d.values, a.values) and d.label_names == a.label_names
    with pytest.raises(InputError, match="sample 'S11' \\(row 12\\) has no row in the metadata"):
        ExpressionData.from_frames(frame, meta.iloc[:-1], label="condition")


def test_anndata_with_a_numeric_label_column_names_it():
    import anndata

    frame, _ = counts_frame()
    adata = anndata.AnnData(X=np.log2(frame.to_numpy() + 1.0),
                            obs=pd.DataFrame({"subtype": np.arange(12) % 3}, index=frame.index),
                            var=pd.DataFrame(index=frame.columns))
    with pytest.raises(InputError) as exc:
        ExpressionData.from_anndata(adata)
    assert "'subtype' is numeric" in exc.value.cli_message() and "--label-column subtype" in exc.value.cli_message()
    assert ExpressionData.from_anndata(adata, label="subtype").label_names == ("0", "1", "2")
