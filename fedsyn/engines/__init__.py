"""Engines that run Protocol 1, and the registry the CLI and the API build them from.

========== ============================================ ==========================================
name       options (frozen dataclass)                   what
========== ============================================ ==========================================
plaintext  :class:`~.plaintext.PlaintextOptions`         the centralized baseline, reference
rep3       :class:`~.rep3.engine.Rep3Options`            embedded three-party MPC (default)
mp-spdz    :class:`~.mpspdz.engine.MpSpdzOptions`        the paper's engine, via ``MP_SPDZ_HOME``
========== ============================================ ==========================================

An engine is passed to :func:`fedsyn.pipeline.run_pipeline` as an object
(``PlaintextEngine()``, ``Rep3Engine(Rep3Options(transport="inprocess"))``,
...). :func:`make_engine` builds one by name, which is what the CLI does; the
CLI's ``--engine`` choices and each engine's options are generated from
:data:`ENGINES` and the options dataclasses (field names, ``Literal`` choices,
defaults, and the ``help`` in each field's metadata). Adding an engine means
adding its module and one line here.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass

from .base import Engine, Measurement

__all__ = ["Engine", "EngineSpec", "ENGINES", "Measurement", "make_engine", "engine_options_class"]


@dataclass(frozen=True)
class EngineSpec:
    """One registered engine: name, one-line summary, where its classes live."""

    name: str
    summary: str
    module: str
    engine_class: str
    options_class: str

    def load(self) -> tuple[type, type]:
        mod = importlib.import_module(self.module, __name__)
        return getattr(mod, self.engine_class), getattr(mod, self.options_class)


ENGINES: dict[str, EngineSpec] = {
    s.name: s
    for s in (
        EngineSpec("plaintext", "centralized baseline (no MPC), the reference semantics",
                   ".plaintext", "PlaintextEngine", "PlaintextOptions"),
        EngineSpec("rep3", "embedded three-party MPC (replicated secret sharing, passive)",
                   ".rep3.engine", "Rep3Engine", "Rep3Options"),
        EngineSpec("mp-spdz", "MP-SPDZ party binaries, passive or active (needs MP_SPDZ_HOME)",
                   ".mpspdz.engine", "MpSpdzEngine", "MpSpdzOptions"),
    )
}

#: The engine of ``fedsyn run`` and of the Python API when none is given.
DEFAULT_ENGINE = "rep3"


def engine_options_class(name: str) -> type:
    """The options dataclass of engine ``name``."""
    return _spec(name).load()[1]


def make_engine(name: str = DEFAULT_ENGINE, **options) -> Engine:
    """Construct an engine by name from keyword options of its options dataclass.

    Raises
    ------
    ConfigError
        Unknown engine or an option the engine does not take.
    """
    from ..errors import ConfigError

    engine_cls, options_cls = _spec(name).load()
    known = {f.name for f in dataclasses.fields(options_cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"engine {name!r} has no option {unknown[0]!r} (its options: {', '.join(sorted(known))}).")
    return engine_cls(options_cls(**options))


def _spec(name: str) -> EngineSpec:
    from ..errors import ConfigError

    try:
        return ENGINES[name]
    except KeyError:
        raise ConfigError(f"Unknown engine {name!r}; choose one of {', '.join(ENGINES)}.") from None
