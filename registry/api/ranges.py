"""HTTP byte ranges, one parser for every route that serves blobs (/v1 and the Hub protocol)."""

from __future__ import annotations

import re

from registry.errors import RangeNotSatisfiable

# 19 digits hold any byte offset up to 2**63: a longer number is refused before int() sees it.
_RANGE_RE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")


def parse_range(header: str, size: int) -> tuple[int, int]:
    """One byte range (start, end exclusive); multipart ranges are not served."""
    m = _RANGE_RE.fullmatch(header.strip())
    if not m or (not m[1] and not m[2]):
        raise RangeNotSatisfiable(f"unsupported Range {header[:100]!r}; use bytes=START-[END]", size=size)
    if not m[1]:
        start, end = max(0, size - int(m[2])), size
    else:
        start = int(m[1])
        end = min(size, int(m[2]) + 1) if m[2] else size
    if start >= size or start >= end:
        raise RangeNotSatisfiable(f"range {header[:100]!r} is outside the blob of {size} bytes", size=size)
    return start, end
