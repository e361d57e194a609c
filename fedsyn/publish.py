"""The release role's outputs: synthesize from the noisy measurements and write them.

Shared by ``fedsyn run`` (:func:`fedsyn.pipeline.run_pipeline`) and the
release server of a deployment (``fedsyn release``), so both write the same
files with the same meaning:

``measurements.npz``
    exactly what the computing servers released (:class:`NoisyMeasurements`);
``synthetic.csv``
    the synthetic records (Private-PGM fit, sampling, de-binning).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import save_npz_atomic
from .data import ExpressionData
from .measurements import NoisyMeasurements
from .release import DEFAULT_ITERATIONS, Estimator, synthesize
from .writers import write_expression

logger = logging.getLogger(__name__)

__all__ = ["Published", "write_measurements", "synthesize_and_write"]


@dataclass(frozen=True)
class Published:
    """What :func:`synthesize_and_write` produced.

    Attributes
    ----------
    synthetic : ExpressionData or None
        The synthetic records (``None`` when not synthesized).
    files : dict of str to pathlib.Path
        ``measurements`` and, if synthesized, ``synthetic``.
    """

    synthetic: ExpressionData | None
    files: dict[str, Path]


def write_measurements(m: NoisyMeasurements, path: str | os.PathLike) -> Path:
    """Write ``measurements.npz`` atomically."""
    return save_npz_atomic(path, **m.to_npz_dict())


def synthesize_and_write(
    measurements: NoisyMeasurements,
    out_dir: str | os.PathLike,
    *,
    synthesize_records: bool = True,
    n_records: int | None = None,
    estimator: Estimator = "star",
    iterations: int = DEFAULT_ITERATIONS,
    rng: np.random.Generator | None = None,
    warm_start: bool = True,
) -> Published:
    """Write the measurements, and fit, sample, de-bin and write the synthetic data.

    Parameters
    ----------
    measurements : NoisyMeasurements
        What the computing servers released.
    out_dir : path-like
        Directory to write into (a staging directory of the caller).
    synthesize_records : bool, default True
        ``False``: only write the measurements.
    n_records : int or None, default None
        Records to sample; default ``measurements.n_records``.
    estimator, iterations
        Of the Private-PGM fit (:func:`fedsyn.release.fit`).
    rng : numpy.random.Generator or None, default None
        Sampling randomness (post-processing); OS-seeded when ``None``.
    warm_start : bool, default True
        Start the fit at the noisy tables (:func:`fedsyn.release.fit`).
    """
    out = Path(out_dir)
    files = {"measurements": write_measurements(measurements, out / "measurements.npz")}
    synthetic = None
    if synthesize_records:
        synth = synthesize(measurements, n_records=n_records, estimator=estimator, iterations=iterations, rng=rng,
                           warm_start=warm_start)
        synthetic = synth.to_expression()
        files["synthetic"] = write_expression(synthetic, out / "synthetic.csv")
    return Published(synthetic=synthetic, files=files)
