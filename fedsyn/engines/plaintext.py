"""The centralized baseline (Chen et al. 2024): Protocol 1 in plaintext.

A trusted curator pools the holders' data and runs the reference protocols of
:mod:`fedsyn.reference` directly. No input privacy at all -- it exists as the
paper's baseline and as the reference the secure engines are compared with.
The output is still differentially private (same noise as the secure engines).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import fixedpoint, reference
from ..data import ExpressionData
from ..measurements import NoisyMeasurements, means_from_noisy_sums
from ..params import ProtocolParams
from ..randomness import SystemRandom
from .pooling import align_holders


class PlaintextEngine:
    """Runs Protocol 1 in numpy on the pooled data (no MPC)."""

    name = "plaintext"

    def measure(
        self,
        holders: Sequence[ExpressionData],
        params: ProtocolParams,
        *,
        rng=None,
    ) -> NoisyMeasurements:
        """Bin, count and noise the pooled data of all holders.

        Parameters
        ----------
        holders : sequence of ExpressionData
            Preprocessed data of each holder (same genes, same label domain).
        params : ProtocolParams
        rng : generator, optional
            Source of the noise uniforms; the OS CSPRNG when ``None``.
        """
        holders = align_holders(holders, params)
        first = holders[0]
        values = np.concatenate([h.values for h in holders], axis=0)
        labels = np.concatenate([h.labels for h in holders])
        if params.mean_mode == "dp":
            values = np.clip(values, *params.clip)
        x = fixedpoint.encode(values, params.frac_bits, what=f"{first.source} values")
        stats = reference.bin_statistics(x, labels, params.n_labels)
        rng = SystemRandom() if rng is None else rng
        f = params.frac_bits
        one = 1 << f

        def noisy(counts: np.ndarray, sigma: float) -> np.ndarray:
            fp = counts.astype(np.int64) * one
            if params.noise:
                fp = fp + reference.irwin_hall_noise(counts.shape, sigma, frac_bits=f, rng=rng)
            return fixedpoint.decode(fp, f)

        one_way = noisy(stats.counts, params.sigma)
        if params.mean_mode == "paper":
            means = fixedpoint.decode(stats.means, f)
        else:
            sums = stats.sums
            noisy_sums = fixedpoint.decode(sums, f)
            if params.noise:
                noisy_sums = noisy_sums + fixedpoint.decode(
                    reference.irwin_hall_noise(sums.shape, params.sum_sigma, frac_bits=f, rng=rng), f
                )
            means = means_from_noisy_sums(noisy_sums, one_way, params.clip)
        return NoisyMeasurements(
            gene_names=first.gene_names,
            label_names=first.label_names,
            n_records=int(values.shape[0]),
            one_way=one_way,
            label=noisy(stats.label_counts, params.sigma),
            two_way=noisy(stats.two_way, params.sigma),
            bin_means=means,
            sigma=params.sigma if params.noise else 0.0,
            mean_mode=params.mean_mode,
            engine=self.name,
            meta={"frac_bits": f, "binning": "reference", "n_holders": len(holders)},
        )
