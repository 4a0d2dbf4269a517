"""The tiny bases registered the way users register them (`base add --config`), read back through
the client as the planner reads them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from registry.access.principal import Principal
from registry.client.bases import add_base_config
from registry.client.local import LocalClient
from registry.planning import Layout
from registry.services.context import Registry
from tests.conftest import make_settings
from tests.planning.models import CONFIGS, FIXTURES, write_config


@pytest.fixture(scope="session")
def layouts(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[dict[str, Layout]]:
    root = tmp_path_factory.mktemp("planning")
    db = f"sqlite:///{root / 'registry.db'}"
    reg = Registry.from_settings(make_settings(root, db, "file", request), migrate=True)
    client = LocalClient(reg, "tester", reg.store, principal=Principal.operator("tester"))
    out = {}
    for name in CONFIGS:
        add_base_config(client, write_config(name, root), [f"tiny/{name}"])
        out[name] = Layout.of(client.get_base_layout(f"tiny/{name}"))
    yield out
    reg.close()


@pytest.fixture(scope="session")
def big_layouts(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[dict[str, Layout]]:
    """Llama-2-70B and LLaMA-65B from their config.json alone (tests/planning/fixtures)."""
    root = tmp_path_factory.mktemp("planning-big")
    reg = Registry.from_settings(
        make_settings(root, f"sqlite:///{root / 'r.db'}", "file", request), migrate=True
    )
    client = LocalClient(reg, "tester", reg.store, principal=Principal.operator("tester"))
    out = {}
    for name in ("llama-2-70b", "llama-65b"):
        add_base_config(client, FIXTURES / f"{name}.json", [f"meta/{name}"])
        out[name] = Layout.of(client.get_base_layout(f"meta/{name}"))
    yield out
    reg.close()
