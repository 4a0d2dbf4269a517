"""`adapters rm`: versions and repositories, aliases, numbers never reused, lineage of deleted
parents; on {SQLite, PostgreSQL} x {file, S3}."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.client.local import LocalClient
from registry.entities import VersionFilter
from registry.errors import AliasInUse, NotFound
from tests.lifecycle.conftest import push


def test_rm_version_refused_while_aliased_unless_force(client: LocalClient, tmp_path: Path) -> None:
    push(client, tmp_path, "acme/x", 1, aliases=["prod", "staging"])
    push(client, tmp_path, "acme/x", 2)
    with pytest.raises(AliasInUse) as err:
        client.delete_version("acme/x:1")
    assert err.value.aliases == ["prod", "staging"]
    assert client.resolve("acme/x@prod").version == 1  # nothing changed
    done = client.delete_version("acme/x@prod", force=True)
    assert (done.versions, done.aliases_removed) == ([1], ["prod", "staging"])
    for ref in ("acme/x:1", "acme/x@prod", "acme/x@staging"):
        with pytest.raises(NotFound):
            client.resolve(ref)
    assert client.resolve("acme/x").version == 2


def test_numbers_are_never_reused(client: LocalClient, tmp_path: Path) -> None:
    for seed in (1, 2, 3):
        push(client, tmp_path, "acme/x", seed)
    client.delete_version("acme/x:3")  # the latest
    assert client.resolve("acme/x").version == 2
    assert [v.version for v in client.list_versions(VersionFilter(repo="acme/x")).items] == [2, 1]
    assert push(client, tmp_path, "acme/x", 4).version == 4
    client.delete_version("acme/x:2")
    assert [v.version for v in client.list_versions(VersionFilter(repo="acme/x")).items] == [4, 1]
    # content equal to a deleted version is a new version, with a new number
    assert push(client, tmp_path, "acme/x", 3).version == 5


def test_rm_repository(client: LocalClient, tmp_path: Path) -> None:
    push(client, tmp_path, "acme/x", 1, aliases=["prod"])
    push(client, tmp_path, "acme/x", 2)
    push(client, tmp_path, "acme/keep", 1)
    done = client.delete_repository("acme/x")
    assert (done.versions, done.aliases_removed, done.repository_deleted) == ([1, 2], ["prod"], True)
    with pytest.raises(NotFound):
        client.resolve("acme/x")
    with pytest.raises(NotFound):
        client.delete_repository("acme/x")
    assert [r.repo for r in client.list_repos().items] == ["acme/keep"]
    assert push(client, tmp_path, "acme/x", 1).version == 3  # pushed again: numbers go on
    with pytest.raises(NotFound):
        client.delete_version("acme/nope:1")


def test_lineage_marks_a_deleted_parent(client: LocalClient, tmp_path: Path) -> None:
    parent = push(client, tmp_path, "acme/x", 1)
    recorded: dict[str, object] = {"ref": "acme/x:1", "digest": parent.digest, "weight": 1.0}
    lineage = {"parents": [recorded], "method": "cat"}
    push(client, tmp_path, "acme/m", 2, lineage=lineage)
    assert "deleted" not in client.resolve("acme/m").lineage["parents"][0]  # type: ignore[index]
    client.delete_version("acme/x:1")
    shown = client.resolve("acme/m").lineage
    assert shown is not None
    assert shown["parents"][0] == {**recorded, "deleted": True}
    assert shown["method"] == "cat"
