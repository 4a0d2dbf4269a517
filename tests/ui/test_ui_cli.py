"""`adapters ui`: the address of a remote server's UI, or a server on the embedded default that the
local user logs in to with one click on a one-time link (no token printed), reusing its token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import Cli
from tests.conftest import free_port

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[2]


def test_ui_names_the_remote_servers_ui() -> None:
    run = Cli({"ADAPTERS_URL": "http://registry.example:8000/", "ADAPTERS_HOME": "/nonexistent"})
    assert run.json("ui", "--no-browser") == {"url": "http://registry.example:8000/ui", "server": "remote"}


def test_ui_serves_the_embedded_registry_and_logs_the_local_user_in(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ADAPTERS_HOME": str(tmp_path / "home"),
        "ADAPTERS_URL": "",
        "ADAPTERS_DATABASE_URL": "",
        "ADAPTERS_BLOB_URL": "",
        "ADAPTERS_USER": "dana",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "ui",
            "--json",
            "--no-browser",
            "--no-worker",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline()]
        while lines[-1] not in (b"}\n", b""):  # emit_json indents: the object ends with a lone }
            lines.append(proc.stdout.readline())
        shown = json.loads(b"".join(lines))
        assert shown["url"] == f"http://127.0.0.1:{port}/ui" and shown["server"] == "embedded"
        assert shown["user"] == "dana" and "token" not in shown  # no token to paste
        link = shown["login_url"]
        assert link.startswith(f"http://127.0.0.1:{port}/ui/login/once?n=")
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=shown["url"].removesuffix("/ui")) as http:
            while True:
                try:
                    http.get("/ui/login")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and proc.poll() is None, "the UI server did not start"
                    time.sleep(0.1)
            assert http.get("/ui/jobs").status_code == 401  # anonymous
            answer = http.get(link)  # one click
            assert answer.status_code == 303 and answer.headers["location"] == "/ui"
            jobs = http.get("/ui/jobs")
            assert jobs.status_code == 200 and 'id="whoami">dana<' in jobs.text
        with httpx.Client() as other:  # the link is spent: a second browser gets the login form
            again = other.get(link)
            assert again.status_code == 401 and "used already" in again.text
            assert "adreg_ui_token" not in again.cookies
    finally:
        proc.terminate()
        proc.wait(10)


def test_ui_reuses_the_token_it_made_while_it_lives(tmp_path: Path) -> None:
    """A second launch mints no new 12-hour token; a revoked or nearly expired one is replaced."""
    from datetime import timedelta

    from cli import ui
    from registry.access.principal import OPERATOR
    from registry.config import Settings
    from registry.services import accounts
    from registry.services.context import Registry

    home = tmp_path / "home"
    reg = Registry.from_settings(Settings(home=home, database_url="", blob_url=""), migrate=True)
    try:
        first = ui._local_login(reg, "dana", home)
        assert first is not None and ui._local_login(reg, "dana", home) == first
        assert len(accounts.list_tokens(reg, "dana", principal=OPERATOR)) == 1
        assert (home / ui.LOGIN_FILE).stat().st_mode & 0o077 == 0  # this user's only
        made = accounts.list_tokens(reg, "dana", principal=OPERATOR)[0]
        accounts.revoke_token(reg, made.id, principal=OPERATOR)
        second = ui._local_login(reg, "dana", home)
        assert second not in (None, first)
        short, _ = accounts.create_token(reg, "dana", expires_in=timedelta(minutes=30), principal=OPERATOR)
        ui._save(home, short, max(t.id for t in accounts.list_tokens(reg, "dana", principal=OPERATOR)))
        assert ui._local_login(reg, "dana", home) not in (None, short)  # under an hour left: a new one
    finally:
        reg.close()


def test_the_server_with_its_ui_imports_no_torch() -> None:
    code = (
        "import sys; from registry.api import create_app; import registry.ui.pages_browse; "
        "print('torch' in sys.modules, 'jinja2' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["False", "True"]
