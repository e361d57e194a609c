"""Shared fixtures: paths to the read-only data in ../shared and small datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
BRCA_FIXTURE = SHARED_DATA / "tcga_brca_vst_100x978.csv"
L1000_GENES = SHARED_DATA / "l1000_landmark_genes.tsv"


@pytest.fixture
def brca_path() -> Path:
    """The real TCGA-BRCA fixture (100 x 978 VST); skips when absent."""
    if not BRCA_FIXTURE.exists():
        pytest.skip(f"real-data fixture {BRCA_FIXTURE} not present")
    return BRCA_FIXTURE


@pytest.fixture
def small_data():
    """A small normalized ExpressionData with ties, a constant and a sparse gene."""
    from fedsyn.data import ExpressionData

    rng = np.random.default_rng(11)
    n = 61
    values = rng.normal(8.0, 2.0, size=(n, 6))
    values[:, 1] = 5.0  # constant gene
    values[: n * 3 // 5, 2] = 0.0  # sparse gene
    values[:, 3] = np.round(values[:, 3])  # many ties
    labels = rng.integers(0, 3, n)
    return ExpressionData(
        values=values,
        gene_names=tuple(f"G{i}" for i in range(6)),
        sample_ids=tuple(f"S{i}" for i in range(n)),
        labels=labels,
        label_names=("a", "b", "c"),
        source="small",
    )
