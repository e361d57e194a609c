"""Bringing several holders' data onto one agreed gene order and label domain."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from ..data import ExpressionData
from ..errors import ConfigError, InputError
from ..params import ProtocolParams


def align_holders(holders: Sequence[ExpressionData], params: ProtocolParams) -> list[ExpressionData]:
    """Put every holder on the first holder's gene order and label domain.

    Every engine calls this, so all of them accept the same inputs: holders must
    have the same *set* of genes (columns in another order are reordered, as
    the share bundles do) and labels from the first holder's domain (codes are
    remapped by name).

    Raises
    ------
    InputError
        Naming the holder and a missing or unexpected gene, or a label outside
        the domain.
    ConfigError
        If the label domain does not have ``params.n_labels`` labels.
    """
    if not holders:
        raise InputError("At least one data holder is needed.")
    first = holders[0]
    if first.n_labels != params.n_labels:
        raise ConfigError(
            f"{first.source}: {first.n_labels} labels but the run is set up for {params.n_labels}."
        )
    genes, domain = first.gene_names, first.label_names
    gene_index = {g: j for j, g in enumerate(genes)}
    label_index = {name: code for code, name in enumerate(domain)}
    aligned = [first]
    for h in holders[1:]:
        missing = [g for g in genes if g not in set(h.gene_names)]
        extra = [g for g in h.gene_names if g not in gene_index]
        if missing or extra or len(h.gene_names) != len(genes):
            what = f"lacks gene {missing[0]!r}" if missing else f"has gene {extra[0]!r} not in"
            raise InputError(
                f"{h.source}: gene list differs from {first.source} ({what} the agreed list); "
                "holders must agree on genes."
            )
        outside = [name for name in h.label_names if name not in label_index]
        if outside:
            raise InputError(
                f"{h.source}: label {outside[0]!r} is outside the public domain {list(domain)} of {first.source}."
            )
        if h.gene_names != genes:
            order = np.argsort([gene_index[g] for g in h.gene_names])
            h = h.subset(genes=order)
        if h.label_names != domain:
            remap = np.array([label_index[name] for name in h.label_names], dtype=np.int64)
            h = replace(h, labels=remap[h.labels], label_names=domain)
        aligned.append(h)
    return aligned
