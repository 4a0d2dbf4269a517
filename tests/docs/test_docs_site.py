"""The documentation site builds with warnings as errors (what `make docs` runs), offline and fast,
and its generated reference pages cover the code: every settings field, every CLI command, every
`/v1` operation. The README stays a front page that points into the site."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def docs_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    out = tmp_path_factory.mktemp("site")
    started = time.monotonic()
    config = load_config(str(ROOT / "mkdocs.yml"), site_dir=str(out), strict=True)
    build(config)  # strict: a warning aborts the build (mkdocs.exceptions.Abort)
    return out, time.monotonic() - started


def text(site_dir: Path, page: str) -> str:
    return html.unescape((site_dir / page / "index.html").read_text(encoding="utf-8"))


def test_the_site_builds_strict_and_fast(docs_site: tuple[Path, float]) -> None:
    site_dir, took = docs_site
    assert took < 30, f"the docs build took {took:.1f} s"
    assert (site_dir / "index.html").exists() and (site_dir / "how-to" / "merge" / "index.html").exists()
    assert "fonts.googleapis.com" not in (site_dir / "index.html").read_text(encoding="utf-8")


def test_configuration_reference_lists_every_setting(docs_site: tuple[Path, float]) -> None:
    from registry.config import Settings

    page = text(docs_site[0], "reference/configuration")
    missing = [
        f"ADAPTERS_{name.upper()}" for name in Settings.model_fields if f"ADAPTERS_{name.upper()}" not in page
    ]
    assert not missing
    assert "<!-- generated" not in page


def test_every_variable_the_code_reads_is_documented(docs_site: tuple[Path, float]) -> None:
    page = text(docs_site[0], "reference/configuration")
    read = set()
    for folder in ("registry", "cli", "storage"):
        for path in (ROOT / folder).rglob("*.py"):
            read |= set(re.findall(r"\"(ADAPTERS_[A-Z0-9_]+)\"", path.read_text(encoding="utf-8")))
    assert read and not {v for v in read if v not in page}


def test_cli_reference_lists_every_command(docs_site: tuple[Path, float]) -> None:
    from cli.main import cli

    page = text(docs_site[0], "reference/cli")
    ctx = click.Context(cli)
    names = []
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        names.append(f"adapters {name}")
        if isinstance(command, click.Group):
            names += [f"adapters {name} {sub}" for sub in command.list_commands(ctx)]
    assert len(names) > 30 and not [n for n in names if n not in page]


def test_rest_reference_lists_every_operation(docs_site: tuple[Path, float]) -> None:
    import json

    document = json.loads((docs_site[0] / "reference" / "openapi.json").read_text(encoding="utf-8"))
    page = text(docs_site[0], "reference/rest-api")
    missing = [
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if f"{method.upper()} {path}" not in page
    ]
    assert document["paths"] and not missing


def test_the_readme_is_a_front_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 250
    for command in ("make demo", "make test", "make test-fast", "make docs"):
        assert command in readme
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / target).exists(), target


def test_the_readme_tour_is_the_tested_one() -> None:
    """The README's tour repeats commands of the pages whose blocks run (test_docs_blocks.py)."""
    from tests.docs.test_docs_blocks import PAGES, RUNS, blocks, console_script

    tested = {
        line.strip()
        for page in PAGES
        for block in blocks(page)
        if block.marker == RUNS and block.lang == "console"
        for line in console_script(block.code).split("\n")
    }
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tour = readme.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    shown = [line[2:].strip() for line in tour.split("\n") if line.startswith("$ adapters ")]
    assert len(shown) >= 10 and not [c for c in shown if c not in tested]
