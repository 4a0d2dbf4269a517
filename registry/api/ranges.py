"""HTTP byte ranges (RFC 9110 section 14), one parser for every route that serves blobs (/v1 and
the Hub protocol).

One range is served (206): an end past the file is clamped to it; a range the header cannot
mean (another unit, several ranges, bad syntax, a first byte after the last) is ignored, and the
whole file is served (200); only a range that starts at or past the end (or a zero-length
suffix) is unsatisfiable (416). Numbers of any length are accepted: they are compared by their
digits, never converted when longer than any offset can be."""

from __future__ import annotations

import re

from registry.errors import RangeNotSatisfiable

_RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.IGNORECASE)
MAX_DIGITS = 19
"""19 digits hold any byte offset up to 2**63: a longer number is past the end of any file."""


def _digits(number: str) -> str:
    return number.lstrip("0") or "0"


def _greater(a: str, b: str) -> bool:
    """a > b for two decimal numbers of any length, without converting them."""
    a, b = _digits(a), _digits(b)
    return (len(a), a) > (len(b), b)


def _value(number: str) -> int | None:
    """The number, or None when it has more digits than any offset (past the end of any file)."""
    digits = _digits(number)
    return int(digits) if len(digits) <= MAX_DIGITS else None


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The one byte range `header` asks for, as (start, end exclusive), or None when the header is
    to be ignored (serve the whole file with 200).

    Raises:
        RangeNotSatisfiable: the range starts at or past the end of the file.
    """
    m = _RANGE_RE.fullmatch(header.strip())
    if not m or (not m[1] and not m[2]):
        return None  # another unit, several ranges or bad syntax: ignored, as RFC 9110 allows
    unsatisfiable = RangeNotSatisfiable(
        f"range {header[:100]!r} is outside the blob of {size} bytes", size=size
    )
    if not m[1]:  # bytes=-N: the last N bytes (all of them when the file is shorter)
        length = _value(m[2])
        if length == 0:
            raise unsatisfiable
        start, end = (0 if length is None else max(0, size - length)), size
    else:
        if m[2] and _greater(m[1], m[2]):
            return None  # first byte after the last: an invalid range, ignored
        first = _value(m[1])
        if first is None or first >= size:
            raise unsatisfiable
        last = _value(m[2]) if m[2] else None
        start, end = first, (size if last is None else min(size, last + 1))
    if start >= end:  # an empty file
        raise unsatisfiable
    return start, end
