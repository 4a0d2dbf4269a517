"""Hostile input and faults at the CLI: non-ASCII users, pulls into folders that hold other files,
`-o .`, symlinks, and values refused while building a request: one `error (code): ...` line each."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from registry.access.principal import OPERATOR
from registry.api import create_app
from registry.api.deps import display_hint, get_principal
from registry.client.transfer import write_files
from registry.config import Settings
from registry.entities import FileInfo
from registry.errors import BadRequest, UnsafePath
from registry.services import accounts
from registry.services.context import Registry
from tests.cli.conftest import Cli, open_cli
from tests.conftest import ServerThread, db_url_for, make_settings, resource_params

pytestmark = pytest.mark.server

REPO_ROOT = Path(__file__).resolve().parents[2]


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_error_line(stderr: str, code: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error ({code}): "), stderr
    assert "Traceback" not in stderr


# ---------------------------------------------------------------- the user header
@pytest.fixture(params=resource_params("sqlite-file", "postgresql-file", server=True))
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    with open_cli(str(request.param), request, tmp_path) as run:
        yield run


@pytest.fixture(params=resource_params("sqlite-file", "postgresql-file", server=True))
def served_registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Cli, Registry]]:
    """`served`, with the server's registry (to make users and tokens as the operator would)."""
    db, backend = str(request.param).split("-")
    settings = make_settings(tmp_path / "server", db_url_for(db, tmp_path, request), backend, request)
    reg = Registry.from_settings(settings, migrate=True)
    try:
        with ServerThread(create_app(settings, reg), admin="bob") as srv:
            env = {
                "ADAPTERS_URL": srv.url,
                "ADAPTERS_HOME": str(tmp_path / "client-home"),
                "ADAPTERS_USER": "bob",
            }
            yield Cli({**env, "ADAPTERS_TOKEN": srv.token}), reg
    finally:
        reg.close()


def test_non_ascii_user_round_trips_through_a_server(
    served_registry: tuple[Cli, Registry], lora_a: Path
) -> None:
    """On a server, who pushed is the token's user (ADAPTERS_USER is only a display hint there)."""
    served, reg = served_registry
    for name in ("josé", "名前%20"):
        accounts.add_user(reg, name, principal=OPERATOR)
        accounts.grant(reg, name, "acme", "write", principal=OPERATOR)
    served.env["ADAPTERS_TOKEN"], _ = accounts.create_token(reg, "josé", principal=OPERATOR)
    served.env["ADAPTERS_USER"] = "josé"
    pushed = served.json("push", str(lora_a), "acme/x")
    assert pushed["created"] is True
    assert served.json("show", "acme/x")["pushed_by"] == "josé"
    assert "by josé" in served("show", "acme/x").stdout
    served.env["ADAPTERS_TOKEN"], _ = accounts.create_token(reg, "名前%20", principal=OPERATOR)
    served.env["ADAPTERS_USER"] = "someone-else"  # not trusted: the name comes from the token
    served.json("push", str(lora_a), "acme/y")
    assert served.json("show", "acme/y")["pushed_by"] == "名前%20"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("\u0430lice", "Cyrillic and Latin"),  # a Cyrillic а
        ("\u03b1lice", "Greek and Latin"),
        ("b\u043eb", "Cyrillic and Latin"),
        ("\uff41lice", "NFKC"),  # fullwidth a
        ("\U0001d41alice", "NFKC"),  # mathematical bold a
        ("\uff2f\uff30\uff25\uff32\uff21\uff34\uff2f\uff32", "reserved"),
        ("Operator", "reserved"),
    ],
)
def test_confusable_user_names_refused_through_the_server(
    served_registry: tuple[Cli, Registry], name: str, why: str
) -> None:
    served, reg = served_registry
    bad = served("user", "add", name, ok=False)
    assert bad.exit_code == 1
    one_error_line(bad.stderr, "bad_request")
    assert why in bad.stderr
    assert name not in {u.name for u in accounts.list_users(reg, principal=OPERATOR)}


def test_user_names_unique_up_to_case_and_compatibility_forms(served_registry: tuple[Cli, Registry]) -> None:
    """One script per name, whichever (Latin with the scripts CJK text mixes with it): accepted.
    A name that differs from an existing one only by case or compatibility form: a conflict."""
    served, reg = served_registry
    for name in (
        "alice",
        "\u0430\u043b\u0438\u0441\u0430",
        "\u540d\u524d",
        "tanaka\u7530\u4e2d",
        "jos\u00e9",
    ):
        assert served.json("user", "add", name)["name"] == name
    for name in ("Alice", "ALICE", "\u0410\u043b\u0438\u0441\u0430", "Jos\u00e9"):
        bad = served("user", "add", name, ok=False)
        one_error_line(bad.stderr, "conflict")
    assert len(accounts.list_users(reg, principal=OPERATOR)) == 6  # bob (the server's admin) and the five


def test_invalid_user_is_one_error_line(served: Cli, lora_a: Path) -> None:
    served.env["ADAPTERS_USER"] = "evil\u202eresu"
    bad = served("push", str(lora_a), "acme/x", ok=False)
    assert bad.exit_code == 1
    one_error_line(bad.stderr, "bad_request")
    assert "U+202E" in bad.stderr
    served.env["ADAPTERS_USER"] = "x" * 129
    too_long = served("push", str(lora_a), "acme/x", "--json", ok=False)
    assert too_long.exit_code == 1
    assert json.loads(too_long.stdout)["error"]["code"] == "bad_request"
    served.env["ADAPTERS_USER"] = "x" * 128
    assert served.json("push", str(lora_a), "acme/x")["created"] is True


def test_invalid_user_header_is_a_400_problem(served: Cli) -> None:
    url = served.env["ADAPTERS_URL"]
    for header in ("a%00b", "a%E2%80%AEb", "%0A", "x" * 129, "a\x85b".encode("latin-1")):
        resp = httpx.post(
            f"{url}/v1/repos/acme/x/versions", json={"files": []}, headers={"X-Adapters-User": header}
        )
        assert resp.status_code == 400, (header, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert resp.json()["code"] == "bad_request"


@functools.cache
def _app() -> Any:
    """A server app (its settings and security monitor are what get_principal reads), never started."""
    return create_app(Settings(home=Path(tempfile.mkdtemp(prefix="hint-"))))


def hint_of(header: bytes | None) -> str | None:
    """The display hint X-Adapters-User decodes to (the name of embedded and operator modes; on a
    server the principal is the token's user, anonymous without one)."""
    headers = [] if header is None else [(b"x-adapters-user", header)]
    request = Request({"type": "http", "headers": headers, "app": _app(), "client": ("127.0.0.1", 1)})
    assert get_principal(request).is_anonymous  # the header is never trusted as who calls
    return display_hint(request)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        (None, None),
        (b"", None),
        (b"  ", None),
        (b"bob", "bob"),
        (b"jos%C3%A9", "josé"),
        ("josé".encode(), "josé"),  # a raw UTF-8 header (curl -H)
        (b"100%", "100%"),
        (b"%FF%FE", "%FF%FE"),  # escapes that are not UTF-8: the value as sent
        (b"x" * 128, "x" * 128),
    ],
)
def test_user_header_decodes(header: bytes | None, name: str | None) -> None:
    assert hint_of(header) == name


@pytest.mark.parametrize("header", [b"x" * 129, b"%E2%80%8Bzero", b"tab%09", b"nul%00", b"%C2%85"])
def test_user_header_refuses(header: bytes) -> None:
    with pytest.raises(BadRequest):
        hint_of(header)


# ---------------------------------------------------------------- pull into existing folders
@pytest.fixture
def pushed(embedded: Cli, lora_a: Path) -> Path:
    """acme/x:1 is lora_a plus a subfolder (docs/notes.md)."""
    (lora_a / "docs").mkdir()
    (lora_a / "docs" / "notes.md").write_text("notes\n")
    embedded("push", str(lora_a), "acme/x")
    return lora_a


def test_pull_force_keeps_unrelated_files(embedded: Cli, pushed: Path, tmp_path: Path) -> None:
    out = tmp_path / "work"
    (out / "docs").mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    (out / "docs" / "mine.md").write_text("also mine")
    (out / "adapter_config.json").write_text("stale")
    (out / ".git").mkdir()
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    before = read_tree(out)

    refused = embedded("pull", "acme/x", "-o", str(out), ok=False)
    assert refused.exit_code == 1
    one_error_line(refused.stderr, "output_exists")
    assert read_tree(out) == before

    pulled = embedded.json("pull", "acme/x", "-o", str(out), "--force")
    assert Path(pulled["path"]) == out.resolve()
    tree = read_tree(out)
    assert {k: tree[k] for k in read_tree(pushed)} == read_tree(pushed)  # replaced and verified
    for kept in ("keep.txt", "docs/mine.md", ".git/HEAD"):
        assert tree[kept] == before[kept]
    assert set(tree) == set(read_tree(pushed)) | {"keep.txt", "docs/mine.md", ".git/HEAD"}
    assert not [p.name for p in out.iterdir() if p.name.startswith(".adapters-pull-")]
    assert not [p.name for p in tmp_path.iterdir() if ".pull-" in p.name]


def test_pull_into_new_and_empty_folders(embedded: Cli, pushed: Path, tmp_path: Path) -> None:
    new = tmp_path / "a" / "b" / "new"
    embedded("pull", "acme/x", "-o", str(new))
    assert read_tree(new) == read_tree(pushed)
    empty = tmp_path / "empty"
    empty.mkdir()
    inode = empty.stat().st_ino
    embedded("pull", "acme/x", "-o", str(empty))  # no --force needed
    assert read_tree(empty) == read_tree(pushed)
    assert empty.stat().st_ino == inode  # written into, not swapped
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def run_cli(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_pull_dot_from_inside_the_folder(embedded: Cli, pushed: Path, tmp_path: Path) -> None:
    here = tmp_path / "here"
    here.mkdir()
    inode = here.stat().st_ino
    first = run_cli(here, embedded.env, "pull", "acme/x", "-o", ".", "--json")
    assert first.returncode == 0, first.stderr
    assert Path(json.loads(first.stdout)["path"]) == here.resolve()
    assert read_tree(here) == read_tree(pushed)

    (here / "keep.txt").write_text("mine")
    (here / "adapter_model.safetensors").write_bytes(b"stale")
    refused = run_cli(here, embedded.env, "pull", "acme/x", "-o", ".")
    assert refused.returncode == 1
    one_error_line(refused.stderr, "output_exists")
    again = run_cli(here, embedded.env, "pull", "acme/x", "-o", ".", "--force")
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    assert here.stat().st_ino == inode  # the working directory itself was never renamed
    assert read_tree(here) == {**read_tree(pushed), "keep.txt": b"mine"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    sub = here / "docs"
    rel = run_cli(sub, embedded.env, "pull", "acme/x", "-o", "../other")
    assert rel.returncode == 0, rel.stderr
    assert read_tree(here / "other") == read_tree(pushed)


def test_pull_refuses_symlinks_and_folders_in_the_way(embedded: Cli, pushed: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "notes.md").write_text("not yours")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    (out / "docs").symlink_to(outside, target_is_directory=True)
    refused = embedded("pull", "acme/x", "-o", str(out), "--force", ok=False)
    assert refused.exit_code == 1
    one_error_line(refused.stderr, "bad_request")
    assert "symlink" in refused.stderr
    assert (outside / "notes.md").read_text() == "not yours"
    assert sorted(p.name for p in out.iterdir()) == ["docs", "keep.txt"]  # nothing written

    (out / "docs").unlink()
    (out / "adapter_config.json").mkdir()
    (out / "adapter_config.json" / "inside").write_text("mine")
    folder = embedded("pull", "acme/x", "-o", str(out), "--force", ok=False)
    assert folder.exit_code == 1
    one_error_line(folder.stderr, "output_exists")
    assert (out / "adapter_config.json" / "inside").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "keep.txt"]

    (out / "adapter_config.json" / "inside").unlink()
    (out / "adapter_config.json").rmdir()
    (out / "docs").write_text("a file where a folder goes")
    blocked = embedded("pull", "acme/x", "-o", str(out), "--force", ok=False)
    assert blocked.exit_code == 1
    one_error_line(blocked.stderr, "output_exists")
    assert (out / "docs").read_text() == "a file where a folder goes"

    target = tmp_path / "a-file"
    target.write_text("mine")
    not_folder = embedded("pull", "acme/x", "-o", str(target), "--force", ok=False)
    assert not_folder.exit_code == 1
    one_error_line(not_folder.stderr, "output_exists")
    assert target.read_text() == "mine"


def test_pull_through_a_symlinked_output_writes_the_real_folder(
    embedded: Cli, pushed: Path, tmp_path: Path
) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "keep.txt").write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    embedded("pull", "acme/x", "-o", str(link), "--force")
    assert link.is_symlink()
    assert read_tree(real) == {**read_tree(pushed), "keep.txt": b"mine"}
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    bad = embedded("pull", "acme/x", "-o", str(dangling), ok=False)
    assert bad.exit_code == 1
    one_error_line(bad.stderr, "output_exists")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(
    "path", ["../evil.json", "/etc/evil.json", "a/../../evil.json", "a//b.json", "", "a\\b"]
)
def test_pull_refuses_manifest_paths_outside_the_folder(path: str, tmp_path: Path) -> None:
    bad = FileInfo.model_construct(path=path, size=1, sha256="sha256:" + "0" * 64)
    for out in (tmp_path / "new", tmp_path):
        with pytest.raises(UnsafePath):
            write_files(None, [bad], out, force=True)  # type: ignore[arg-type]  # refused before any use
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ---------------------------------------------------------------- refused values
def test_refused_request_value_is_one_line(embedded: Cli, lora_a: Path) -> None:
    long_task = "t" * 300
    bad = embedded("push", str(lora_a), "acme/x", "--task", long_task, ok=False)
    assert bad.exit_code == 1
    one_error_line(bad.stderr, "validation_error")
    assert "task" in bad.stderr and "128" in bad.stderr
    as_json = embedded("push", str(lora_a), "acme/x", "--task", long_task, "--json", ok=False)
    assert as_json.exit_code == 1
    error = json.loads(as_json.stdout)["error"]
    assert error["code"] == "validation_error" and error["message"].startswith("task: ")


def test_huge_cursor_is_one_error_line(embedded: Cli) -> None:
    result = embedded("list", "--cursor", "99999999999999999999", ok=False)
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error (")
