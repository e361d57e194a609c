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
                                 clip=params.clip if params.mean_mode == "dp" else None)
        x = np.concatenate([e.values_fp for e in encoded], axis=0)
        labels = np.concatenate([e.labels for e in encoded])
        stats = reference.bin_statistics(x, labels, params.n_labels)
        opened = reference.protocol1_outputs(stats, params, rng=noise_rng(self.options.seed))
        first = encoded[0]
        m = decode_outputs(opened, gene_names=first.gene_names, label_names=first.label_names, params=params,
                           engine=self.name, meta=privacy_meta(privacy))
        return Measurement(measurements=m, stats={})
