"""Reading the compose files as `docker compose` does, as far as these tests need: YAML with the
`!reset` / `!override` tags, `${VAR}`, `${VAR:-default}` and `${VAR:?message}` interpolation from a
given environment (a `.env`), and the merge of several `-f` files (mappings merged key by key,
`ports`/`volumes`/... lists joined, anything else replaced; `!reset` removes, `!override` replaces).

compose-spec.json beside this file is the Compose Specification's JSON schema, copied unchanged
from github.com/compose-spec/compose-spec, schema/compose-spec.json at commit
170098ba07d9f53c383a41bfd4c5166b0a4529a6 (2026-06-23; Apache License 2.0).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).with_name("compose-spec.json")
JOINED_LISTS = {"ports", "volumes", "expose", "secrets", "configs", "dns", "cap_add", "devices"}
"""Lists that a later file adds to (compose's merge rules); other lists replace the earlier one."""


@dataclass(frozen=True)
class Reset:
    value: Any


@dataclass(frozen=True)
class Override:
    value: Any


class _Loader(yaml.SafeLoader):
    pass


def _tag(cls: type) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return cls(loader.construct_mapping(node, deep=True))
        if isinstance(node, yaml.SequenceNode):
            return cls(loader.construct_sequence(node, deep=True))
        return cls(loader.construct_scalar(node))  # type: ignore[arg-type]

    return construct


_Loader.add_constructor("!reset", _tag(Reset))
_Loader.add_constructor("!override", _tag(Override))


def load(name: str) -> dict[str, Any]:
    """One compose file of the repository, tags kept as Reset / Override markers."""
    doc = yaml.load((ROOT / name).read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
    assert isinstance(doc, dict), name
    return doc


_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """`value` with ${...} replaced from `env` (compose's rules for -, :-, ?, :?)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, Reset | Override):
        return type(value)(interpolate(value.value, env))
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        got = env.get(name)
        empty = got is None or (got == "" and op is not None and op.startswith(":"))
        if op in ("-", ":-"):
            return arg if empty else str(got)
        if op in ("?", ":?"):
            if empty:
                raise KeyError(f"{name}: {arg}")
            return str(got)
        return got or ""

    return _VAR.sub(one, value)


def plain(value: Any) -> Any:
    """`value` with the markers replaced by what they hold: one file as the schema reads it."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, Reset | Override):
        return plain(value.value)
    return value


def merge(base: Any, over: Any, key: str = "") -> Any:
    if isinstance(over, Override):
        return plain(over.value)
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            if isinstance(v, Reset):
                out.pop(k, None)
            elif k in out:
                out[k] = merge(out[k], v, k)
            else:
                out[k] = plain(v)
        return out
    if isinstance(base, list) and isinstance(over, list) and key in JOINED_LISTS:
        return base + [v for v in plain(over) if v not in base]
    return plain(over)


def project(*names: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The model `docker compose -f NAME ... config` works from: the files merged in order,
    interpolated from `env` (what a .env would hold; nothing by default)."""
    model: dict[str, Any] = {}
    for name in names:
        model = merge(model, interpolate(load(name), env or {}))
    return plain(model)


@cache
def schema() -> dict[str, Any]:
    doc = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (compose accepts a mapping or KEY=VALUE items)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}
