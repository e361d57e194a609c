"""The paper's datasets, the shared test fixture and simulated stand-ins.

fedsyn ships no patient data. :func:`load_dataset` loads a registered dataset
from a file the user obtained (and says where to get it when it is absent), the
small real fixture used by the tests, or a simulated data set of the paper's
shape (:mod:`fedsyn.datasets.simulator`) with the realistic, TCGA-BRCA-like
co-expression profile (:data:`fedsyn.datasets.simulator.BRCA_LIKE`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fedsyn.data import ExpressionData
from fedsyn.errors import InputError

from .simulator import BRCA_LIKE

__all__ = ["DatasetInfo", "DATASETS", "dataset_names", "get_dataset", "load_dataset", "default_data_dir"]

_SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about one registered dataset.

    Attributes
    ----------
    name : str
        Registry key (lower case).
    title : str
        Human-readable name.
    n_samples, n_labels, n_genes : int
        Shape as the paper reports it (genes after filtering).
    labels : str
        What the classes are.
    kind : {"file", "fixture", "simulated"}
    files : tuple of str
        File names looked for in the data directory, in order.
    label_column : str or None
        Label column of the file (``None``: detected).
    source : str
        Where the data comes from and how to get it.
    simulator_options : mapping
        Simulated presets: keyword options of
        :func:`fedsyn.datasets.simulator.simulate` besides the shape (the
        co-expression profile); empty for files.
    """

    name: str
    title: str
    n_samples: int
    n_labels: int
    n_genes: int
    labels: str
    kind: Literal["file", "fixture", "simulated"]
    files: tuple[str, ...] = ()
    label_column: str | None = None
    source: str = ""
    simulator_options: Mapping[str, Any] = field(default_factory=dict, repr=False)


def _files(stem: str) -> tuple[str, ...]:
    return tuple(f"{stem}{ext}" for ext in (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".h5ad"))


_CAMDA = (
    "CAMDA 2025 Health Privacy Challenge (https://camda.info ; data "
    "released to registered participants), prepared from TCGA STAR counts of primary tumours "
    "(GDC portal): genes with count >= 1 in >= 10% of samples, DESeq2 VST, the 978 L1000 "
    "landmark genes. From raw GDC counts, `fedsyn.preprocess` with the L1000 list reproduces "
    "the preparation."
)

_SIMULATED = (
    "fedsyn.datasets.simulator with TCGA-BRCA-like co-expression modules (raw counts; run "
    "fedsyn.preprocess for VST values)"
)

DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="tcga-brca",
            title="TCGA-BRCA",
            n_samples=1089,
            n_labels=5,
            n_genes=978,
            labels="PAM50 subtypes (LumA, LumB, Basal, Her2, Normal)",
            kind="file",
            files=_files("tcga_brca"),
            source=_CAMDA,
        ),
        DatasetInfo(
            name="tcga-combined",
            title="TCGA-COMBINED",
            n_samples=4323,
            n_labels=10,
            n_genes=978,
            labels="10 tissue / cancer types",
            kind="file",
            files=_files("tcga_combined"),
            source=_CAMDA,
        ),
        DatasetInfo(
            name="all",
            title="ALL",
            n_samples=1181,
            n_labels=4,
            n_genes=958,
            labels="4 leukemia subtypes",
            kind="file",
            files=_files("all"),
            source=(
                "Warnat-Herresthal et al. 2020, iScience (see the article's data availability "
                "section), as used by Chen et al. 2024."
            ),
        ),
        DatasetInfo(
            name="aml",
            title="AML",
            n_samples=1224,
            n_labels=14,
            n_genes=1000,
            labels="14 AML subtypes",
            kind="file",
            files=_files("aml"),
            source="Leukemia 38(4), 2024 (see the article's data availability section).",
        ),
        DatasetInfo(
            name="tcga-brca-fixture",
            title="TCGA-BRCA fixture (100 samples)",
            n_samples=100,
            n_labels=5,
            n_genes=978,
            labels="PAM50 subtypes (column 'subtype')",
            kind="fixture",
            files=("tcga_brca_vst_100x978.csv",),
            label_column="subtype",
            source=f"the project's shared test data ({_SHARED_DATA})",
        ),
        DatasetInfo(
            name="simulated-brca",
            title="Simulated, TCGA-BRCA shape",
            n_samples=1089,
            n_labels=5,
            n_genes=1000,
            labels="class_0..class_4 (imbalanced)",
            kind="simulated",
            source=_SIMULATED,
            simulator_options=BRCA_LIKE,
        ),
        DatasetInfo(
            name="simulated-combined",
            title="Simulated, TCGA-COMBINED shape",
            n_samples=4323,
            n_labels=10,
            n_genes=1000,
            labels="class_0..class_9 (imbalanced)",
            kind="simulated",
            source=_SIMULATED,
            simulator_options=BRCA_LIKE,
        ),
    )
}


def dataset_names() -> tuple[str, ...]:
    """The registered names."""
    return tuple(DATASETS)


def get_dataset(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` (case-insensitive; ``_`` and ``-`` alike)."""
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}.")
    return DATASETS[key]


def default_data_dir() -> Path:
    """``$FEDSYN_DATA_DIR`` if set, else ``./data``."""
    return Path(os.environ.get("FEDSYN_DATA_DIR", "data"))


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    seed: int | None = None,
) -> ExpressionData:
    """Load a registered dataset.

    Parameters
    ----------
    name : str
        A name of :data:`DATASETS` (``fedsyn.datasets.registry.dataset_names()``).
    data_dir : str, path-like or None, default None
        Directory holding the dataset files; ``None``: :func:`default_data_dir`.
        The fixture is looked for there first, then in the shared data folder.
    seed : int or None, default None
        Seed of the simulated presets (``None``: fresh randomness each call).

    Returns
    -------
    ExpressionData

    Raises
    ------
    fedsyn.errors.InputError
        If the file is absent (the message says where to get it) or invalid.
    """
    from fedsyn.readers import load_expression

    info = get_dataset(name)
    if info.kind == "simulated":
        from .simulator import simulate_counts

        return simulate_counts(
            info.n_samples, info.n_genes, n_classes=info.n_labels, seed=seed, **info.simulator_options
        )
    directory = Path(data_dir) if data_dir is not None else default_data_dir()
    search = [directory]
    if info.kind == "fixture":
        search.append(_SHARED_DATA)
    for folder in search:
        for fname in info.files:
            candidate = folder / fname
            if candidate.is_file():
                return load_expression(candidate, label_column=info.label_column)
    looked = ", ".join(str(folder) for folder in search)
    raise InputError(
        f"dataset {info.title!r} not found: looked for {', '.join(info.files)} in {looked}. "
        f"fedsyn does not distribute it. Source: {info.source} Save it as samples x genes with a "
        "'sample_id' and a label column (see docs/input.md) under one of those names, or pass "
        "data_dir= / set FEDSYN_DATA_DIR."
    )
