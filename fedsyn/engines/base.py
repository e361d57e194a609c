"""The interface every engine implements, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from ..data import ExpressionData
from ..measurements import NoisyMeasurements
from ..params import ProtocolParams

__all__ = ["Engine", "Measurement"]


@dataclass(frozen=True)
class Measurement:
    """What :meth:`Engine.measure` returns.

    Attributes
    ----------
    measurements : NoisyMeasurements
        What the release server sees.
    stats : dict
        Public cost figures of the run (seconds, bytes, rounds per phase and
        server); never data.
    """

    measurements: NoisyMeasurements
    stats: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    """Runs Protocol 1 on the holders' data and returns what the release server sees.

    An engine receives each holder's preprocessed matrix separately (the secure
    engines encode and share it at the holder, :mod:`fedsyn.holder`; the
    plaintext engine pools them) and returns only the noisy measurements --
    never the exact counts, unless ``params.noise`` is ``False`` (testing
    only). Engines are constructed from a frozen options dataclass
    (``options``) from which the CLI's choices are generated
    (:mod:`fedsyn.engines`).
    """

    name: str

    def measure(
        self, holders: Sequence[ExpressionData], params: ProtocolParams, *, privacy: Any | None = None
    ) -> Measurement:
        """Run Protocol 1; ``privacy`` (:class:`fedsyn.accounting.PrivacyPlan`) is the plan behind
        ``params``' noise, which the engine's servers check and the measurements record."""
        ...
