"""Every lineage shape ever stored still reads (registry/jobspec/lineage.py): a merge's and an
export's as the jobs wrote them since migrations 0002 and 0004 added the columns, the pushed
claims the API accepts (partial merges, other kinds, marks added at push), and no lineage at all
(NULL, and the JSON text 'null' SQLAlchemy's JSON type wrote for None). Each is written into a
row as an older release left it, then read back through `show`, the lineage graph, the Hub's card
and the UI's base page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from registry.access.principal import OPERATOR, Principal
from registry.client.local import LocalClient
from registry.client.transfer import push_folder
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.jobspec.lineage import (
    ExportLineage,
    MergeError,
    MergeLineage,
    ModuleError,
    OtherLineage,
    Parent,
    read_lineage,
)
from registry.refs import parse_ref
from registry.services import bases, lineage, versions
from registry.services.context import Registry
from registry.services.hub import model_metadata
from registry.ui.pages_bases import exported_from
from storage.local import LocalBlobStore

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64
MERGE_AS_WRITTEN = {  # registry/client/merge.py (4297d0a) and worker/merge_job.py since
    "kind": "merge",
    "method": "svd",
    "parameters": {"rank": None, "energy": 0.99, "density": 1.0, "majority_sign_method": "total", "seed": 0},
    "parents": [
        {"ref": "acme/a:1", "digest": A, "weight": 0.7},
        {"ref": "acme/b:1", "digest": B, "weight": -0.3},
    ],
    "error": {"max": 0.125, "mean": 0.05, "modules": {"q_proj": {"rank": 8, "rel_error": 0.125}}},
}
EXPORT_AS_WRITTEN = {  # worker/export_job.py (22a1693) since
    "kind": "export",
    "base_fingerprint": "sha256:" + "f" * 64,
    "base": "wide-llama",
    "adapter": "acme/a:1",
    "adapter_digest": A,
    "dtype": "float32",
    "merged_modules": 4,
    "replaced_tensors": ["lm_head.weight"],
}
SHAPES: dict[str, tuple[dict[str, Any] | None, type | None]] = {
    "merge as written": (MERGE_AS_WRITTEN, MergeLineage),
    "merge marked at push": (
        {
            **MERGE_AS_WRITTEN,
            "parents": [{"ref": "acme/a:1", "digest": A, "weight": 1, "unverified": True}],
            "unverified": [A],
        },
        MergeLineage,
    ),
    "pushed partial merge": (
        {"kind": "merge", "method": "linear", "parents": [{"ref": "acme/a:1", "digest": A, "weight": 1}]},
        MergeLineage,
    ),
    "parents without a kind": ({"parents": [{"digest": A}, {"no": "digest"}, 3]}, MergeLineage),
    "export as written": (EXPORT_AS_WRITTEN, ExportLineage),
    "export claim": ({"kind": "export", "adapter_digest": A, "adapter_ref": "secret/x:1"}, ExportLineage),
    "another kind": ({"kind": "note"}, OtherLineage),
    "wrong types": ({"kind": 3, "parents": "x", "method": ["svd"], "error": 1}, OtherLineage),
    "a number beyond a float": ({"parents": [{"digest": A, "weight": 10**400}], "schema": "1"}, MergeLineage),
    "none": (None, None),
}


@pytest.mark.parametrize("name", SHAPES)
def test_each_shape_reads_as_its_type(name: str) -> None:
    doc, kind = SHAPES[name]
    lin = read_lineage(doc)
    assert (type(lin) if lin is not None else None) is kind
    assert read_lineage(json.loads(json.dumps(doc))) == lin  # as the JSON column gives it back


def test_what_the_jobs_write_is_the_shape_they_always_wrote() -> None:
    merge = read_lineage(MERGE_AS_WRITTEN)
    assert isinstance(merge, MergeLineage) and merge.document() == MERGE_AS_WRITTEN
    assert [(p.ref, p.digest, p.weight) for p in merge.parents] == [
        ("acme/a:1", A, 0.7),
        ("acme/b:1", B, -0.3),
    ]
    assert merge.max_error == 0.125 and merge.schema_ == 1
    export = read_lineage(EXPORT_AS_WRITTEN)
    assert isinstance(export, ExportLineage) and export.document() == EXPORT_AS_WRITTEN


def test_a_lineage_built_by_a_job_writes_that_shape() -> None:
    """What merge_job.py and export_job.py build, field by field, is the document above."""
    merge = MergeLineage(
        kind="merge",
        method="svd",
        parameters=MERGE_AS_WRITTEN["parameters"],
        parents=[Parent(ref="acme/a:1", digest=A, weight=0.7), Parent(ref="acme/b:1", digest=B, weight=-0.3)],
        error=MergeError(max=0.125, mean=0.05, modules={"q_proj": ModuleError(rank=8, rel_error=0.125)}),
    )
    assert merge.document() == MERGE_AS_WRITTEN
    fields = {k: v for k, v in EXPORT_AS_WRITTEN.items() if k != "kind"}
    assert ExportLineage(**fields).document() == EXPORT_AS_WRITTEN


def test_fields_of_another_type_read_as_absent() -> None:
    lin = read_lineage({"kind": "merge", "method": 3, "parents": [{"digest": A, "weight": "0.5", "ref": 1}]})
    assert isinstance(lin, MergeLineage) and lin.method is None
    assert [(p.digest, p.weight, p.ref, p.position) for p in lin.parents] == [(A, None, None, 0)]
    assert read_lineage("null") is None and read_lineage([1]) is None


def test_parents_and_a_base_count_whatever_the_kind() -> None:
    """A pushed claim may list parents beside another kind, or name a base in a merge's shape:
    both are read (the edge index and the served marks read every document's parents, as they
    did before lineage was typed; the Hub's card reads any document's base)."""
    from registry.services.lineage_edges import recorded_edges

    claim = {"kind": "export", "adapter_digest": A, "parents": [{"ref": "acme/b:1", "digest": B}]}
    assert {(e["parent_key"], e["kind"]) for e in recorded_edges(claim)} == {(B, "merge"), (A, "export")}
    note = read_lineage({"kind": "note", "base": "wide-llama"})
    assert isinstance(note, OtherLineage) and note.parents == [] and note.base == "wide-llama"
    merge_with_base = read_lineage({**MERGE_AS_WRITTEN, "base": "wide-llama"})
    assert isinstance(merge_with_base, MergeLineage) and merge_with_base.base == "wide-llama"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
lineage_keys = st.sampled_from(["kind", "parents", "method", "error", "schema", "adapter", "digest", "base"])


@given(st.dictionaries(lineage_keys | st.text(max_size=6), json_values | st.just("export"), max_size=6))
def test_any_pushed_document_reads(doc: dict[str, Any]) -> None:
    read_lineage(doc)  # a pushed claim of any shape: never an error when read


# ---------------------------------------------------------------- rows as older releases left them
def _store(reg: Registry, table: str, row_id: int, raw: str | None) -> None:
    """Write `raw` JSON text into the row's lineage column, as an older release stored it."""
    cast = "CAST(:doc AS JSON)" if reg.engine.dialect.name == "postgresql" else ":doc"
    with unit_of_work(reg.sessions) as session:
        session.execute(
            text(f"UPDATE {table} SET lineage = {cast} WHERE id = :id"), {"doc": raw, "id": row_id}
        )


@pytest.mark.parametrize("name", SHAPES)
def test_stored_rows_of_each_shape_read(
    name: str, reg: Registry, adapter_files: Path, tmp_path: Path
) -> None:
    client = LocalClient(reg, "op", LocalBlobStore(tmp_path / "cache"), principal=Principal.operator("op"))
    a = push_folder(client, adapter_files / "lora_a", "acme/a")
    b = push_folder(client, adapter_files / "lora_dora", "acme/b")
    mix = push_folder(client, adapter_files / "lora_b", "acme/mix")
    doc, _ = SHAPES[name]
    raw = None if doc is None else json.dumps(doc).replace(A, a.digest).replace(B, b.digest)
    stored = None if raw is None else json.loads(raw)
    for raw_text in [raw] if raw is not None else [None, "null"]:
        with unit_of_work(reg.sessions) as session:
            vid = session.scalar(text("SELECT id FROM versions WHERE digest = :d"), {"d": mix.digest})
        _store(reg, "versions", vid, raw_text)
        shown = versions.resolve(reg, parse_ref("acme/mix:1"), principal=OPERATOR)
        assert shown.lineage == stored  # served as stored: both parents exist, nothing marked deleted
        graph = lineage.graph(reg, "acme/mix", principal=OPERATOR)
        merged = {(e.source, e.weight, e.method) for e in graph.edges if e.kind == "merge"}
        assert merged == EDGES.get(name, set())


EDGES = {
    "merge as written": {("version:acme/a:1", 0.7, "svd"), ("version:acme/b:1", -0.3, "svd")},
    "merge marked at push": {("version:acme/a:1", 1.0, "svd")},
    "pushed partial merge": {("version:acme/a:1", 1.0, "linear")},
    "parents without a kind": {("version:acme/a:1", None, None)},  # by digest alone
    "a number beyond a float": {("version:acme/a:1", None, None)},
}


@pytest.mark.parametrize(
    "raw", [json.dumps(EXPORT_AS_WRITTEN), json.dumps({"kind": "note", "base": "x"}), "null", None]
)
def test_stored_base_rows_read(raw: str | None, reg: Registry, adapter_files: Path, tmp_path: Path) -> None:
    client = LocalClient(reg, "op", LocalBlobStore(tmp_path / "cache"), principal=Principal.operator("op"))
    from registry.client.bases import add_base_folder

    made = add_base_folder(client, adapter_files / "base", ["tiny"])
    _store(reg, "base_models", made.id, raw)
    base = bases.get_base(reg, "tiny", principal=OPERATOR)
    stored = None if raw is None else json.loads(raw)
    assert base.lineage == stored
    origin = exported_from(base)
    with unit_of_work(reg.sessions) as session:
        row = session.get(m.BaseModel, made.id)
        assert row is not None
        _, card, _ = model_metadata(row)
    if stored and stored.get("kind") == "export":
        assert origin is not None and origin["adapter_digest"] == A and card["base_model"] == "wide-llama"
    else:
        assert origin is None and card.get("base_model") == (stored or {}).get("base")
    lineage.graph(reg, "tiny", principal=OPERATOR)  # walks whatever the row holds
