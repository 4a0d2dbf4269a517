"""Issue 23, "clear words": what the CLI says to someone without a token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Cli, open_cli


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    with open_cli("sqlite-file", request, tmp_path) as run:
        yield run


def test_no_token_names_the_login_command(server: Cli, adapters_dir: Path, tmp_path: Path) -> None:
    anonymous = Cli({**server.env, "ADAPTERS_TOKEN": "", "XDG_CONFIG_HOME": str(tmp_path / "config")})
    refused = anonymous("push", str(adapters_dir / "lora_a"), "bob/legal", ok=False)
    assert refused.exit_code == 1
    assert "adapters login" in refused.stderr and "ADAPTERS_TOKEN" in refused.stderr
    assert "Authorization" not in refused.stderr
