"""Click parameter types over the registry's own parsers: a malformed value is a usage error
(exit 2, click's message naming the parameter) before any command runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import click

from registry.errors import BadRequest, RegistryError

if TYPE_CHECKING:
    from registry.client.merge import MergeInput
    from registry.entities import EvalScoreIn

T = TypeVar("T")


class Parsed(click.ParamType, Generic[T]):
    """A string parsed by `parse`; a RegistryError or pydantic ValidationError it raises becomes
    click's usage error. Parsers are imported when first used, so start-up stays light."""

    def __init__(self, name: str, parse: Callable[[str], T]) -> None:
        self.name = name
        self.parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> T:
        if not isinstance(value, str):  # already parsed (a default given as a value)
            return value  # type: ignore[no-any-return]
        try:
            return self.parse(value)
        except (RegistryError, ValueError) as err:  # pydantic's ValidationError is a ValueError
            self.fail(_message(err), param, ctx)


def _message(err: Exception) -> str:
    if isinstance(err, RegistryError):
        return str(err)
    from pydantic import ValidationError

    if isinstance(err, ValidationError):
        from cli.output import validation_message

        return validation_message(err)
    raise err


def _ref(text: str) -> str:
    from registry.refs import parse_ref

    parse_ref(text)
    return text


def _repo(text: str) -> str:
    from registry.refs import parse_repo

    parse_repo(text)
    return text


def _alias(text: str) -> str:
    from registry.refs import check_alias

    return check_alias(text)


def _merge_input(text: str) -> MergeInput:
    from registry.client.merge import parse_merge_input

    parsed = parse_merge_input(text)
    _ref(parsed.ref)
    return parsed


def _eval(text: str) -> EvalScoreIn:
    from registry.client.transfer import parse_eval

    return parse_eval(text)


def _min_score(text: str) -> tuple[str, float]:
    from registry.client.args import finite_number, name_equals_number

    usage = "--min-score METRIC=VALUE"
    metric, value = name_equals_number(text, usage)
    return metric, finite_number(value, text, usage)


def _size(text: str) -> int:
    from registry.jobspec import parse_size

    return parse_size(text)


def _rank(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise BadRequest(f"{text!r} is not a positive integer or 'auto'")
    return int(text)


REF = Parsed("REF", _ref)
"""ns/name, ns/name:3, ns/name@alias or ns/name@sha256:<hex>."""
REPO = Parsed("NS/NAME", _repo)
ALIAS = Parsed("ALIAS", _alias)
MERGE_INPUT = Parsed("REF=WEIGHT", _merge_input)
"""acme/legal@production=0.7, acme/medical:2=-0.3."""
EVAL = Parsed("METRIC=VALUE[@DATASET[:SPLIT]]", _eval)
MIN_SCORE = Parsed("METRIC=V", _min_score)
SIZE = Parsed("SIZE", _size)
"""5GB, 500MB, 2GiB or a number of bytes."""
RANK = Parsed("R|auto", _rank)
