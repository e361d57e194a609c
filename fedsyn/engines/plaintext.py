"""The centralized baseline (Chen et al. 2024): Protocol 1 in plaintext.

A trusted curator pools the holders' encoded data and runs the reference
protocols of :mod:`fedsyn.reference` directly. No input privacy at all -- it
exists as the paper's baseline and as the reference the secure engines are
compared with. The output is still differentially private: the same noise as
the secure engines, drawn from the OS CSPRNG (or a seed, for experiments).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .. import reference
from ..data import ExpressionData
from ..holder import encode_holders
from ..measurements import decode_outputs, privacy_meta
from ..params import ProtocolParams
from ..randomness import noise_rng
from .base import Measurement

__all__ = ["PlaintextEngine", "PlaintextOptions"]


@dataclass(frozen=True)
class PlaintextOptions:
    """Options of the plaintext engine.

    Parameters
    ----------
    seed : int or None, default None
        Seed of the noise (reproducible experiments ONLY: a seeded release is
        not private). ``None`` draws the noise from the OS CSPRNG.
    """

    seed: int | None = field(default=None, metadata={"cli": False})


class PlaintextEngine:
    """Runs Protocol 1 in numpy on the pooled data (no MPC)."""

    name = "plaintext"

    def __init__(self, options: PlaintextOptions | None = None) -> None:
        self.options = options or PlaintextOptions()

    def measure(
        self, holders: Sequence[ExpressionData], params: ProtocolParams, *, privacy=None
    ) -> Measurement:
        """Bin, count and noise the pooled data of all holders.

        Parameters
        ----------
        holders : sequence of ExpressionData
            Preprocessed data of each holder (same genes, same label domain).
        params : ProtocolParams
        privacy : fedsyn.accounting.PrivacyPlan or None
            Recorded in the measurements' metadata.

        Returns
        -------
        Measurement
        """
        encoded = encode_holders(holders, n_labels=params.n_labels, frac_bits=params.frac_bits,
                                 clip=params.value_range)
        x = reference.clip_to_range(np.concatenate([e.values_fp for e in encoded], axis=0), params)
        labels = np.concatenate([e.labels for e in encoded])
        rng = noise_rng(self.options.seed)
        first = encoded[0]
        genes, label_names = first.gene_names, first.label_names
        hist = None
        if params.profile == "paper":
            stats = reference.bin_statistics(x, labels, params.n_labels)
            opened = reference.protocol1_outputs(stats, params, rng=rng)
            bins, two_way = stats.bins, stats.two_way
        else:
            from ..edges import bin_geometry, edges_from_histogram, public_edges_fp

            hist = reference.noisy_histograms(x, params, rng=rng) if params.profile == "strict" else None
            edges = edges_from_histogram(hist, params) if hist is not None else public_edges_fp(params)
            geometry = bin_geometry(edges, params)
            stats2 = reference.edge_statistics(x, labels, params.n_labels, geometry, params)
            opened = reference.edge_outputs(stats2, geometry, params, rng=rng)
            bins, two_way = stats2.bins, stats2.two_way
        gram = plan = None
        if params.model == "factor":
            gram, plan, extra = reference.factor_outputs(bins, labels, two_way, opened, params, rng=rng)
            opened.update(extra)
        m = decode_outputs(opened, params=params, engine=self.name, histogram=hist, gram=gram, factor=plan,
                           meta=privacy_meta(privacy), gene_names=genes, label_names=label_names)
        return Measurement(measurements=m, stats={})
