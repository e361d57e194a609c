"""The MP-SPDZ engine (the paper's framework), used when ``MP_SPDZ_HOME`` is set.

Importing this package needs no MP-SPDZ installation; constructing
:class:`MpSpdzEngine` does, and raises :class:`fedsyn.errors.EngineUnavailableError`
with instructions when it is missing.
"""

from .engine import MpSpdzEngine, MpSpdzOptions, RunReport
from .persistence import read_persistence_shares, write_holder_persistence, write_persistence_shares
from .runner import find_installation

__all__ = [
    "MpSpdzEngine",
    "MpSpdzOptions",
    "RunReport",
    "find_installation",
    "read_persistence_shares",
    "write_holder_persistence",
    "write_persistence_shares",
]
