"""Public gene lists shipped with fedsyn, usable by name (``--gene-list l1000``).

``l1000``
    The 978 landmark genes of the LINCS L1000 assay (Subramanian et al.,
    "A Next Generation Connectivity Map: L1000 Platform and the First 1,000,000
    Profiles", Cell 171(6), 2017), as the paper's datasets use them (CAMDA
    2025; Chen et al. 2024): ``l1000_landmark_genes.tsv`` with the columns
    ``Entrez.ID``, ``Symbol``, ``Name``, ``Gene.Family``, ``Type``,
    ``ENSEMBL.ID``. :func:`fedsyn.preprocess.load_gene_list` matches whichever
    identifier column fits the data (Ensembl ids, symbols or Entrez ids).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["GENE_LISTS", "gene_list_names", "gene_list_path"]

#: Shipped gene lists: name -> file in this package.
GENE_LISTS = {"l1000": "l1000_landmark_genes.tsv"}


def gene_list_names() -> tuple[str, ...]:
    """Names of the shipped gene lists."""
    return tuple(GENE_LISTS)


def gene_list_path(name: str) -> Path:
    """The file of shipped gene list ``name`` (case-insensitive).

    Raises
    ------
    KeyError
        No such list.
    """
    file = GENE_LISTS[name.lower()]
    return Path(str(resources.files(__package__).joinpath(file)))
