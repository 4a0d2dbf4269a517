"""One read model for versions (registry.reads), two drivers: `adapters list` and `adapters pull`
on the embedded SQLite file read through a bare sqlite3 connection give the very JSON and files
the services give through the server's SQLAlchemy session (on SQLite and on PostgreSQL), answer
bad input with the same errors, and leave to the full client what only it can do: a server, no
database yet, a migration to run."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from registry import reads
from registry.access.principal import ANONYMOUS, OPERATOR, Principal
from registry.client.bases import add_base_folder, resolve_push_base
from registry.client.local import LocalClient
from registry.client.reads import EmbeddedReads
from registry.client.transfer import parse_eval, pull, push_folder, served_files
from registry.config import Settings
from registry.db import models as m
from registry.db.engine import read_only, unit_of_work
from registry.entities import BaseModelRef, EvalScoreIn, VersionFilter, VersionSummary
from registry.errors import RegistryError
from registry.reads.session import SessionDriver
from registry.refs import parse_ref
from registry.services import queries, versions
from registry.services.context import Registry
from storage.local import LocalBlobStore

pytestmark = pytest.mark.server

REPO_ROOT = Path(__file__).resolve().parents[2]


def populate(client: LocalClient, adapters_dir: Path) -> None:
    """Every kind of row a summary shows, written by the real services: several repositories and
    versions, tasks, evals with a history (only current ones listed), aliases (one moved), a base
    linked by name and one by fingerprint, a pushed lineage (derived), a version pushed with no
    lineage, a deleted version, and a public namespace."""
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
    client.set_namespace_visibility("other", public=True)


@pytest.fixture(scope="module")
def populated(
    tmp_path_factory: pytest.TempPathFactory, adapters_dir: Path
) -> Iterator[tuple[Path, Registry]]:
    """An embedded registry (SQLite file, local blobs) holding `populate`'s rows."""
    home = tmp_path_factory.mktemp("reads") / "home"
    settings = Settings(home=home, user="tester")  # type: ignore[call-arg]
    reg = Registry.from_settings(settings, migrate=True)
    populate(LocalClient(reg, "tester", reg.store, principal=Principal.operator("tester")), adapters_dir)
    yield home / "registry.db", reg
    reg.close()


def full(reg: Registry, limit: int = 50, cursor: str | None = None, **flt: Any) -> str:
    """The services' listing (the session driver, validated into the entities) as /v1 writes it."""
    page = queries.list_versions(reg, VersionFilter(**flt), limit, cursor, principal=OPERATOR)
    return json.dumps(page.model_dump(mode="json"), indent=2)


def embedded_reads(db: Path) -> EmbeddedReads:
    """The embedded CLI's reads of the registry whose file is `db`; a test fails if they reach for
    the full client (they must answer on the bare connection)."""

    def no_full_client() -> Any:
        raise AssertionError("the embedded reads went to the full client")

    settings = Settings(home=db.parent, database_url=None, blob_url=None, url=None)  # type: ignore[call-arg]
    return EmbeddedReads(settings, no_full_client)


def fast(db: Path, limit: int = 50, cursor: str | None = None, **flt: Any) -> str:
    query = {"repo": None, "task": None, "peft_type": None, "base": None, "latest_only": False, **flt}
    return json.dumps(embedded_reads(db).list_versions(query, limit, cursor), indent=2)


FILTERS = [
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
]


@pytest.mark.parametrize("flt", FILTERS)
def test_same_json_as_the_full_path(populated: tuple[Path, Registry], flt: dict[str, Any]) -> None:
    db, reg = populated
    assert fast(db, **flt) == full(reg, **flt)


SEARCHES = ["leg", "ACME/L", "medical", "-", " med ", "", "%", "_", "!", "acme/legal", "nothing"]


def searched(driver: reads.Driver, search: str) -> list[str]:
    """The repositories whose latest version `search` finds, as registry.reads reads them on `driver`."""
    got = reads.list_versions(driver, reads.Listing(latest_only=True, search=search), 500, readable=None)
    return [d["repo"] for d in got["items"]]


def pages_search(reg: Registry) -> dict[str, list[str]]:
    """What the repositories page found for each of SEARCHES when it searched in Python (a
    substring of the name or of the task)."""
    every = queries.list_versions(reg, VersionFilter(latest_only=True), 500, principal=OPERATOR).items
    return {
        search: [s.repo for s in every if search.strip().lower() in f"{s.repo}\n{s.task or ''}".lower()]
        for search in SEARCHES
    }


def test_the_search_is_the_pages_substring_match_on_both_drivers(populated: tuple[Path, Registry]) -> None:
    """`Listing.search` in SQL finds what the repositories page found in Python, wildcards taken
    as letters, on the bare connection and through the session."""
    db, reg = populated
    want = pages_search(reg)
    assert want["_"] == [] and want["-"] == ["acme/merge-src", "acme/legal"]
    conn = reads.open_at_head(db)
    assert conn is not None
    try:
        assert {search: searched(reads.SqliteDriver(conn), search) for search in SEARCHES} == want
    finally:
        conn.close()
    with read_only(reg.sessions) as session:
        assert {search: searched(SessionDriver(session), search) for search in SEARCHES} == want


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


def orm_summaries(reg: Registry) -> list[dict[str, Any]]:
    """Every version's summary written field by field from the ORM's rows and relationships (what
    services.versions did before registry.reads), newest first: a reference that shares no SQL and
    no mapper with registry.reads."""
    with unit_of_work(reg.sessions) as session:
        out = []
        for v in session.scalars(select(m.Version).order_by(m.Version.id.desc())).all():
            repo = f"{v.repository.namespace}/{v.repository.name}"
            base = session.get(m.BaseModel, v.base_model_id) if v.base_model_id else None
            aliases = session.scalars(
                select(m.Alias.name).where(m.Alias.version_id == v.id).order_by(m.Alias.name)
            ).all()
            summary = VersionSummary(
                repo=repo,
                version=v.number,
                digest=v.digest,
                ref=f"{repo}:{v.number}",
                created_at=v.created_at,
                pushed_by=v.pushed_by,
                task=v.task,
                peft_type=v.peft_type,
                task_type=v.task_type,
                r=v.r,
                lora_alpha=v.lora_alpha,
                target_modules=v.target_modules,
                lora_dropout=v.lora_dropout,
                use_rslora=v.use_rslora,
                use_dora=v.use_dora,
                trainable_params=v.trainable_params,
                adapter_bytes=v.adapter_bytes,
                total_bytes=v.total_bytes,
                base_model=BaseModelRef(name=v.base_model_name, revision=v.base_model_revision),
                evals=[
                    EvalScoreIn(metric=e.metric, value=e.value, dataset=e.dataset, split=e.split)
                    for e in v.evals
                    if e.current
                ],
                aliases=list(aliases),
                base_fingerprint=base.fingerprint if base else None,
                base_linked=base is not None,
                derived=v.lineage is not None,
            )
            out.append(summary.model_dump(mode="json"))
        return out


def test_every_summary_of_a_version_is_the_mappers(populated: tuple[Path, Registry]) -> None:
    """`show` (VersionInfo) and a push's result begin with the listing's summary."""
    db, reg = populated
    listed = json.loads(fast(db, 500))["items"]
    for item in listed:
        info = versions.resolve(reg, parse_ref(item["ref"]), principal=OPERATOR).model_dump(mode="json")
        assert {k: info[k] for k in item} == item


def test_the_mapper_writes_what_the_orm_reads(populated: tuple[Path, Registry]) -> None:
    db, reg = populated
    assert json.loads(fast(db, 500))["items"] == orm_summaries(reg)


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


def outcome(call: Any) -> tuple[str, str]:
    """What a call raised (its type and message; a pydantic ValidationError by its message), or
    that it answered."""
    try:
        call()
    except RegistryError as err:
        return type(err).__name__, str(err)
    except ValueError as err:  # pydantic's ValidationError
        return type(err).__name__, str(err).split("\n")[0]
    return "answered", ""


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
        (50, None, {"task": "légal"}),
        (50, None, {"base": "org/tiny llama"}),
        (50, None, {"peft_type": "x" * 33}),
    ],
)
def test_bad_input_is_answered_as_the_full_path_answers_it(
    populated: tuple[Path, Registry], limit: int, cursor: str | None, flt: dict[str, Any]
) -> None:
    db, reg = populated
    bare = outcome(lambda: fast(db, limit, cursor, **flt))
    assert bare == outcome(lambda: full(reg, limit, cursor, **flt))
    if bare[0] == "answered":  # a value the filter accepts: the same page
        assert fast(db, limit, cursor, **flt) == full(reg, limit, cursor, **flt)


def test_the_bare_connection_opens_only_a_database_at_head(
    populated: tuple[Path, Registry], tmp_path: Path
) -> None:
    db, _ = populated
    assert reads.open_at_head(tmp_path / "none.db") is None
    assert not (tmp_path / "none.db").exists()  # nothing created
    for revision in ("0007", "0099"):  # behind (the full path migrates) and ahead (it refuses)
        copy = tmp_path / f"at-{revision}.db"
        with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
            src.backup(dst)
        with sqlite3.connect(copy) as conn:
            conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
        assert reads.open_at_head(copy) is None
    conn = reads.open_at_head(db)
    assert conn is not None
    conn.close()
    assert fast(db, limit=queries.MAX_LIMIT) == full(reg=populated[1], limit=queries.MAX_LIMIT)


def test_a_stored_time_with_a_zone_is_written_in_utc_by_both_drivers(
    populated: tuple[Path, Registry], tmp_path: Path
) -> None:
    """The ORM never stores a zone on SQLite; a row that has one (made by hand) is read as the
    moment it names, in UTC with a `Z`, whichever driver reads it."""
    db, _ = populated
    home = tmp_path / "zoned"
    home.mkdir()
    copy = home / "registry.db"
    with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    with sqlite3.connect(copy) as conn:
        conn.execute("UPDATE versions SET created_at = '2026-01-01 02:00:00.000000+02:00' WHERE number = 1")
    reg = Registry.from_settings(Settings(home=home, user="tester"))  # type: ignore[call-arg]
    try:
        got = fast(copy, limit=500)
        assert got == full(reg, limit=500)
        assert json.loads(got)["items"][-1]["created_at"] == "2026-01-01T00:00:00Z"
    finally:
        reg.close()


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
    """`adapters ARGS` in a fresh process; on stderr its last line says which of SQLAlchemy and
    the entities it imported (the bare path imports neither; pydantic itself is loaded by
    registry.config's Settings, which every command builds)."""
    probe = (
        "import sys\nfrom cli.main import cli\ntry:\n    cli()\nfinally:\n"
        "    print('sqlalchemy' in sys.modules or 'registry.entities' in sys.modules, file=sys.stderr)"
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


def test_cli_list_reads_the_bare_connection_and_prints_the_same(populated: tuple[Path, Registry]) -> None:
    db, reg = populated
    got = run_cli(db.parent, "list", "--json", "--all-versions")
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == full(reg)
    assert got.stderr.strip().splitlines()[-1] == "False"  # answered without SQLAlchemy or entities
    table = run_cli(db.parent, "list", "--task", "legal")
    assert table.returncode == 0 and "acme/legal:2" in table.stdout and "canary,staging" in table.stdout
    assert table.stderr.strip().splitlines()[-1] == "False"


def test_the_bare_path_imports_neither_sqlalchemy_nor_the_entities(populated: tuple[Path, Registry]) -> None:
    """A behaviour, not a timing: `list` and `pull` on the embedded registry at head do their work
    without SQLAlchemy, the ORM's models or the entities (which cost most of a command's start-up,
    bench/cli_startup.py)."""
    db, _ = populated
    code = (
        "import sys, json, tempfile\n"
        "from registry.config import Settings\n"
        "from registry.client.reads import open_reads, pull_ref\n"
        "def refuse():\n    raise AssertionError('full client')\n"
        "r = open_reads(Settings(), refuse)\n"
        "doc = r.list_versions({'repo': None, 'task': 'legal', 'peft_type': None, 'base': None, "
        "'latest_only': False}, 50, None)\n"
        "found, out = pull_ref(r, 'acme/legal@prod', __import__('pathlib').Path(tempfile.mkdtemp()) / 'x')\n"
        "heavy = sorted(k for k in sys.modules if k.split('.')[0] == 'sqlalchemy' "
        "or k in ('registry.entities', 'registry.db.models', 'registry.client.interface'))\n"
        "print(json.dumps([len(doc['items']), found.version, heavy]))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("ADAPTERS_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "ADAPTERS_HOME": str(db.parent)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [4, 3, []]


def test_cli_list_goes_the_full_way_where_it_must(populated: tuple[Path, Registry], tmp_path: Path) -> None:
    db, _ = populated
    # A setting Settings refuses is still refused, in one line.
    bad = run_cli(db.parent, "list", "--json", ADAPTERS_UPLOAD_CONCURRENCY="many")
    assert bad.returncode == 1 and "validation_error" in bad.stderr and "upload_concurrency" in bad.stderr
    # A bad cursor: the same error, said by the read model on the bare connection.
    cur = run_cli(db.parent, "list", "--json", "--cursor", "nope")
    assert cur.returncode == 1 and json.loads(cur.stdout)["error"]["code"] == "bad_request"
    assert cur.stderr.strip().splitlines()[-1] == "False"
    # No database yet: created and migrated by the full client, an empty page.
    fresh = run_cli(tmp_path / "fresh", "list", "--json")
    assert fresh.returncode == 0 and json.loads(fresh.stdout) == {"items": [], "next_cursor": None}
    assert (tmp_path / "fresh" / "registry.db").is_file() and fresh.stderr.strip().splitlines()[-1] == "True"


# ---------------------------------------------------------------- pull
def full_resolve(reg: Registry, ref: str) -> dict[str, Any]:
    """What the services' whole version (VersionInfo, through the ORM) says a pull writes."""
    info = versions.resolve(reg, parse_ref(ref), principal=OPERATOR)
    files = [f.model_dump(mode="json") for f in served_files(info)]
    return {"repo": info.repo, "version": info.version, "digest": info.digest, "files": files}


REFS = [
    "acme/legal",
    "acme/legal@latest",
    "acme/legal:1",
    "acme/legal:2",
    "acme/legal@prod",  # moved to 3
    "acme/legal@canary",
    "acme/gone",
    "acme/merged:1",
]


def test_every_reference_form_resolves_as_the_full_path_does(populated: tuple[Path, Registry]) -> None:
    db, reg = populated
    legal3 = full_resolve(reg, "acme/legal:3")
    legal1 = full_resolve(reg, "acme/legal:1")
    refs = [*REFS, f"acme/legal@{legal1['digest']}", f"acme/legal@{legal3['digest']}"]
    for ref in refs:
        bare = embedded_reads(db).resolve_files(ref, use_cache=False)
        assert bare.doc() == full_resolve(reg, ref), ref
        assert pulled_doc(queries.resolve_files(reg, parse_ref(ref), principal=OPERATOR)) == bare.doc()
    assert embedded_reads(db).resolve_files("acme/legal@prod", use_cache=False).version == 3
    assert len(legal3["files"]) >= 2 and [f["path"] for f in legal3["files"]] == sorted(
        f["path"] for f in legal3["files"]
    )


def pulled_doc(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in ("repo", "version", "digest", "files")}


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
def test_what_does_not_exist_is_answered_as_the_full_path_answers_it(
    populated: tuple[Path, Registry], ref: str
) -> None:
    db, reg = populated
    bare = outcome(lambda: embedded_reads(db).resolve_files(ref, use_cache=False))
    assert bare[0] in {"NotFound", "InvalidReference"}
    assert bare == outcome(lambda: versions.resolve(reg, parse_ref(ref), principal=OPERATOR))


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cli_pull_reads_the_bare_connection_and_writes_what_the_full_path_writes(
    populated: tuple[Path, Registry], tmp_path: Path
) -> None:
    db, reg = populated
    bare_out, full_out = tmp_path / "bare", tmp_path / "full"
    fast_run = run_cli(db.parent, "pull", "acme/legal@prod", "-o", str(bare_out), "--json")
    assert fast_run.returncode == 0, fast_run.stderr
    assert fast_run.stderr.strip().splitlines()[-1] == "False"  # no SQLAlchemy
    info, _ = pull(
        LocalClient(reg, "tester", reg.store, principal=Principal.operator("tester")),
        "acme/legal@prod",
        full_out,
    )
    doc = json.loads(fast_run.stdout)
    assert doc == {
        "repo": info.repo,
        "version": info.version,
        "digest": info.digest,
        "path": str(bare_out),
        "files": [f.model_dump(mode="json") for f in info.files],
    }
    assert tree(bare_out) == tree(full_out) and len(tree(bare_out)) == len(doc["files"]) >= 2
    # The same refusal as the full path: a non-empty folder needs --force.
    again = run_cli(db.parent, "pull", "acme/legal@prod", "-o", str(bare_out), "--json")
    assert again.returncode == 1 and json.loads(again.stdout)["error"]["code"] == "output_exists"
    forced = run_cli(db.parent, "pull", "acme/legal:1", "-o", str(bare_out), "--force")
    assert forced.returncode == 0 and "pulled acme/legal:1" in forced.stdout
    missing = run_cli(db.parent, "pull", "acme/legal:9", "--json", "-o", str(tmp_path / "x"))
    assert json.loads(missing.stdout)["error"]["code"] == "not_found" and not (tmp_path / "x").exists()
    assert (
        missing.stderr.strip().splitlines()[-1] == "False"
    )  # said by the read model, as the services say it


def test_cli_pull_of_a_corrupt_or_missing_blob(adapters_dir: Path, tmp_path: Path) -> None:
    """A blob that hashes wrong is the registry's corruption (nothing is written, nothing deleted);
    a blob the store lacks is not found, as the full client says it."""
    home = tmp_path / "home"
    settings = Settings(home=home, user="tester")  # type: ignore[call-arg]
    reg = Registry.from_settings(settings, migrate=True)
    try:
        pushed = push_folder(
            LocalClient(reg, "tester", reg.store, principal=Principal.operator("tester")),
            adapters_dir / "lora_a",
            "acme/a",
        )
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
    assert gone.returncode == 1
    assert json.loads(gone.stdout)["error"]["code"] in {"blob_not_found", "not_found", "blob_missing"}
    assert not (tmp_path / "out").exists() and pushed.created


def test_cli_pull_from_s3_downloads_once_into_the_folder_and_the_cache(
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


# ---------------------------------------------------------------- the server's path, access
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")


def without_times(text: str) -> dict[str, Any]:
    """A page's document, each created_at checked for pydantic's UTC form and set aside (two
    registries filled one after the other differ only there)."""
    doc = json.loads(text)
    for item in doc["items"]:
        assert ISO_UTC.fullmatch(item.pop("created_at")), item
    return dict(doc)


def readable_refs(reg: Registry, principal: Principal) -> list[str]:
    page = queries.list_versions(reg, VersionFilter(), 500, None, principal=principal)
    return [v.ref for v in page.items]


def check_access_filter(reg: Registry) -> None:
    """The listing keeps what the caller may read (its namespaces and public ones), in the SQL."""
    everything = [v["ref"] for v in orm_summaries(reg)]
    carol = Principal(kind="user", name="carol", user_id=99, grants={"acme": "read"})
    assert readable_refs(reg, OPERATOR) == everything
    assert readable_refs(reg, ANONYMOUS) == ["other/chat:1"]  # public
    assert readable_refs(reg, carol) == everything  # acme, and other is public
    narrowed = Principal(
        kind="user", name="carol", user_id=99, grants={"acme": "read"}, namespaces=frozenset()
    )
    assert readable_refs(reg, narrowed) == ["other/chat:1"]
    outsider = Principal(kind="user", name="dave", user_id=98, grants={"elsewhere": "admin"})
    assert readable_refs(reg, outsider) == ["other/chat:1"]


def test_the_access_filter_on_sqlite(populated: tuple[Path, Registry]) -> None:
    check_access_filter(populated[1])


@pytest.mark.postgres
def test_the_server_path_on_postgresql_writes_what_sqlite_writes(
    populated: tuple[Path, Registry], adapters_dir: Path, pg_url: str, tmp_path: Path
) -> None:
    """The same SQL and mapper through the session on PostgreSQL (aware datetimes, real booleans,
    JSON columns) give the documents they give on SQLite, for every filter, page and reference."""
    _, lite = populated
    settings = Settings(home=tmp_path / "pg", database_url=pg_url, user="tester")  # type: ignore[call-arg]
    reg = Registry.from_settings(settings, migrate=True)
    try:
        populate(LocalClient(reg, "tester", reg.store, principal=Principal.operator("tester")), adapters_dir)
        assert json.loads(full(reg, 500))["items"] == orm_summaries(reg)  # created_at included
        for flt in FILTERS:
            assert without_times(full(reg, **flt)) == without_times(full(lite, **flt)), flt
        for limit in (1, 3):
            cursor: str | None = None
            while True:
                got = full(reg, limit, cursor)
                assert without_times(got) == without_times(full(lite, limit, cursor))
                cursor = json.loads(got)["next_cursor"]
                if cursor is None:
                    break
        digest = json.loads(full(reg, repo="acme/legal"))["items"][-1]["digest"]
        for ref in [*REFS, f"acme/legal@{digest}"]:
            on_pg = queries.resolve_files(reg, parse_ref(ref), principal=OPERATOR)
            assert on_pg == queries.resolve_files(lite, parse_ref(ref), principal=OPERATOR), ref
            assert pulled_doc(on_pg) == full_resolve(reg, ref)
        for ref in ("acme/legal:9", "acme/gone:2", "acme/nothing", "acme/legal@nope"):
            on_pg_error = outcome(lambda: queries.resolve_files(reg, parse_ref(ref), principal=OPERATOR))  # noqa: B023
            assert on_pg_error[0] == "NotFound"
            assert on_pg_error == outcome(lambda: versions.resolve(lite, parse_ref(ref), principal=OPERATOR))  # noqa: B023
        check_access_filter(reg)
        want = pages_search(reg)
        with read_only(reg.sessions) as session:
            assert {search: searched(SessionDriver(session), search) for search in SEARCHES} == want
    finally:
        reg.close()
