"""Embedded three-party engine: replicated secret sharing over Z_2^64.

Passive security with an honest majority (Araki et al., CCS 2016); fixed-point
truncation and conversions after ABY3 (Mohassel & Rindal, CCS 2018). See
``docs/rep3-primitives.md`` for each primitive's protocol, cost and view.
"""

from .compare import b2a, eqz, geq, lt_public, ltz
from .division import divide_floor
from .prf import PRF
from .runtime import Party, PartyStats, PhaseStats
from .sharing import AShare, BShare, concatenate, reconstruct, reconstruct_bits, share_array, share_bits, stack
from .shuffle import shuffle
from .transport import InProcessNetwork, Transport, run_parties

__all__ = [
    "AShare",
    "BShare",
    "InProcessNetwork",
    "PRF",
    "Party",
    "PartyStats",
    "PhaseStats",
    "Transport",
    "b2a",
    "concatenate",
    "divide_floor",
    "eqz",
    "geq",
    "lt_public",
    "ltz",
    "reconstruct",
    "reconstruct_bits",
    "run_parties",
    "share_array",
    "share_bits",
    "shuffle",
    "stack",
]
