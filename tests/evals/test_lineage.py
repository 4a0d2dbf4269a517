"""Lineage graphs: an export job's adapter and base, descendants of a base, and what a reader may
not see (an opaque node, never its name or digest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.access.principal import OPERATOR, Principal
from registry.client.local import LocalClient
from registry.client.transfer import push_folder
from registry.errors import NotFound
from registry.services import lineage
from registry.services.context import Registry
from storage.local import LocalBlobStore
from tests.cli.conftest import Cli
from tests.evals.conftest import user


def test_export_lineage_both_ways(embedded: Cli, qlora_dir: Path, tmp_path: Path) -> None:
    base_dir = qlora_dir / "base"
    embedded("base", "add", str(base_dir), "--name", "wide-llama", "--upload")
    pushed = embedded.json("push", str(qlora_dir / "lora"), "acme/legal", "--base", "wide-llama")
    exported = embedded.json(
        "export", "acme/legal", "--base", "wide-llama", "-o", str(tmp_path / "m"), "--into", "legal-merged"
    )
    up = embedded.json("lineage", "legal-merged")
    root = f"base:{exported['fingerprint']}"
    assert up["root"] == root
    edges = {(e["source"], e["target"], e["kind"]) for e in up["edges"]}
    base_node = f"base:{pushed['info']['base_fingerprint']}"
    assert {("version:acme/legal:1", root, "export"), (base_node, root, "export")} <= edges
    labels = {n["id"]: n["label"] for n in up["nodes"]}
    assert labels[base_node] == "wide-llama" and labels[root] == "legal-merged"
    down = embedded.json("lineage", "acme/legal:1")
    assert ("version:acme/legal:1", root, "export") in {
        (e["source"], e["target"], e["kind"]) for e in down["edges"]
    }
    from_base = embedded.json("lineage", "wide-llama")
    assert {root, "version:acme/legal:1"} <= {n["id"] for n in from_base["nodes"]}
    assert "legal-merged" in embedded("lineage", "acme/legal:1").stdout


def test_unreadable_parents_are_opaque(reg: Registry, tmp_path: Path, adapters_dir: Path) -> None:
    client = LocalClient(reg, "op", LocalBlobStore(tmp_path / "cache"), principal=Principal.operator("op"))
    secret = push_folder(client, adapters_dir / "lora_a", "secret/x")
    shown = push_folder(client, adapters_dir / "lora_dora", "acme/y")
    doc = {
        "kind": "merge",
        "method": "linear",
        "parents": [
            {"ref": "secret/x:1", "digest": secret.digest, "weight": 0.5},
            {"ref": "acme/y:1", "digest": shown.digest, "weight": 0.5},
        ],
        "error": {"max": 0.01},
    }
    push_folder(client, adapters_dir / "lora_b", "acme/mix", lineage=doc)
    reader = user(reg, "rita", {"acme": "read"})
    g = lineage.graph(reg, "acme/mix", principal=reader)
    text = g.model_dump_json()
    assert secret.digest not in text and "secret/" not in text
    kinds = sorted(n.kind for n in g.nodes)
    assert kinds == ["hidden", "version", "version"]
    hidden = next(n for n in g.nodes if n.kind == "hidden")
    assert hidden.digest is None and hidden.ref is None
    assert {(e.source, e.weight) for e in g.edges if e.kind == "merge"} == {
        (hidden.id, 0.5),
        ("version:acme/y:1", 0.5),
    }
    # The operator sees it all; the secret version's descendants are not shown to the reader.
    full = lineage.graph(reg, "secret/x", principal=OPERATOR)
    assert "version:acme/mix:1" in {n.id for n in full.nodes}
    with pytest.raises(NotFound):
        lineage.graph(reg, "secret/x", principal=reader)
    below = lineage.graph(reg, "acme/y", principal=reader)
    assert {n.id for n in below.nodes} == {"version:acme/y:1", "version:acme/mix:1"}


def test_depth_cuts_and_says_so(reg: Registry, tmp_path: Path, adapters_dir: Path) -> None:
    client = LocalClient(reg, "op", LocalBlobStore(tmp_path / "cache"), principal=Principal.operator("op"))
    a = push_folder(client, adapters_dir / "lora_a", "acme/a")
    b = push_folder(
        client,
        adapters_dir / "lora_b",
        "acme/b",
        lineage={
            "kind": "merge",
            "method": "svd",
            "parents": [{"ref": "acme/a:1", "digest": a.digest, "weight": 1}],
        },
    )
    push_folder(
        client,
        adapters_dir / "lora_dora",
        "acme/c",
        lineage={
            "kind": "merge",
            "method": "svd",
            "parents": [{"ref": "acme/b:1", "digest": b.digest, "weight": 2}],
        },
    )
    whole = lineage.graph(reg, "acme/c", principal=OPERATOR)
    assert {n.id for n in whole.nodes} == {"version:acme/a:1", "version:acme/b:1", "version:acme/c:1"}
    assert not whole.truncated
    cut = lineage.graph(reg, "acme/c", depth=1, principal=OPERATOR)
    assert {n.id for n in cut.nodes} == {"version:acme/b:1", "version:acme/c:1"} and cut.truncated
    down = lineage.graph(reg, "acme/a", depth=1, principal=OPERATOR)
    assert {n.id for n in down.nodes} == {"version:acme/a:1", "version:acme/b:1"} and down.truncated
    assert {
        (e.source, e.target, e.weight) for e in lineage.graph(reg, "acme/a", principal=OPERATOR).edges
    } == {
        ("version:acme/a:1", "version:acme/b:1", 1.0),
        ("version:acme/b:1", "version:acme/c:1", 2.0),
    }
