"""Schemathesis (the real CLI) against the running server's own OpenAPI document, on PostgreSQL:
whatever it generates from the schema, no route answers 5xx. Bounded in examples and time."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.api import create_app
from registry.services.context import Registry
from tests.conftest import ServerThread, make_settings

pytestmark = pytest.mark.server

MAX_EXAMPLES = 12


@pytest.fixture
def pg_server(tmp_path: Path, pg_url: str, request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    settings = make_settings(tmp_path, pg_url, "file", request).model_copy(
        update={"upload_idle_timeout_s": 2.0}
    )
    reg = Registry.from_settings(settings, migrate=True)
    with ServerThread(create_app(settings, reg)) as server:
        yield server
    reg.close()


@pytest.mark.parametrize("caller", ["anonymous", "admin"])
def test_no_server_errors_from_generated_requests(
    pg_server: ServerThread, tmp_path: Path, caller: str
) -> None:
    """Every route, as an anonymous caller and with an admin token: no 5xx, and every response
    whose status the schema documents conforms to it."""
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert exe is not None, "schemathesis is a test dependency (pyproject [test])"
    auth = ["--header", f"Authorization: Bearer {pg_server.token}"] if caller == "admin" else []
    proc = subprocess.run(
        [
            exe,
            "run",
            f"{pg_server.url}/openapi.json",
            *auth,
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "20261128",
            "--request-timeout",
            "20",
            "--generation-allow-x00",
            "true",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
