"""MkDocs hooks: the reference pages that are generated from the code at build time, so that they
cannot drift from it.

- `<!-- generated: settings -->` in a page becomes the table of `registry.config.Settings`: each
  field's variable, default and constraints from the model, its meaning from the field's attribute
  docstring (read with `ast`: pydantic does not keep them). A field without one fails the build.
- `<!-- generated: openapi -->` becomes the `/v1` operations of `create_app().openapi()`, and the
  document itself is added to the site as `reference/openapi.json`.

The CLI page is rendered by the mkdocs-click extension from the click group in `cli/main.py`.
"""

from __future__ import annotations

import ast
import json
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent.parent
CONFIG_SOURCE = ROOT / "registry" / "config.py"


# ---------------------------------------------------------------- configuration
def _docstrings(tree: ast.Module, cls: str) -> tuple[dict[str, str], dict[str, ast.expr]]:
    """The attribute docstrings of class `cls` (a string expression right after `name: T = ...`)
    and each field's annotation."""
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    docs: dict[str, str] = {}
    annotations: dict[str, ast.expr] = {}
    body = node.body
    for stmt, following in zip(body, [*body[1:], None], strict=True):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            annotations[stmt.target.id] = stmt.annotation
            if (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(following.value.value.split())
    return docs, annotations


def _function_docs(tree: ast.Module) -> dict[str, str]:
    return {
        n.name: " ".join((ast.get_docstring(n) or "").split())
        for n in tree.body
        if isinstance(n, ast.FunctionDef)
    }


def _size(value: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= factor and value % factor == 0:
            return f"{value // factor} {unit}"
    return f"{value:,}"


def _default(name: str, field: Any, factories: dict[str, str]) -> str:
    if field.default_factory is not None:
        described = factories.get(field.default_factory.__name__)
        if not described:
            raise ValueError(f"Settings.{name}: its default_factory has no docstring to show")
        return described
    value = field.default
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int) and name.endswith("_bytes"):
        return _size(value)
    return f"`{value}`"


def _constraints(name: str, field: Any) -> str:
    words = []
    for item in field.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            bound = getattr(item, attr, None)
            if bound is not None:
                shown = _size(bound) if name.endswith("_bytes") and isinstance(bound, int) else f"{bound}"
                words.append(f"{sign} {shown}")
    return ", ".join(words)


def settings_table() -> str:
    """The Markdown table of every Settings field; raises when a field has no docstring."""
    from registry.config import ENV_PREFIX, Settings

    tree = ast.parse(CONFIG_SOURCE.read_text(encoding="utf-8"))
    docs, annotations = _docstrings(tree, "Settings")
    factories = _function_docs(tree)
    missing = [name for name in Settings.model_fields if name not in docs]
    if missing:
        raise ValueError(f"registry/config.py: Settings fields without a docstring: {', '.join(missing)}")
    rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        kind = ast.unparse(annotations[name]).replace(" | ", " or ")
        limits = _constraints(name, field)
        meaning = docs[name].replace("|", "\\|") + (f" ({limits})" if limits else "")
        variable = f"`{(ENV_PREFIX + name).upper()}`"
        rows.append(f"| {variable} | `{kind}` | {_default(name, field, factories)} | {meaning} |")
    return "\n".join(rows)


# ---------------------------------------------------------------- REST API
@cache
def openapi() -> dict[str, Any]:
    """`create_app().openapi()` of a throwaway embedded registry (nothing is served)."""
    from registry.api.app import create_app
    from registry.config import Settings
    from registry.services.context import Registry

    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home))
        reg = Registry.from_settings(settings)
        try:
            return create_app(settings, reg).openapi()
        finally:
            reg.close()


def _schema_name(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[`{name}`](#{name.lower()})"
    if schema.get("type") == "array":
        return f"array of {_schema_name(schema.get('items'))}"
    if "anyOf" in schema:
        return " or ".join(_schema_name(s) or f"`{s.get('type', 'any')}`" for s in schema["anyOf"])
    return f"`{schema.get('type', 'object')}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def openapi_markdown() -> str:
    doc = openapi()
    out = [
        f"Generated from the OpenAPI document of this version ({doc['info'].get('version', '')}); "
        "the document itself: [openapi.json](openapi.json).",
        "",
    ]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in {"get", "put", "post", "delete", "head", "patch"}:
                continue
            out += [f"### `{method.upper()} {path}`", ""]
            if op.get("summary") or op.get("description"):
                out += [_cell(op.get("description") or op["summary"]), ""]
            params = op.get("parameters", [])
            if params:
                out += ["| parameter | in | type | required |", "|---|---|---|---|"]
                out += [
                    f"| `{p['name']}` | {p['in']} | {_schema_name(p.get('schema'))} | "
                    f"{'yes' if p.get('required') else 'no'} |"
                    for p in params
                ]
                out.append("")
            body = op.get("requestBody", {}).get("content", {})
            for media, content in body.items():
                out += [f"Request body ({media}): {_schema_name(content.get('schema')) or 'any'}", ""]
            answers = [
                f"{code} {_cell(r.get('description', ''))}"
                + (
                    f": {_schema_name(r['content']['application/json'].get('schema'))}"
                    if "application/json" in r.get("content", {})
                    else ""
                )
                for code, r in op.get("responses", {}).items()
            ]
            out += ["Answers: " + "; ".join(answers), ""]
    out += ["## Schemas", ""]
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        out += [f"### {name}", ""]
        if schema.get("description"):
            out += [_cell(schema["description"]), ""]
        props = schema.get("properties", {})
        if props:
            required = set(schema.get("required", []))
            out += ["| field | type | required | description |", "|---|---|---|---|"]
            out += [
                f"| `{field}` | {_schema_name(p) if ('$ref' in p or 'anyOf' in p or 'type' in p) else '`any`'} | "
                f"{'yes' if field in required else 'no'} | {_cell(p.get('description', ''))} |"
                for field, p in props.items()
            ]
            out.append("")
        elif "enum" in schema:
            out += ["One of " + ", ".join(f"`{v}`" for v in schema["enum"]), ""]
    return "\n".join(out)


# ---------------------------------------------------------------- MkDocs events
GENERATORS = {
    "<!-- generated: settings -->": settings_table,
    "<!-- generated: openapi -->": openapi_markdown,
}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(
        File.generated(config, "reference/openapi.json", content=json.dumps(openapi(), indent=2) + "\n")
    )
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    for marker, generate in GENERATORS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown
