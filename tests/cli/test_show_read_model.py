"""`adapters show --json` through the one read model (registry.reads.version): the embedded CLI
reads a version whole on a bare sqlite3 connection and prints the very JSON the services give
(`/v1/resolve`, LocalClient) through the server's SQLAlchemy session, on SQLite and on PostgreSQL:
evals and aliases, a merge's and an export's lineage with a deleted parent, a parent in a
namespace the reader may not read, own and attached signatures (one by a revoked key), a 4-bit
check, what the training files said."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from registry.access.principal import OPERATOR, Principal
from registry.client.bases import add_base_folder
from registry.client.local import LocalClient
from registry.client.signing import sign_stored
from registry.client.transfer import parse_eval, push_folder
from registry.config import Settings
from registry.db import models as m
from registry.db.engine import read_only
from registry.entities import PolicyChange
from registry.refs import parse_ref
from registry.services import qlora, versions
from registry.services.context import Registry
from tests.cli.test_read_model import embedded_reads, run_cli
from tests.cli.test_signing import make_key, sign
from tests.formats.test_selection import trainer_state
from tests.storage.test_pull_one_write import write_adapter

pytestmark = pytest.mark.server

pytest.importorskip("model_signing")

REPO_ROOT = Path(__file__).resolve().parents[2]
REFS = [
    "acme/trained:1",
    "acme/trained",
    "acme/trained@prod",
    "acme/signed:1",
    "acme/merged:1",
    "acme/exported:1",
    "acme/gone:1",
    "secret/hidden:1",
]


def populate(client: LocalClient, reg: Registry, adapters_dir: Path, work: Path) -> None:
    add_base_folder(client, adapters_dir / "base", ["org/tiny-llama"])
    trained = work / "trained"
    shutil.copytree(adapters_dir / "lora_a", trained)
    (trained / "trainer_state.json").write_text(json.dumps(trainer_state(20, [(10, 0.9), (20, 0.7)])))
    push_folder(
        client,
        trained,
        "acme/trained",
        task="legal",
        base="org/tiny-llama",
        evals=[parse_eval("acc=0.5@lexglue:test"), parse_eval("f1=0.25")],
        aliases=["prod", "canary"],
        message="trained",
    )
    client.add_evals("acme/trained:1", [parse_eval("acc=0.6@lexglue:test")], note="rerun")
    with read_only(reg.sessions) as session:
        base_id = session.scalars(select(m.BaseModel.id)).one()
    for verdict, variant in (("ok", ("nf4", True, "float32")), ("degraded", ("fp4", False, "bfloat16"))):
        report = {
            "verdict": verdict,
            "reasons": [f"{verdict} because"],
            "variant": dict(zip(("quant_type", "double_quant", "compute_dtype"), variant, strict=True)),
        }
        qlora.record_verdict(reg, parse_ref("acme/trained:1"), base_id, report, 7, principal=OPERATOR)

    private, public = make_key(work, "alice")
    revoked_private, revoked_public = make_key(work, "mallory")
    signed = write_adapter(work / "signed", n=64)
    sign(signed, private)
    push_folder(client, signed, "acme/signed")
    sign_stored(client, "acme/trained:1", private)
    sign_stored(client, "acme/trained:1", revoked_private)
    client.set_namespace_policy(
        "acme", PolicyChange(trust_keys=[public.read_text(), revoked_public.read_text()])
    )
    client.set_namespace_policy("acme", PolicyChange(revoke_keys=[revoked_public.read_text()]))

    gone = [push_folder(client, write_adapter(work / f"gone{i}", n=96 + 32 * i), "acme/gone") for i in (1, 2)]
    hidden = push_folder(client, write_adapter(work / "hidden", n=256), "secret/hidden")
    parents = [
        {"ref": "acme/gone:1", "digest": gone[0].digest, "weight": 0.5},
        {"ref": "acme/gone:2", "digest": gone[1].digest, "weight": 0.25},
        {"ref": "secret/hidden:1", "digest": hidden.digest, "weight": 0.25},
        {"digest": gone[1].digest},
        "not a parent",
    ]
    merge = {"kind": "merge", "method": "linear", "parameters": {"density": 0.5}, "parents": parents}
    push_folder(client, write_adapter(work / "merged", n=384), "acme/merged", lineage=merge)
    export = {
        "kind": "export",
        "base_fingerprint": None,
        "base": "org/tiny-llama",
        "adapter": "acme/gone:2",
        "adapter_digest": gone[1].digest,
        "dtype": "bfloat16",
        "merged_modules": 2,
        "replaced_tensors": [],
        "parents": [{"ref": "acme/gone:2", "digest": gone[1].digest}],
    }
    push_folder(client, write_adapter(work / "exported", n=416), "acme/exported", lineage=export)
    client.delete_version("acme/gone:2", force=True)


@pytest.fixture(scope="module")
def populated(
    tmp_path_factory: pytest.TempPathFactory, adapters_dir: Path
) -> Iterator[tuple[Path, Registry]]:
    work = tmp_path_factory.mktemp("show")
    settings = Settings(home=work / "home", user="tester")  # type: ignore[call-arg]
    reg = Registry.from_settings(settings, migrate=True)
    populate(
        LocalClient(reg, "tester", reg.store, principal=Principal.operator("tester")), reg, adapters_dir, work
    )
    yield work / "home" / "registry.db", reg
    reg.close()


def served(reg: Registry, ref: str, reader: Principal = OPERATOR) -> str:
    """The services' version (the session driver, validated into VersionInfo) as --json prints it."""
    info = versions.resolve(reg, parse_ref(ref), principal=reader)
    return json.dumps(info.model_dump(mode="json"), indent=2)


def test_show_json_on_the_bare_connection_is_the_services(populated: tuple[Path, Registry]) -> None:
    db, reg = populated
    for ref in REFS:
        assert json.dumps(embedded_reads(db).show(ref), indent=2) == served(reg, ref), ref


def test_the_document_holds_every_part(populated: tuple[Path, Registry]) -> None:
    """Not two empty documents alike: each part the fixture wrote is there."""
    db, _ = populated
    trained = embedded_reads(db).show("acme/trained:1")
    assert trained["aliases"] == ["canary", "prod"] and trained["message"] == "trained"
    assert {("f1", 0.25), ("acc", 0.6)} <= {(e["metric"], e["value"]) for e in trained["evals"]}
    assert trained["training"]["global_step"] == 20 and trained["base_linked"]
    assert [(c["variant"], c["verdict"], c["job"]) for c in trained["qlora_checks"]] == [
        ("fp4-nodq-bfloat16", "degraded", 7),
        ("nf4-float32", "ok", 7),
    ]
    assert [(s["attached"], s["revoked"]) for s in trained["signatures"]] == [(True, False), (True, True)]
    own = embedded_reads(db).show("acme/signed:1")["signatures"]
    assert [(s["path"], s["attached"], s["checked"]) for s in own] == [("model.sig", False, False)]
    parents = embedded_reads(db).show("acme/merged:1")["lineage"]["parents"]
    assert [p.get("deleted") for p in parents[:4]] == [None, True, None, True]
    assert parents[4] == "not a parent"
    assert embedded_reads(db).show("acme/exported:1")["lineage"]["kind"] == "export"


def test_a_reader_sees_no_parent_it_may_not_read(populated: tuple[Path, Registry]) -> None:
    """The lineage's marks for a reader of `acme` only: the secret parent is left as recorded."""
    _, reg = populated
    reader = Principal(kind="user", name="carol", user_id=97, grants={"acme": "read"})
    parents = json.loads(served(reg, "acme/merged:1", reader))["lineage"]["parents"]
    # acme/gone:2 is gone; the parent named by digest alone is found in no namespace carol
    # reads, which does not tell it is gone (the operator's view marks it).
    assert [p.get("deleted") for p in parents[:4]] == [None, True, None, None]


def test_cli_show_json_reads_the_bare_connection_and_prints_the_same(
    populated: tuple[Path, Registry],
) -> None:
    """`adapters show --json` in a fresh process (the embedded default) prints the services' JSON,
    a plain version's without SQLAlchemy or the entities; the rich view is drawn from the same
    document."""
    db, reg = populated
    for ref in ("acme/gone:1", "acme/trained@prod", "acme/merged:1"):
        got = run_cli(db.parent, "show", ref, "--json")
        assert got.returncode == 0, got.stderr
        assert got.stdout == served(reg, ref) + "\n"
        if ref == "acme/gone:1":
            assert got.stderr.strip().splitlines()[-1] == "False"
    rich = run_cli(db.parent, "show", "acme/trained:1", COLUMNS="200")
    assert rich.returncode == 0, rich.stderr
    assert "acme/trained:1" in rich.stdout and "lexglue" in rich.stdout


@pytest.mark.postgres
def test_the_server_path_on_postgresql_writes_what_sqlite_writes(
    populated: tuple[Path, Registry], adapters_dir: Path, pg_url: str, tmp_path: Path
) -> None:
    _, lite = populated
    settings = Settings(home=tmp_path / "pg", database_url=pg_url, user="tester")  # type: ignore[call-arg]
    reg = Registry.from_settings(settings, migrate=True)
    try:
        populate(
            LocalClient(reg, "tester", reg.store, principal=Principal.operator("tester")),
            reg,
            adapters_dir,
            tmp_path / "work",
        )
        for ref in REFS:
            assert without_times(served(reg, ref)) == without_times(served(lite, ref)), ref
    finally:
        reg.close()


def without_times(text: str) -> Any:
    """The document less what differs between two runs: times, what a new key each run changes,
    and the digests (write_adapter's bytes are random), named by their order of appearance."""
    seen: dict[str, str] = {}
    text = re.sub(r"sha256:[0-9a-f]{64}", lambda d: seen.setdefault(d[0], f"#{len(seen)}"), text)
    doc = json.loads(text)
    doc.pop("created_at")
    if any(not s["attached"] for s in doc["signatures"]):  # its model.sig: a new key each run
        for key in ("digest", "ref", "total_bytes", "adapter_bytes"):
            doc.pop(key)
        doc["files"] = [f for f in doc["files"] if f["path"] != "model.sig"]
    for check in doc["qlora_checks"]:
        check.pop("checked_at")
    for sig in doc["signatures"]:
        for key in ("fingerprint", "digest", "size"):
            sig.pop(key)
    return doc
