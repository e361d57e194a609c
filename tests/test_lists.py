"""The consortium's gene and label lists: one reader everywhere, and `fedsyn lists` to draft them."""

from __future__ import annotations

import numpy as np
import pytest

from fedsyn.data import ExpressionData
from fedsyn.errors import InputError
from fedsyn.lists import consortium_lists, read_names, write_names


@pytest.mark.parametrize("raw", [
    b"TP53\nBRCA1\nESR1\n",
    b"\xef\xbb\xbfTP53\r\nBRCA1\r\n\r\n  ESR1\t \r\n",         # BOM, CRLF, blank line, stray white space
    '"TP53"\n# a comment\nBRCA1\u00a0\nESR1\n'.encode(),       # quotes, comments, non-breaking space
    "TP53\nBRCA1\nESR1\n".encode("utf-16"),                    # "Unicode text" from a spreadsheet
])
def test_names_are_cleaned_the_same_way_everywhere(tmp_path, raw):
    path = tmp_path / "genes.txt"
    path.write_bytes(raw)
    assert read_names(path, what="gene list") == ("TP53", "BRCA1", "ESR1")


def test_duplicates_and_empty_lists_are_refused_naming_the_lines(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("LumA\nLumB\n LumA\n")
    with pytest.raises(InputError, match=r"'LumA' appears twice in the label list \(lines 1 and 3\)"):
        read_names(path, what="label list")
    path.write_text("\n  \n# only a comment\n")
    with pytest.raises(InputError, match="empty"):
        read_names(path)


def test_write_then_read_round_trip_and_refuses_unclean_names(tmp_path):
    assert read_names(write_names(tmp_path / "a.txt", ["g1", "g 2", "g-3"])) == ("g1", "g 2", "g-3")
    with pytest.raises(InputError, match="white space"):
        write_names(tmp_path / "b.txt", ["g1", " g2"])


def _data(genes, labels, source):
    n = len(labels)
    names = tuple(sorted(set(labels)))
    return ExpressionData(values=np.zeros((n, len(genes))), gene_names=tuple(genes),
                          sample_ids=tuple(f"{source}{i}" for i in range(n)),
                          labels=np.array([names.index(x) for x in labels]), label_names=names, source=source)


def test_consortium_lists_take_common_genes_and_all_labels():
    a = _data(["g3", "g1", "g2"], ["10", "2"], "a")
    b = _data(["g1", "g2", "g4"], ["2", "3"], "b")
    genes, labels = consortium_lists([a, b])
    assert genes == ("g1", "g2") and labels == ("2", "3", "10")  # first file's order; labels numerically sorted
