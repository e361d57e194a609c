"""The interface every engine implements."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from ..data import ExpressionData
from ..measurements import NoisyMeasurements
from ..params import ProtocolParams


class Engine(Protocol):
    """Runs Protocol 1 on the holders' data and returns what the release server sees.

    An engine receives each holder's preprocessed matrix separately (the secure
    engines share them at the holder; the plaintext engine pools them) and returns
    only the noisy measurements -- never the exact counts, unless
    ``params.noise`` is ``False`` (testing only).
    """

    name: str

    def measure(
        self,
        holders: Sequence[ExpressionData],
        params: ProtocolParams,
        *,
        rng: np.random.Generator | None = None,
    ) -> NoisyMeasurements:
        ...
