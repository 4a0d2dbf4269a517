"""`adapters ui`: the address of a remote server's UI, or a server on the embedded default that the
local user can log in to with the token it prints."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.cli.conftest import Cli
from tests.conftest import free_port

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
        assert shown["user"] == "dana" and shown["token"].startswith("adreg_")
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=shown["url"].removesuffix("/ui")) as http:
            while True:
                try:
                    login = http.get("/ui/login")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and proc.poll() is None, "the UI server did not start"
                    time.sleep(0.1)
            assert http.get("/ui/jobs").status_code == 401  # anonymous
            csrf = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', login.text)
            assert csrf is not None
            answer = http.post("/ui/login", data={"token": shown["token"], "csrf_token": csrf.group(1)})
            assert answer.status_code == 303
            jobs = http.get("/ui/jobs")
            assert jobs.status_code == 200 and 'id="whoami">dana<' in jobs.text
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_server_with_its_ui_imports_no_torch() -> None:
    code = (
        "import sys; from registry.api import create_app; import registry.ui.pages_browse; "
        "print('torch' in sys.modules, 'jinja2' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["False", "True"]
