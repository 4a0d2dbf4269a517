"""Options of a job's command derived from its kind's parameter model (registry/jobspec): the type
(a Literal's values as a click.Choice, int, float, a flag) and the default are the model's, so the
command and the API cannot disagree on a name, a choice or a default.

They are built when the command first needs them (to parse its arguments or print its help), not
when the CLI starts: the models import pydantic, which costs `adapters list` 0.24 to 0.34 s here
(python -c 'import cli.main; import registry.jobspec', timed apart)."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class _FieldOption:
    """An option named after a field of the model (`--majority-sign majority_sign_method`), kept
    in its place among the command's parameters until JobCommand builds it."""

    decls: tuple[str, ...]
    attrs: dict[str, Any]

    @property
    def field(self) -> str:
        named = [d for d in self.decls if d.isidentifier()]
        longest = max((d for d in self.decls if d.startswith("--")), key=len)
        return named[0] if named else longest.removeprefix("--").replace("-", "_")

    def build(self, model: type[Any]) -> click.Option:
        info = model.model_fields[self.field]
        attrs = dict(self.attrs)
        if not info.is_required():
            attrs.setdefault("default", info.get_default(call_default_factory=True))
        if "type" not in attrs and not attrs.get("is_flag"):
            kind = _click_type(info.annotation)
            if kind is bool:
                attrs["is_flag"] = True
            elif kind is not None:
                attrs["type"] = kind
        return click.Option(list(self.decls), **attrs)


def _click_type(annotation: Any) -> Any:
    """The click type of a field: a Literal's values as a Choice, int, float; bool (a flag); None
    for text. An optional field's type is its other member's."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) != 1:
            raise TypeError(f"give the option for {annotation} its click type")
        annotation = members[0]
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is Literal:
        return click.Choice([str(a) for a in typing.get_args(annotation)])
    return {int: click.INT, float: click.FLOAT, bool: bool, str: None}[annotation]


def field_option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """click.option for a field of the command's job kind: `attrs` as click.option's, less what
    the model says (type and default, unless given here)."""

    def decorator(f: F) -> F:
        f.__dict__.setdefault("__click_params__", []).append(_FieldOption(decls, attrs))
        return f

    return decorator


class JobCommand(click.Command):
    """The command of job kind `kind`, its field options built from the kind's parameter model
    on first use."""

    def __init__(self, *args: Any, kind: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        self._built = False

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not self._built:
            from registry.jobspec import kind_of

            model = kind_of(self.kind).params
            self.params = [p.build(model) if isinstance(p, _FieldOption) else p for p in self.params]
            self._built = True
        return super().get_params(ctx)


def job_command(kind: str, **attrs: Any) -> Callable[[Callable[..., Any]], JobCommand]:
    """click.command for the job kind `kind` (registry/jobspec/kinds.py)."""
    return click.command(cls=JobCommand, kind=kind, **attrs)
