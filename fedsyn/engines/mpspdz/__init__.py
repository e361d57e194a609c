"""The MP-SPDZ engine (the paper's framework), used when ``MP_SPDZ_HOME`` is set.

Importing this package needs no MP-SPDZ installation; constructing
:class:`MpSpdzEngine` does, and raises :class:`fedsyn.errors.EngineUnavailableError`
with instructions when it is missing.
"""

from .engine import MpSpdzEngine, RunReport
from .persistence import read_persistence_shares, share_matrix, write_persistence_shares
from .runner import find_installation

__all__ = [
    "MpSpdzEngine",
    "RunReport",
    "find_installation",
    "read_persistence_shares",
    "share_matrix",
    "write_persistence_shares",
]
