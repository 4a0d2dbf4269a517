"""`adapters list` and `adapters pull` on the embedded SQLite file and blob directory through
sqlite3 (registry.services.quick) give the very JSON and files the full path (the services through
the ORM) gives, and step aside wherever that path must answer: a server, PostgreSQL, S3, no
database yet, a migration to run, a value Settings or the filters would refuse, a ref or blob that
does not exist."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.access.principal import OPERATOR
from registry.client.bases import add_base_folder, resolve_push_base
from registry.client.local import LocalClient
from registry.client.transfer import parse_eval, pull, push_folder
from registry.config import Settings
from registry.entities import VersionFilter
from registry.refs import parse_ref
from registry.services import queries, quick, versions
from registry.services.context import Registry
from storage.local import LocalBlobStore

pytestmark = pytest.mark.server

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def populated(
    tmp_path_factory: pytest.TempPathFactory, adapters_dir: Path
) -> Iterator[tuple[Path, Registry]]:
    """An embedded registry with every kind of row a summary shows, written by the real services:
    several repositories and versions, tasks, evals with a history (only current ones listed),
    aliases (one moved), a base linked by name and one by fingerprint, a pushed lineage (derived), a
    version pushed with no lineage, and a deleted version."""
    home = tmp_path_factory.mktemp("quick") / "home"
    settings = Settings(home=home, user="tester")  # type: ignore[call-arg]
    reg = Registry.from_settings(settings, migrate=True)
    client = LocalClient(reg, "tester", reg.store)
    add_base_folder(client, adapters_dir / "base", ["org/tiny-llama"])
    a, b, dora = adapters_dir / "lora_a", adapters_dir / "lora_b", adapters_dir / "lora_dora"
    push_folder(
        client, a, "acme/legal", task="legal", evals=[parse_eval("acc=0.5@lexglue:test")], aliases=["prod"]
    )
    push_folder(client, b, "acme/legal", task="legal", base="org/tiny-llama", aliases=["staging", "canary"])
    push_folder(client, dora, "acme/legal", task="legal-qa", message="dora")
    push_folder(
        client,
        b,
        "acme/med",
        task="medical",
        base=resolve_push_base(client, str(adapters_dir / "base"), None),
    )
    push_folder(client, a, "other/chat", evals=[parse_eval("loss=1.25"), parse_eval("acc=0.75@mmlu")])
    first = push_folder(client, dora, "acme/merge-src", task="legal")
    lineage = {"kind": "merge", "method": "linear", "parents": [{"digest": first.digest, "weight": 1.0}]}
    push_folder(client, b, "acme/merged", lineage=lineage, task="legal")
    push_folder(client, a, "acme/gone")
    push_folder(client, b, "acme/gone")
    client.delete_version("acme/gone:2", force=True)
    client.add_evals("acme/legal:1", [parse_eval("acc=0.6@lexglue:test")], note="rerun")  # history
    client.add_evals("acme/legal:3", [parse_eval("f1=0.9@cuad"), parse_eval("acc=0.7@lexglue:test")])
    client.set_alias("acme/legal:3", "prod")  # moved from 1
    yield home / "registry.db", reg
    reg.close()


def full(reg: Registry, limit: int = 50, cursor: str | None = None, **flt: Any) -> str:
    page = queries.list_versions(reg, VersionFilter(**flt), limit, cursor, principal=OPERATOR)
    return json.dumps(page.model_dump(mode="json"), indent=2)


def fast(db: Path, limit: int = 50, cursor: str | None = None, **flt: Any) -> str:
    doc = quick.list_versions(db, **flt, limit=limit, cursor=cursor)
    assert doc is not None, "the quick path stepped aside where it should answer"
    return json.dumps(doc, indent=2)


@pytest.mark.parametrize(
    "flt",
    [
        {},
        {"latest_only": True},
        {"repo": "acme/legal"},
        {"repo": "acme/nothing"},
        {"task": "legal"},
        {"task": "legal", "latest_only": True},
        {"peft_type": "lora"},
        {"peft_type": "IA3"},
        {"base": "org/tiny-llama"},
        {"repo": "acme/legal", "task": "legal-qa"},
    ],
)
def test_same_json_as_the_full_path(populated: tuple[Path, Registry], flt: dict[str, Any]) -> None:
    db, reg = populated
    assert fast(db, **flt) == full(reg, **flt)


def test_the_page_shows_every_field_the_summary_has(populated: tuple[Path, Registry]) -> None:
    """The fixture reaches what the comparison must cover (else equal JSON could hide a gap)."""
    db, _ = populated
    items = {v["ref"]: v for v in json.loads(fast(db))["items"]}
    assert "acme/gone:2" not in items and "acme/gone:1" in items
    legal1, legal2, legal3 = items["acme/legal:1"], items["acme/legal:2"], items["acme/legal:3"]
    assert legal1["evals"] == [{"metric": "acc", "value": 0.6, "dataset": "lexglue", "split": "test"}]
    assert legal1["aliases"] == [] and legal3["aliases"] == ["prod"]
    assert legal2["aliases"] == ["canary", "staging"] and legal2["base_linked"]
    assert (
        legal2["base_fingerprint"].startswith("sha256:") and legal2["base_model"]["name"] == "org/tiny-llama"
    )
    assert legal3["use_dora"] and legal3["use_rslora"] and len(legal3["evals"]) == 2
    assert items["acme/merged:1"]["derived"] and not legal1["derived"]
    assert items["acme/med:1"]["base_fingerprint"] == legal2["base_fingerprint"]


def test_every_page_of_every_size_matches(populated: tuple[Path, Registry]) -> None:
    db, reg = populated
    total = len(json.loads(full(reg, 500))["items"])
    assert total == 8
    for limit in (1, 2, 3, 500):
        cursor: str | None = None
        pages = 0
        while True:
            got = fast(db, limit, cursor)
            assert got == full(reg, limit, cursor)
            cursor = json.loads(got)["next_cursor"]
            pages += 1
            if cursor is None:
                break
        assert pages == -(-total // limit)


@pytest.mark.parametrize(
    ("limit", "cursor", "flt"),
    [
        (0, None, {}),
        (501, None, {}),
        (50, "not-a-cursor", {}),
        (50, "99999999999", {}),
        (50, None, {"repo": "Acme/Legal"}),
        (50, None, {"repo": "acme"}),
        (50, None, {"task": ""}),
        (50, None, {"task": "x" * 129}),
        (50, None, {"task": "legal\n"}),
        (50, None, {"base": "org/tiny llama"}),
        (50, None, {"peft_type": "x" * 33}),
    ],
)
def test_steps_aside_for_what_the_full_path_refuses_or_decides(
    populated: tuple[Path, Registry], limit: int, cursor: str | None, flt: dict[str, Any]
) -> None:
    db, _ = populated
    assert quick.list_versions(db, **flt, limit=limit, cursor=cursor) is None


def test_steps_aside_when_there_is_no_database_or_a_migration_to_run(
    populated: tuple[Path, Registry], tmp_path: Path
) -> None:
    db, _ = populated
    assert quick.list_versions(tmp_path / "none.db") is None
    assert not (tmp_path / "none.db").exists()  # nothing created
    for revision in ("0007", "0099"):  # behind (the full path migrates) and ahead (it refuses)
        copy = tmp_path / f"at-{revision}.db"
        with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
            src.backup(dst)
        with sqlite3.connect(copy) as conn:
            conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
        assert quick.list_versions(copy) is None
    assert quick.list_versions(db, limit=queries.MAX_LIMIT) is not None  # the same largest page


def test_the_sqlite_file_of_a_database_url() -> None:
    cases = {
        "sqlite:////abs/x.db": Path("/abs/x.db"),
        "sqlite:///rel.db": Path("rel.db"),
        "sqlite:///:memory:": None,
        "sqlite://": None,
        "sqlite:///a.db?mode=ro": None,
        "sqlite:///a%20b.db": None,
        "postgresql://h/db": None,
    }
    for url, want in cases.items():
        assert Settings(database_url=url).sqlite_file == want, url
    assert Settings(home=Path("/h"), database_url=None).sqlite_file == Path("/h/registry.db")


def test_settings_read_the_environment_as_pydantic_settings_did(monkeypatch: pytest.MonkeyPatch) -> None:
    """ADAPTERS_<FIELD> in any case, under what code passes, validated; other variables ignored."""
    for key in list(os.environ):
        if key.upper().startswith("ADAPTERS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("adapters_home", "/from/env")
    monkeypatch.setenv("ADAPTERS_S3_SECURE", "off")
    monkeypatch.setenv("ADAPTERS_NOT_A_FIELD", "x")
    settings = Settings()
    assert settings.home == Path("/from/env") and settings.s3_secure is False
    assert Settings(home=Path("/code")).home == Path("/code")
    monkeypatch.setenv("ADAPTERS_UPLOAD_CONCURRENCY", "0")
    with pytest.raises(ValueError, match="upload_concurrency"):
        Settings()


def run_cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`adapters ARGS` in a fresh process; it prints whether SQLAlchemy was imported on stderr."""
    probe = (
        "import sys\nfrom cli.main import cli\ntry:\n    cli()\nfinally:\n"
        "    print('sqlalchemy' in sys.modules, file=sys.stderr)"
    )
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("ADAPTERS_")}
    return subprocess.run(
        [sys.executable, "-c", probe, *args],
        env={**clean, "ADAPTERS_HOME": str(home), **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_list_takes_the_quick_path_and_prints_the_same(populated: tuple[Path, Registry]) -> None:
    db, reg = populated
    got = run_cli(db.parent, "list", "--json", "--all-versions")
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == full(reg)
    assert got.stderr.strip().splitlines()[-1] == "False"  # answered without SQLAlchemy
    table = run_cli(db.parent, "list", "--task", "legal")
    assert table.returncode == 0 and "acme/legal:2" in table.stdout and "canary,staging" in table.stdout
    assert table.stderr.strip().splitlines()[-1] == "False"


def test_cli_list_goes_the_full_way_where_it_must(populated: tuple[Path, Registry], tmp_path: Path) -> None:
    db, _ = populated
    # A setting Settings refuses is still refused, in one line.
    bad = run_cli(db.parent, "list", "--json", ADAPTERS_UPLOAD_CONCURRENCY="many")
    assert bad.returncode == 1 and "validation_error" in bad.stderr and "upload_concurrency" in bad.stderr
    # A bad cursor: the full path's error.
    cur = run_cli(db.parent, "list", "--json", "--cursor", "nope")
    assert cur.returncode == 1 and json.loads(cur.stdout)["error"]["code"] == "bad_request"
    assert cur.stderr.strip().splitlines()[-1] == "True"
    # No database yet: created and migrated, an empty page.
    fresh = run_cli(tmp_path / "fresh", "list", "--json")
    assert fresh.returncode == 0 and json.loads(fresh.stdout) == {"items": [], "next_cursor": None}
    assert (tmp_path / "fresh" / "registry.db").is_file() and fresh.stderr.strip().splitlines()[-1] == "True"


# ---------------------------------------------------------------- pull
def full_resolve(reg: Registry, ref: str) -> dict[str, Any]:
    info = versions.resolve(reg, parse_ref(ref), principal=OPERATOR)
    files = [f.model_dump(mode="json") for f in info.files]
    return {
        "repo": info.repo,
        "version": info.version,
        "digest": info.digest,
        "ref": info.ref,
        "files": files,
    }


def test_every_reference_form_resolves_as_the_full_path_does(populated: tuple[Path, Registry]) -> None:
    db, reg = populated
    legal3 = full_resolve(reg, "acme/legal:3")
    legal1 = full_resolve(reg, "acme/legal:1")
    refs = [
        "acme/legal",
        "acme/legal@latest",
        "acme/legal:1",
        "acme/legal:2",
        "acme/legal@prod",  # moved to 3
        "acme/legal@canary",
        f"acme/legal@{legal1['digest']}",
        f"acme/legal@{legal3['digest']}",
        "acme/gone",
        "acme/merged:1",
    ]
    for ref in refs:
        assert quick.resolve_files(db, ref) == full_resolve(reg, ref), ref
    assert quick.resolve_files(db, "acme/legal@prod")["version"] == 3  # type: ignore[index]
    assert len(legal3["files"]) >= 2 and [f["path"] for f in legal3["files"]] == sorted(
        f["path"] for f in legal3["files"]
    )


@pytest.mark.parametrize(
    "ref",
    [
        "acme/nothing",
        "acme/legal:9",
        "acme/gone:2",
        "acme/legal@nope",
        "acme/legal@sha256:" + "0" * 64,
        "Bad",
    ],
)
def test_resolve_steps_aside_for_what_does_not_exist(populated: tuple[Path, Registry], ref: str) -> None:
    db, _ = populated
    assert quick.resolve_files(db, ref) is None


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cli_pull_takes_the_quick_path_and_writes_what_the_full_path_writes(
    populated: tuple[Path, Registry], tmp_path: Path
) -> None:
    db, reg = populated
    quick_out, full_out = tmp_path / "quick", tmp_path / "full"
    fast_run = run_cli(db.parent, "pull", "acme/legal@prod", "-o", str(quick_out), "--json")
    assert fast_run.returncode == 0, fast_run.stderr
    assert fast_run.stderr.strip().splitlines()[-1] == "False"  # no SQLAlchemy
    info, _ = pull(LocalClient(reg, "tester", reg.store), "acme/legal@prod", full_out)
    doc = json.loads(fast_run.stdout)
    assert doc == {
        "repo": info.repo,
        "version": info.version,
        "digest": info.digest,
        "path": str(quick_out),
        "files": [f.model_dump(mode="json") for f in info.files],
    }
    assert tree(quick_out) == tree(full_out) and len(tree(quick_out)) == len(doc["files"]) >= 2
    # The same refusal as the full path: a non-empty folder needs --force.
    again = run_cli(db.parent, "pull", "acme/legal@prod", "-o", str(quick_out), "--json")
    assert again.returncode == 1 and json.loads(again.stdout)["error"]["code"] == "output_exists"
    forced = run_cli(db.parent, "pull", "acme/legal:1", "-o", str(quick_out), "--force")
    assert forced.returncode == 0 and "pulled acme/legal:1" in forced.stdout
    missing = run_cli(db.parent, "pull", "acme/legal:9", "--json", "-o", str(tmp_path / "x"))
    assert json.loads(missing.stdout)["error"]["code"] == "not_found" and not (tmp_path / "x").exists()
    assert missing.stderr.strip().splitlines()[-1] == "True"  # said by the full path


def test_cli_quick_pull_of_a_corrupt_or_missing_blob(adapters_dir: Path, tmp_path: Path) -> None:
    """A blob that hashes wrong is the registry's corruption (nothing is written, nothing deleted);
    a blob the store lacks sends the pull down the full path, which says so."""
    home = tmp_path / "home"
    settings = Settings(home=home, user="tester")  # type: ignore[call-arg]
    reg = Registry.from_settings(settings, migrate=True)
    try:
        pushed = push_folder(LocalClient(reg, "tester", reg.store), adapters_dir / "lora_a", "acme/a")
        files = versions.resolve(reg, parse_ref("acme/a"), principal=OPERATOR).files
    finally:
        reg.close()
    weights = next(f for f in files if f.path.endswith(".safetensors"))
    blob_path = home / "blobs" / "sha256" / weights.sha256[7:9] / weights.sha256[7:]
    original = blob_path.read_bytes()
    blob_path.chmod(0o644)
    blob_path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    bad = run_cli(home, "pull", "acme/a", "-o", str(tmp_path / "out"), "--json")
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1] == "False"
    error = json.loads(bad.stdout)["error"]
    assert error["code"] == "digest_mismatch" and "corrupt" in error["message"]
    assert not (tmp_path / "out").exists() and blob_path.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # no staging left
    blob_path.unlink()
    gone = run_cli(home, "pull", "acme/a", "-o", str(tmp_path / "out"), "--json")
    assert gone.returncode == 1 and gone.stderr.strip().splitlines()[-1] == "True"  # the full path
    assert json.loads(gone.stdout)["error"]["code"] in {"blob_not_found", "not_found", "blob_missing"}
    assert not (tmp_path / "out").exists() and pushed.created


def test_cli_quick_pull_from_s3_downloads_once_into_the_folder_and_the_cache(
    adapters_dir: Path, tmp_path: Path, s3_endpoint: str, s3_bucket: str
) -> None:
    """The embedded registry on S3: the pull reads through sqlite3, downloads each blob straight
    into the output folder (verified) and the local cache takes that file; a second pull copies
    out of the cache."""
    home = tmp_path / "home"
    s3 = {
        "ADAPTERS_BLOB_URL": f"s3://{s3_bucket}/adapters",
        "ADAPTERS_S3_ENDPOINT": s3_endpoint,
        "ADAPTERS_S3_ACCESS_KEY": "test",
        "ADAPTERS_S3_SECRET_KEY": "test",
        "ADAPTERS_S3_REGION": "us-east-1",
        "ADAPTERS_S3_SECURE": "false",
    }
    pushed = run_cli(home, "push", str(adapters_dir / "lora_b"), "acme/b", "--json", **s3)
    assert pushed.returncode == 0, pushed.stderr
    first = run_cli(home, "pull", "acme/b", "-o", str(tmp_path / "one"), "--json", **s3)
    assert first.returncode == 0, first.stderr
    assert first.stderr.strip().splitlines()[-1] == "False"  # no SQLAlchemy
    assert tree(tmp_path / "one") == tree(adapters_dir / "lora_b")
    cache = LocalBlobStore(home / "cache")
    for f in json.loads(first.stdout)["files"]:
        entry = cache.path_for(f["sha256"])
        assert entry.samefile(tmp_path / "one" / f["path"])  # one write: the cache took the file
    second = run_cli(home, "pull", "acme/b", "-o", str(tmp_path / "two"), "--json", **s3)
    assert second.returncode == 0 and tree(tmp_path / "two") == tree(adapters_dir / "lora_b")
    assert not any(
        (tmp_path / "two" / f["path"]).samefile(tmp_path / "one" / f["path"])
        for f in json.loads(second.stdout)["files"]
    )


def test_list_steps_aside_for_a_stored_time_with_a_zone(
    populated: tuple[Path, Registry], tmp_path: Path
) -> None:
    """The ORM never stores a zone on SQLite; a row that has one (made by hand) reads back aware,
    which the full path writes with a `Z`: it answers for that page."""
    db, _ = populated
    copy = tmp_path / "zoned.db"
    with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    with sqlite3.connect(copy) as conn:
        conn.execute("UPDATE versions SET created_at = '2026-01-01 00:00:00.000000+00:00' WHERE number = 1")
    assert quick.list_versions(copy, limit=500) is None
    assert quick.list_versions(db, limit=500) is not None
