"""Link a pushed adapter to its registered base and refuse what cannot work on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from registry.access.principal import Principal
from registry.db import models as m
from registry.formats.compatibility import (
    AdapterModule,
    adapter_modules,
    check_fit,
    find_module,
    fit_refusal,
    listed,
)
from registry.formats.inspect import AdapterFacts
from registry.services.bases import base_view, find_base


def shape_key(name: str, in_features: int | None, out_features: int | None) -> str:
    """The lookup key of a module an adapter touches; * where the adapter does not constrain a side."""
    return f"{name}|{'*' if in_features is None else in_features}|{'*' if out_features is None else out_features}"


def base_shape_keys(name: str, in_features: int, out_features: int) -> list[str]:
    """Every version-module key that a base module satisfies."""
    return [shape_key(name, i, o) for i in (in_features, None) for o in (out_features, None)]


@dataclass
class BaseLink:
    base: m.BaseModel | None
    modules: list[AdapterModule]
    override: dict[str, Any] | None = None


def link_and_check(
    session: Session, facts: AdapterFacts, base_text: str | None, force: bool, principal: Principal
) -> BaseLink:
    """Find the base named by --base (name or fingerprint) or by adapter_config, then check the fit.
    A base `principal` may not read is unknown to it, exactly as one that does not exist; a
    fingerprint several bases share links to the pusher's own (a name it may write), else to one
    it may read.

    Raises:
        FitRefused subclass (its code names the first problem; all problems listed) unless `force`.
    """
    modules = adapter_modules(facts.config, facts.tensors)
    base = find_base(session, base_text, principal) if base_text else None
    if base is None:
        return BaseLink(None, modules)
    view = base_view(session, base, reader=principal)
    problems = check_fit(facts.config, facts.tensors, view)
    # Record module names as the base spells them, so fit queries join on them.
    modules = [
        AdapterModule(
            hit.name if (hit := find_module(view, mod.name)) else mod.name,
            mod.in_features,
            mod.out_features,
            mod.rank,
        )
        for mod in modules
    ]
    if not problems:
        return BaseLink(base, modules)
    if force:
        return BaseLink(base, modules, {"problems": listed(problems)})
    raise fit_refusal(problems, hint="; pass --force to push anyway", base=view.label)
