"""push / pull through the service layer on {SQLite, PostgreSQL} x {file, S3}, with real adapters."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from registry.client.local import LocalClient
from registry.client.transfer import parse_eval, pull, push_folder
from registry.entities import VersionFilter
from registry.errors import BadRequest, InvalidReference, NotFound, OutputExists


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_push_then_pull_is_byte_identical(client: LocalClient, adapter_files: Path, tmp_path: Path) -> None:
    result = push_folder(
        client,
        adapter_files / "lora_a",
        "acme/legal",
        task="legal",
        evals=[parse_eval("accuracy=0.91@lexglue:test")],
        message="first",
    )
    assert result.created and result.version == 1 and result.digest.startswith("sha256:")
    info, out = pull(client, "acme/legal", tmp_path / "out")
    assert read_tree(out) == read_tree(adapter_files / "lora_a")
    assert info.peft_type == "LORA" and info.r == 4 and info.lora_alpha == 8
    assert info.target_modules == ["q_proj", "v_proj"]
    assert info.task == "legal" and info.pushed_by == "tester" and info.message == "first"
    assert (
        info.evals[0].metric == "accuracy"
        and info.evals[0].dataset == "lexglue"
        and info.evals[0].split == "test"
    )
    # 2 layers x (q: A 4x32 + B 32x4, v: A 4x32 + B 16x4)
    assert info.trainable_params == 2 * (4 * 32 + 32 * 4 + 4 * 32 + 16 * 4)
    assert info.adapter_bytes == info.trainable_params * 4


def test_versions_aliases_and_every_ref_form(client: LocalClient, adapter_files: Path) -> None:
    v1 = push_folder(client, adapter_files / "lora_a", "acme/legal", aliases=["production"])
    again = push_folder(client, adapter_files / "lora_a", "acme/legal")
    assert not again.created and again.version == 1 and "no new version" in again.detail
    v2 = push_folder(client, adapter_files / "lora_b", "acme/legal", aliases=["staging"])
    assert v2.version == 2 and v2.digest != v1.digest
    assert client.resolve("acme/legal").version == 2
    assert client.resolve("acme/legal:1").digest == v1.digest
    assert client.resolve("acme/legal@production").version == 1
    assert client.resolve(f"acme/legal@{v1.digest}").version == 1
    assert client.resolve("acme/legal@staging").aliases == ["staging"]
    client.set_alias("acme/legal:2", "production")
    assert client.resolve("acme/legal@production").version == 2
    assert client.resolve("acme/legal:1").digest == v1.digest  # versions never change
    client.delete_alias("acme/legal", "staging")
    with pytest.raises(NotFound):
        client.resolve("acme/legal@staging")
    with pytest.raises(NotFound):
        client.resolve("acme/legal:3")
    with pytest.raises(NotFound):
        client.resolve("acme/other")
    with pytest.raises(InvalidReference):
        client.resolve("Acme/legal")
    with pytest.raises(InvalidReference):
        client.set_alias("acme/legal:1", "latest")
    # Reverting to identical older content makes a new version (content differs from the latest).
    v3 = push_folder(client, adapter_files / "lora_a", "acme/legal")
    assert v3.created and v3.version == 3 and v3.digest == v1.digest
    assert client.resolve(f"acme/legal@{v1.digest}").version == 3


def test_list_filters_and_pagination(client: LocalClient, adapter_files: Path) -> None:
    push_folder(client, adapter_files / "lora_a", "acme/legal", task="legal", base="tiny-llama")
    push_folder(client, adapter_files / "lora_b", "acme/medical", task="medical", base="tiny-llama")
    push_folder(client, adapter_files / "lora_dora", "acme/medical", task="medical", base="other")
    latest = client.list_versions(VersionFilter(latest_only=True))
    assert [v.ref for v in latest.items] == ["acme/medical:2", "acme/legal:1"]
    assert [v.ref for v in client.list_versions(VersionFilter(task="medical")).items] == [
        "acme/medical:2",
        "acme/medical:1",
    ]
    assert [v.ref for v in client.list_versions(VersionFilter(base="tiny-llama")).items] == [
        "acme/medical:1",
        "acme/legal:1",
    ]
    assert client.list_versions(VersionFilter(peft_type="ia3")).items == []
    dora = client.resolve("acme/medical:2")
    assert dora.use_dora and dora.use_rslora
    page1 = client.list_versions(VersionFilter(), limit=2)
    assert len(page1.items) == 2 and page1.next_cursor
    page2 = client.list_versions(VersionFilter(), limit=2, cursor=page1.next_cursor)
    assert [v.ref for v in page2.items] == ["acme/legal:1"] and page2.next_cursor is None
    repos = client.list_repos()
    assert {r.repo: r.latest_version for r in repos.items} == {"acme/legal": 1, "acme/medical": 2}
    with pytest.raises(BadRequest):
        client.list_versions(VersionFilter(), cursor="not-a-cursor")


def test_pull_is_atomic_cached_and_refuses_to_clobber(
    client: LocalClient, adapter_files: Path, tmp_path: Path
) -> None:
    push_folder(client, adapter_files / "lora_a", "acme/legal")
    out = tmp_path / "target"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExists):
        pull(client, "acme/legal", out)
    assert (out / "keep.txt").read_text() == "mine"
    pull(client, "acme/legal", out, force=True)
    # --force replaces the adapter's files and never deletes what the registry did not write.
    assert read_tree(out) == {**read_tree(adapter_files / "lora_a"), "keep.txt": b"mine"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    # A second pull finds every blob in the cache: nothing to fetch.
    fetched: list[str] = []
    original = client.fetch_blob
    client.fetch_blob = lambda d, s, p: (fetched.append(d), original(d, s, p))[1]  # type: ignore[method-assign]
    pull(client, "acme/legal", tmp_path / "again")
    assert fetched == []


def test_concurrent_pushes_get_gap_free_numbers(
    client: LocalClient, adapter_files: Path, tmp_path: Path
) -> None:
    folders = []
    for i in range(6):
        d = Path(shutil.copytree(adapter_files / "lora_a", tmp_path / f"a{i}"))
        (d / "README.md").write_text(f"variant {i}\n")
        folders.append(d)
    errors: list[BaseException] = []
    results = []

    def run(folder: Path) -> None:
        try:
            results.append(push_folder(client, folder, "acme/race"))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(f,)) for f in folders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.version for r in results) == [1, 2, 3, 4, 5, 6]
    assert client.resolve("acme/race").version == 6
