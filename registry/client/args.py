"""Parsing of NAME=NUMBER arguments (--eval, --min-score, merge inputs), one rule for all."""

from __future__ import annotations

import math

from registry.errors import BadRequest


def name_equals_number(text: str, usage: str, split_last: bool = False) -> tuple[str, str]:
    """Split NAME=NUMBER[rest]; returns (name, text after '='). Raises BadRequest with `usage`."""
    name, sep, rest = text.rpartition("=") if split_last else text.partition("=")
    if not sep or not name:
        raise BadRequest(f"{text!r}: use {usage}")
    return name, rest


def finite_number(text: str, whole: str, usage: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadRequest(f"{whole!r}: {text!r} is not a finite number; use {usage}")
    return value
