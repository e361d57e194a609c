"""Checks that several holders' data can be combined."""

from __future__ import annotations

from typing import Sequence

from ..data import ExpressionData
from ..errors import InputError
from ..params import ProtocolParams


def check_holders(holders: Sequence[ExpressionData], params: ProtocolParams) -> ExpressionData:
    """Validate that all holders agree on genes and label domain; return the first.

    Raises
    ------
    InputError
        Naming the holder and the first differing gene or label.
    """
    if not holders:
        raise InputError("At least one data holder is needed.")
    first = holders[0]
    for h in holders[1:]:
        if h.gene_names != first.gene_names:
            diff = next(
                (a, b) for a, b in zip(h.gene_names + ("<none>",) * len(first.gene_names),
                                       first.gene_names + ("<none>",) * len(h.gene_names)) if a != b
            )
            raise InputError(
                f"{h.source}: gene list differs from {first.source} "
                f"(first difference: {diff[0]!r} vs {diff[1]!r}); holders must agree on genes."
            )
        if h.label_names != first.label_names:
            raise InputError(
                f"{h.source}: label domain {list(h.label_names)} differs from "
                f"{first.source}'s {list(first.label_names)}."
            )
    if first.n_labels != params.n_labels:
        raise InputError(
            f"{first.source}: {first.n_labels} labels but the run is set up for {params.n_labels}."
        )
    return first
