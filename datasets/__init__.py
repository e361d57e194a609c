"""Dataset registry and RNA-seq simulator (installed as ``fedsyn.datasets``).

* :mod:`fedsyn.datasets.registry`: the paper's datasets (TCGA-BRCA, TCGA-COMBINED,
  ALL, AML), the shared TCGA-BRCA fixture and simulated presets, loaded with
  :func:`load_dataset`.
* :mod:`fedsyn.datasets.simulator`: negative-binomial bulk RNA-seq counts with
  classes, differential expression and co-expression modules.
"""

from .registry import DATASETS, DatasetInfo, dataset_names, get_dataset, load_dataset
from .simulator import SimulationTruth, simulate, simulate_counts

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "dataset_names",
    "get_dataset",
    "load_dataset",
    "SimulationTruth",
    "simulate",
    "simulate_counts",
]
