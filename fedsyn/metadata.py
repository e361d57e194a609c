"""Public metadata that the parties of a run must agree on, and how to say where it differs.

Holders must share the same genes and label domain; a server's bundles must
agree on genes, labels, fractional bits, run and clip range; the three servers
must hold the same holders, sample counts, sharings and parameters. All of this
is public metadata, so a refusal can and should name *which* holder (or
server) differs and *what* differs -- the first gene, the label, the count or
the parameter -- instead of only "something differs".

When several parties are compared, the one that differs from the majority is
named (:func:`odd_ones`), not whichever happens to be listed second; with two
parties nobody can tell which one is wrong, and the message says so.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

__all__ = ["odd_ones", "describe_names", "describe_genes", "describe_labels", "metadata_differences"]

T = TypeVar("T")


def odd_ones(items: Sequence[T], key: Callable[[T], Hashable]) -> tuple[list[int], list[int]]:
    """Split ``items`` into the majority (by ``key``) and the rest.

    The majority is the largest group of equal keys; on a tie, the group of the
    earliest item.

    Returns
    -------
    majority, others : list of int
        Indices into ``items``; ``others`` is empty when all keys agree.

    Examples
    --------
    >>> odd_ones(["x", "y", "y"], key=str)
    ([1, 2], [0])
    >>> odd_ones(["x", "y"], key=str)
    ([0], [1])
    """
    groups: dict[Hashable, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(key(item), []).append(i)
    majority = max(groups.values(), key=lambda g: (len(g), -g[0]))
    return majority, [i for i in range(len(items)) if i not in set(majority)]


def _more(n: int) -> str:
    return f" (and {n} more)" if n else ""


def describe_names(have: Sequence[str], want: Sequence[str], *, what: str, ordered: bool = True) -> str:
    """How ``have`` differs from ``want``, in words: what is missing, extra, or in another order.

    Parameters
    ----------
    have, want : sequence of str
        The names of one party and the reference.
    what : str
        Singular noun ("gene", "label").
    ordered : bool, default True
        Whether the order matters.

    Returns
    -------
    str
        ``""`` when they agree.

    Examples
    --------
    >>> describe_names(["A", "B", "D"], ["A", "B", "C"], what="gene")
    "lacks gene 'C' and has gene 'D' instead"
    >>> describe_names(["B", "A"], ["A", "B"], what="gene")
    "has the same 2 genes in another order (position 1: 'B' instead of 'A')"
    """
    have, want = list(have), list(want)
    if have == want or (not ordered and set(have) == set(want) and len(have) == len(want)):
        return ""
    hs, ws = set(have), set(want)
    missing = [x for x in want if x not in hs]
    extra = [x for x in have if x not in ws]
    if missing and extra:
        return (f"lacks {what} {missing[0]!r}{_more(len(missing) - 1)} and has {what} {extra[0]!r}"
                f"{_more(len(extra) - 1)} instead")
    if missing:
        return f"lacks {what} {missing[0]!r}{_more(len(missing) - 1)} ({len(have)} {what}s instead of {len(want)})"
    if extra:
        return f"has {what} {extra[0]!r}{_more(len(extra) - 1)} in addition ({len(have)} {what}s instead of {len(want)})"
    if len(have) != len(want):
        dup = next(x for x in have if have.count(x) > 1)
        return f"lists {what} {dup!r} twice"
    k = next(i for i, (a, b) in enumerate(zip(have, want)) if a != b)
    return (f"has the same {len(have)} {what}s in another order (position {k + 1}: {have[k]!r} instead of "
            f"{want[k]!r})")


def describe_genes(have: Sequence[str], want: Sequence[str], *, ordered: bool = True) -> str:
    """:func:`describe_names` for gene lists."""
    return describe_names(have, want, what="gene", ordered=ordered)


def describe_labels(have: Sequence[str], want: Sequence[str]) -> str:
    """:func:`describe_names` for label domains (order matters: it fixes the label codes)."""
    return describe_names(have, want, what="label", ordered=True)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def metadata_differences(mine: dict, theirs: dict, *, here: str = "here", there: str = "there") -> list[str]:
    """Every way two servers' public metadata differ, in words (``[]`` when equal).

    Parameters
    ----------
    mine, theirs : dict
        :func:`fedsyn.engines.rep3.server.server_metadata` of two servers:
        ``gene_names``, ``label_names``, ``holders`` (id -> samples),
        ``sharings`` ([id, sharing id] pairs), ``frac_bits``, ``run_id``,
        ``params`` and possibly more keys (compared as values).
    here, there : str
        How to call the two sides ("here", "at server 1").
    """
    out: list[str] = []
    if mine.get("gene_names") != theirs.get("gene_names"):
        diff = describe_genes(theirs.get("gene_names") or [], mine.get("gene_names") or [])
        out.append(f"the gene list differs: {there} it {diff}")
    if mine.get("label_names") != theirs.get("label_names"):
        diff = describe_labels(theirs.get("label_names") or [], mine.get("label_names") or [])
        out.append(f"the label domain differs: {there} it {diff}")
    h1, h2 = dict(mine.get("holders") or {}), dict(theirs.get("holders") or {})
    for holder in sorted(set(h1) - set(h2)):
        out.append(f"holder {holder!r} is {here} but not {there}")
    for holder in sorted(set(h2) - set(h1)):
        out.append(f"holder {holder!r} is {there} but not {here}")
    for holder in sorted(set(h1) & set(h2)):
        if h1[holder] != h2[holder]:
            out.append(f"holder {holder!r} has {h1[holder]} samples {here}, {h2[holder]} {there}")
    s1 = {h: s for h, s in (mine.get("sharings") or [])}
    s2 = {h: s for h, s in (theirs.get("sharings") or [])}
    for holder in sorted(set(s1) & set(s2)):
        if s1[holder] != s2[holder] and h1.get(holder) == h2.get(holder):
            out.append(f"holder {holder!r} comes from another `fedsyn share` run {here} than {there} (sharing "
                       f"{str(s1[holder])[:8]}... vs {str(s2[holder])[:8]}...): a holder that shared again must "
                       "send all three new bundles")
    p1, p2 = dict(mine.get("params") or {}), dict(theirs.get("params") or {})
    for name in sorted(set(p1) | set(p2)):
        if p1.get(name) != p2.get(name):
            out.append(f"parameter {name} is {_short(p1.get(name))} {here}, {_short(p2.get(name))} {there}")
    skip = {"gene_names", "gene_digest", "label_names", "holders", "sharings", "params", "n_records"}
    for name in sorted((set(mine) | set(theirs)) - skip):
        if mine.get(name) != theirs.get(name):
            out.append(f"{name} is {_short(mine.get(name))} {here}, {_short(theirs.get(name))} {there}")
    if not out and mine != theirs:
        out.append("the public metadata differs")
    return out
