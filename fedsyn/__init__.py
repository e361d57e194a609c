"""fedsyn: secure cross-silo generation of DP synthetic bulk RNA-seq data.

Several data holders secret-share their expression matrices to three computing
servers, which bin every gene into quartiles, count 1-way and (gene, label) 2-way
marginals and add Gaussian (Irwin-Hall) noise inside MPC; only the noisy
marginals and bin means reach a release server, which fits Private-PGM and
samples synthetic records (Filienko, De Cock, Pentyala; Chen et al. 2024).

In a notebook: ``fedsyn.Synthesizer(epsilon=10).fit([adata_a, adata_b],
label="subtype").sample(500)`` (:mod:`fedsyn.api`, ``docs/api.md``).
"""

from ._version import __version__
from .api import Synthesizer, as_expression
from .data import ExpressionData, stratified_split
from .errors import (
    BundleError,
    ConfigError,
    EngineUnavailableError,
    FedsynError,
    InputError,
    ProtocolError,
    ReleaseError,
)
from .measurements import NoisyMeasurements
from .readers import load_expression

__all__ = [
    "__version__",
    "Synthesizer",
    "as_expression",
    "load_expression",
    "ExpressionData",
    "stratified_split",
    "NoisyMeasurements",
    "FedsynError",
    "InputError",
    "ConfigError",
    "BundleError",
    "ProtocolError",
    "EngineUnavailableError",
    "ReleaseError",
]
