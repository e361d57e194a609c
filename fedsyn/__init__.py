"""fedsyn: secure cross-silo generation of DP synthetic bulk RNA-seq data.

Several data holders secret-share their expression matrices to three computing
servers, which bin every gene into quartiles, count 1-way and (gene, label) 2-way
marginals and add Gaussian (Irwin-Hall) noise inside MPC; only the noisy
marginals and bin means reach a release server, which fits Private-PGM and
samples synthetic records (Filienko, De Cock, Pentyala; Chen et al. 2024).
"""

from ._version import __version__
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

__all__ = [
    "__version__",
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
