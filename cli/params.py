"""Click parameter types over the registry's own parsers: a malformed value is a usage error
(exit 2, click's message naming the parameter) before any command runs."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import click

from registry.dtypes import SPELLINGS, Form, canonical
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
    from registry.refs import check_ref

    return check_ref(text)


def _repo(text: str) -> str:
    from registry.refs import check_repo

    return check_repo(text)


def _namespace(text: str) -> str:
    from registry.refs import parse_repo

    parse_repo(f"{text}/x")  # the namespace rule of repository names
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


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_DURATION_S = 100 * 365 * 86400


def _duration(text: str) -> timedelta:
    m = re.fullmatch(r"([0-9]{1,12})([smhdw]?)", text.strip())
    if m is None:
        raise BadRequest(f"{text!r} is not a duration: a number with s, m, h, d or w (30d, 12h, 90m, 3600s)")
    seconds = int(m[1]) * DURATION_UNITS[m[2] or "s"]
    if not 0 < seconds <= MAX_DURATION_S:
        raise BadRequest(f"{text!r}: a duration from 1s to {MAX_DURATION_S // 86400}d")
    return timedelta(seconds=seconds)


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
NAMESPACE = Parsed("NS", _namespace)
MERGE_INPUT = Parsed("REF=WEIGHT", _merge_input)
"""acme/legal@production=0.7, acme/medical:2=-0.3."""
EVAL = Parsed("METRIC=VALUE[@DATASET[:SPLIT]]", _eval)
MIN_SCORE = Parsed("METRIC=V", _min_score)
SIZE = Parsed("SIZE", _size)
"""5GB, 500MB, 2GiB or a number of bytes."""
RANK = Parsed("R|auto", _rank)
DURATION = Parsed("DURATION", _duration)
"""30d, 12h, 90m, 3600s (or 2w; a bare number is seconds) as a timedelta."""


class Dtype(click.Choice):  # type: ignore[type-arg]
    """A float dtype in either spelling, any case (bf16 or bfloat16, BF16), returned in the spelling
    `form` that the command's parameters keep (registry.dtypes says which): help lists them all."""

    def __init__(self, form: Form) -> None:
        super().__init__(SPELLINGS, case_sensitive=False)
        self.form: Form = form

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return canonical(str(super().convert(value, param, ctx)), self.form)


DTYPE = Dtype("short")
"""`plan`, `export`, `generate`: bf16 | fp16 | fp32."""
TORCH_DTYPE = Dtype("torch")
"""`check-4bit --compute-dtype`: bfloat16 | float16 | float32."""


# ---- lifecycle: gc --grace, audit --since
def _grace(text: str) -> timedelta:
    """A duration that may be zero (`gc --grace 0`: no grace at all)."""
    if text.strip() in ("0", "0s", "0m", "0h", "0d", "0w"):
        return timedelta(0)
    return _duration(text)


def _since(text: str) -> datetime:
    """A duration ago (`1h`, `7d`) or an ISO 8601 time (`2026-01-31`, `2026-01-31T12:00:00Z`;
    without an offset: UTC)."""
    if re.fullmatch(r"[0-9]{1,12}[smhdw]?", text.strip()):
        return datetime.now(UTC) - _duration(text)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as err:
        raise BadRequest(f"{text!r} is neither a duration ago (1h, 7d) nor an ISO 8601 time") from err
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


GRACE = Parsed("DURATION", _grace)
"""As DURATION, 0 allowed."""
SINCE = Parsed("DURATION|TIME", _since)
"""1h, 7d (that long ago) or an ISO 8601 time, as an aware datetime."""


trust_key_option = click.option(
    "--trust-key",
    "trust_key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    envvar="ADAPTERS_TRUSTED_KEYS",
    help="A public key (PEM) or certificate whose signatures you trust; repeatable. Also "
    "ADAPTERS_TRUSTED_KEYS (paths separated by the OS path separator) and the *.pub/*.pem files "
    "in $XDG_CONFIG_HOME/adapter-registry/trusted_keys/.",
)
