"""Engines that run Protocol 1: ``plaintext`` (reference), ``rep3`` (embedded MPC),
``mp-spdz`` (the paper's engine, via subprocess)."""

from __future__ import annotations

from .base import Engine

ENGINES = ("plaintext", "rep3", "mp-spdz")


def get_engine(name: str, **options) -> Engine:
    """Construct an engine by name.

    Parameters
    ----------
    name : {"plaintext", "rep3", "mp-spdz"}
    **options
        Engine-specific keyword options (e.g. ``transport`` for rep3,
        ``security`` for mp-spdz).
    """
    from ..errors import ConfigError

    if name == "plaintext":
        from .plaintext import PlaintextEngine

        return PlaintextEngine()
    if name == "rep3":
        from .rep3.engine import Rep3Engine

        return Rep3Engine(**options)
    if name == "mp-spdz":
        from .mpspdz.engine import MpSpdzEngine

        return MpSpdzEngine(**options)
    raise ConfigError(f"Unknown engine {name!r}; choose one of {', '.join(ENGINES)}.")


__all__ = ["Engine", "ENGINES", "get_engine"]
