"""Architecture families: a plain net and its Squeeze-and-Excitation twin (``resnet`` / ``resnet_se``).

A reader compares a net with its SE twin first, so merged reports list twins together and figures put
them side by side (one row per family) instead of wherever the parts happened to run.
"""

from __future__ import annotations

SE_SUFFIX = "_se"


def family(arch: str) -> str:
    """``resnet_se`` -> ``resnet``; an architecture without the suffix is its own family."""
    return arch[: -len(SE_SUFFIX)] if arch.endswith(SE_SUFFIX) and len(arch) > len(SE_SUFFIX) else arch


def family_order(archs: list) -> list:
    """Families in order of first appearance, the plain net before its SE twin; otherwise order kept."""
    archs = list(dict.fromkeys(archs))
    families = list(dict.fromkeys(family(a) for a in archs))
    return sorted(archs, key=lambda a: (families.index(family(a)), a != family(a), archs.index(a)))


def panel_layout(archs: list, max_cols: int = 3) -> list:
    """Rows of panel slots (an arch or None for an empty slot) for a figure with one panel per architecture.

    When some net has its SE twin in the list, each row is one family (plain | SE); otherwise the panels
    fill rows of up to `max_cols` in the given order.
    """
    archs = list(dict.fromkeys(archs))
    if not archs:
        return []
    has_twin = any(a != family(a) and family(a) in archs for a in archs)
    if not has_twin:
        cols = min(max_cols, len(archs))
        rows = [archs[i:i + cols] for i in range(0, len(archs), cols)]
        return [row + [None] * (cols - len(row)) for row in rows]
    rows = []
    for fam in dict.fromkeys(family(a) for a in family_order(archs)):
        twin = fam + SE_SUFFIX
        rows.append([fam if fam in archs else None, twin if twin in archs else None])
    return rows
