"""Permissions fail closed, and access is the floor the services stand on.

- No public function of `registry.services` or `registry.access` gives its caller a default: a
  route that forgets to pass the caller fails at the type check and here, instead of running as
  the operator.
- `registry.access` imports nothing from the floors above it (the services, the API, the
  clients...), eagerly or lazily: no package cycle between access and services.
- Rules live in the services, so every surface gets them (not only the route that knew).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import registry
import registry.access
import registry.services
from registry.access.authentication import authenticate
from registry.access.principal import OPERATOR, Principal
from registry.errors import BadRequest
from registry.jobspec import JobRequest
from registry.services import accounts, jobs
from registry.services.context import Registry
from tests.conftest import db_url_for, make_settings

CALLER_PARAMS = frozenset({"principal", "caller", "reader"})
ROOT = Path(registry.__file__).parent
ABOVE_ACCESS = frozenset(
    {"services", "tensors", "planning", "client", "ui", "worker", "serving", "integrations", "api", "cli"}
)


def _modules(package: object) -> list[str]:
    path = package.__path__  # type: ignore[attr-defined]
    prefix = package.__name__ + "."  # type: ignore[attr-defined]
    return sorted(info.name for info in pkgutil.iter_modules(path, prefix))


@pytest.mark.parametrize("module_name", _modules(registry.services) + _modules(registry.access))
def test_no_public_function_defaults_its_caller(module_name: str) -> None:
    module = importlib.import_module(module_name)
    defaulted = []
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if name.startswith("_") or fn.__module__ != module_name:
            continue
        for param in inspect.signature(fn).parameters.values():
            if param.name in CALLER_PARAMS and param.default is not inspect.Parameter.empty:
                defaulted.append(f"{name}({param.name}={param.default!r})")
    assert defaulted == [], f"{module_name}: pass the caller explicitly (OPERATOR where meant)"


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function (TYPE_CHECKING included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def _floor(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "cli":
        return "cli"
    return parts[1] if parts[0] == "registry" and len(parts) > 1 else None


def test_the_in_process_client_is_told_whom_it_acts_as() -> None:
    """LocalClient calls the services with its principal: it has no default either (it was the
    operator), so a worker or a test that forgets it fails at once instead of acting as the operator."""
    from registry.client.local import LocalClient

    param = inspect.signature(LocalClient).parameters["principal"]
    assert param.default is inspect.Parameter.empty and param.kind is inspect.Parameter.KEYWORD_ONLY


def test_access_imports_nothing_above_it() -> None:
    upward = sorted(
        f"{path.relative_to(ROOT.parent)} imports {name}"
        for path in (ROOT / "access").rglob("*.py")
        for name in _imports(path)
        if _floor(name) in ABOVE_ACCESS
    )
    assert upward == []


def test_no_package_cycle_through_access() -> None:
    """Package level: access reaches no package that reaches access back."""
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).parts
        src = rel[0].removesuffix(".py") if len(rel) > 1 or rel[0] != "__init__.py" else None
        if src is None:
            continue
        for name in _imports(path):
            dst = _floor(name)
            if dst is not None and dst != src:
                graph.setdefault(src, set()).add(dst)

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert "access" not in reach("access")
    assert "access" in reach("services")  # the services stand on access, not the other way


def test_only_the_operator_names_a_path_on_its_machine(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`base_path` (a folder on the caller's machine) is refused by the service for every caller
    but the operator, whatever the surface: a server's workers must not read it."""
    reg = Registry.from_settings(
        make_settings(tmp_path, db_url_for("sqlite", tmp_path, request), "file", request)
    )
    try:
        accounts.add_user(reg, "root", admin=True, principal=OPERATOR)
        secret, _ = accounts.create_token(reg, "root", principal=OPERATOR)
        admin: Principal = authenticate(reg, secret)
        local = JobRequest(type="export", params={"ref": "acme/a", "base": "/etc", "base_path": "/etc"})
        with pytest.raises(BadRequest) as refused:
            jobs.submit(reg, local, admin.name, principal=admin)
        assert refused.value.code == "bad_request" and "embedded mode only" in str(refused.value)
        assert jobs.list_jobs(reg, principal=OPERATOR) == []  # nothing was queued
    finally:
        reg.close()
