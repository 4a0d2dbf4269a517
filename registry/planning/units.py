"""Byte sizes for people: decimal units (GB = 1e9 bytes), the way the recipe and GPU sheets count."""

from __future__ import annotations


def human(n: float) -> str:
    """Decimal units (GB = 1e9 bytes), the way the recipe and GPU sheets count."""
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"
