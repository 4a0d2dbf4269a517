"""`adapters sync`: a real server, real pushes and alias moves; folder contents checked byte for
byte, and every swap checked to be atomic (the old folder complete until the new one is in place)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from registry.client.http import HttpClient
from registry.client.transfer import push_folder
from registry.errors import OutputExists
from registry.integrations import sync as sync_mod
from registry.integrations.sync import SyncSpec, sync_once, watch
from tests.conftest import ServerThread
from tests.integrations.conftest import write_lora


def folder_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def push_v1_v2(client: HttpClient, tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """acme/legal:1 (alias production) and acme/legal:2; returns each version's file hashes."""
    v1 = write_lora(tmp_path / "v1", seed=1)
    v2 = write_lora(tmp_path / "v2", seed=2)
    push_folder(client, tmp_path / "v1", "acme/legal", aliases=["production"])
    push_folder(client, tmp_path / "v2", "acme/legal")
    return v1, v2


def test_sync_follows_alias_moves_and_prunes(client: HttpClient, tmp_path: Path) -> None:
    v1, v2 = push_v1_v2(client, tmp_path)
    out = tmp_path / "loras"
    spec = SyncSpec(repos=("acme/legal",))

    first = sync_once(client, out, spec)
    assert {(e.name, e.version, e.action) for e in first.entries} == {
        ("acme/legal", 2, "created"),
        ("acme/legal@production", 1, "created"),
    }
    assert folder_hashes(out / "acme" / "legal") == v2
    assert folder_hashes(out / "acme" / "legal@production") == v1
    assert (out / "acme" / "legal@production").is_symlink()
    assert len(list((out / ".versions").iterdir())) == 2

    again = sync_once(client, out, spec)
    assert [e.action for e in again.entries] == ["unchanged", "unchanged"] and again.pruned == []

    client.set_alias("acme/legal:2", "production")
    moved = sync_once(client, out, spec)
    prod = {e.name: e for e in moved.entries}["acme/legal@production"]
    assert (prod.action, prod.version, prod.previous) == ("moved", 2, client.resolve("acme/legal:1").digest)
    assert folder_hashes(out / "acme" / "legal@production") == v2
    v1_key = client.resolve("acme/legal:1").digest.removeprefix("sha256:")
    assert folder_hashes(out / ".versions" / v1_key) == v1  # kept for readers until the next pass
    assert moved.pruned == []
    assert sync_once(client, out, spec).pruned == [v1_key]
    assert [p.name for p in (out / ".versions").iterdir()] == [client.resolve("acme/legal:2").digest[7:]]

    client.delete_alias("acme/legal", "production")
    gone = sync_once(client, out, spec)
    assert [(e.name, e.action) for e in gone.entries if e.action != "unchanged"] == [
        ("acme/legal@production", "removed")
    ]
    assert not (out / "acme" / "legal@production").exists()
    assert folder_hashes(out / "acme" / "legal") == v2


def test_swap_is_atomic(client: HttpClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the moment of every swap the name still opens the complete old version and the new link
    opens the complete new one; a reader racing many swaps only ever sees one whole version."""
    v1, v2 = push_v1_v2(client, tmp_path)
    out = tmp_path / "loras"
    spec = SyncSpec(repos=("acme/legal",), aliases=("production",))
    sync_once(client, out, spec)
    link = out / "acme" / "legal@production"
    real_replace = os.replace
    swaps: list[tuple[dict[str, str], dict[str, str]]] = []

    def checked_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst) == link:
            swaps.append((folder_hashes(link), folder_hashes(Path(src))))
        real_replace(src, dst)

    monkeypatch.setattr(sync_mod.os, "replace", checked_replace)
    seen: list[dict[str, str]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(folder_hashes(Path(os.path.realpath(link))))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(6):
            client.set_alias(f"acme/legal:{2 - i % 2}", "production")
            assert sync_once(client, out, spec).entries[0].action == "moved"
    finally:
        stop.set()
        thread.join(10)
    monkeypatch.undo()
    assert swaps == [(v1, v2), (v2, v1)] * 3
    assert seen and all(s in (v1, v2) for s in seen)


def test_refuses_a_folder_it_did_not_make(client: HttpClient, tmp_path: Path) -> None:
    push_v1_v2(client, tmp_path)
    (tmp_path / "loras" / "acme" / "legal").mkdir(parents=True)
    with pytest.raises(OutputExists):
        sync_once(client, tmp_path / "loras", SyncSpec(repos=("acme/legal",)))


def test_watch_follows_moves_between_passes(client: HttpClient, tmp_path: Path) -> None:
    v1, v2 = push_v1_v2(client, tmp_path)
    out = tmp_path / "loras"
    reports = []

    def between(_: float) -> None:  # the "sleep" between passes: move the alias there
        client.set_alias("acme/legal:2", "production")

    ran = watch(client, out, SyncSpec(aliases=("production",)), 0, reports.append, passes=2, sleep=between)
    assert ran == 2
    assert [[(e.name, e.version, e.action) for e in r.entries] for r in reports] == [
        [("acme/legal@production", 1, "created")],
        [("acme/legal@production", 2, "moved")],
    ]
    assert folder_hashes(out / "acme" / "legal@production") == v2


def test_watch_reports_a_failed_pass_and_goes_on(tmp_path: Path) -> None:
    down = HttpClient("http://127.0.0.1:9", user="x", cache_dir=tmp_path / "c")
    reports = []
    assert watch(down, tmp_path / "loras", SyncSpec(), 0, reports.append, passes=2, sleep=lambda _: None) == 2
    assert all(r.error and r.error.startswith("server_unavailable") for r in reports)


def test_cli_sync_flat_layout_base_name_and_watch_json(
    served: ServerThread, client: HttpClient, tmp_path: Path
) -> None:
    v1, _ = push_v1_v2(client, tmp_path)
    env = {
        "ADAPTERS_URL": served.url,
        "ADAPTERS_HOME": str(tmp_path / "cli-home"),
        "ADAPTERS_TOKEN": served.token,
    }  # type: ignore[attr-defined]
    out = tmp_path / "flat"
    args = ["sync", str(out), "--repo", "acme/legal", "--layout", "flat", "--base-model-name", "/models/base"]
    result = CliRunner().invoke(cli, [*args, "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert sorted(e["name"] for e in doc["entries"]) == ["acme--legal", "acme--legal@production"]
    prod = out / "acme--legal@production"
    config = json.loads((prod / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "/models/base" and config["r"] == 4
    assert folder_hashes(prod)["adapter_model.safetensors"] == v1["adapter_model.safetensors"]

    watched = CliRunner().invoke(
        cli, [*args, "--watch", "--interval", "0", "--passes", "2", "--json"], env=env, catch_exceptions=False
    )
    assert watched.exit_code == 0, watched.output
    lines = [json.loads(line) for line in watched.stdout.splitlines()]
    assert len(lines) == 2 and all(e["action"] == "unchanged" for line in lines for e in line["entries"])

    bad = CliRunner().invoke(cli, ["sync", str(out), "--repo", "NOT A REPO"], env=env)
    assert bad.exit_code == 2


# ---------------------------------------------------------------- the flat layout's names
def test_flat_layout_keeps_dashed_namespaces_and_names_apart(client: HttpClient, tmp_path: Path) -> None:
    """`ab/cd--ef` and `ab--cd/ef` once mapped to one folder: the pass linked one and failed, and
    under --watch no alias of any repository moved again. Each now has its own folder, and both
    follow their alias moves pass after pass."""
    hashes = {}
    for i, repo in enumerate(("ab/cd--ef", "ab--cd/ef")):
        for v in (1, 2):
            hashes[repo, v] = write_lora(tmp_path / f"{i}-{v}", seed=10 * i + v)
            push_folder(client, tmp_path / f"{i}-{v}", repo, aliases=["production"] if v == 1 else [])
    out = tmp_path / "flat"
    reports = []

    def between(_: float) -> None:
        for repo in ("ab/cd--ef", "ab--cd/ef"):
            client.set_alias(f"{repo}:2", "production")

    spec = SyncSpec(aliases=("production",), layout="flat")
    assert watch(client, out, spec, 0, reports.append, passes=2, sleep=between) == 2
    assert [r.error for r in reports] == [None, None] and [r.skipped for r in reports] == [[], []]
    assert [sorted((e.name, e.ref, e.version, e.action) for e in r.entries) for r in reports] == [
        [
            ("ab--cd+ef@production", "ab--cd/ef@production", 1, "created"),
            ("ab--cd--ef@production", "ab/cd--ef@production", 1, "created"),
        ],
        [
            ("ab--cd+ef@production", "ab--cd/ef@production", 2, "moved"),
            ("ab--cd--ef@production", "ab/cd--ef@production", 2, "moved"),
        ],
    ]
    assert folder_hashes(out / "ab--cd--ef@production") == hashes["ab/cd--ef", 2]
    assert folder_hashes(out / "ab--cd+ef@production") == hashes["ab--cd/ef", 2]
    # Latest and every alias, one level: refs without '--' in their namespace keep their names.
    push_folder(client, tmp_path / "0-1", "acme/legal", aliases=["production"])
    every = sync_once(client, out, SyncSpec(layout="flat"))
    assert sorted(e.name for e in every.entries if e.action != "removed") == [
        "ab--cd+ef",
        "ab--cd+ef@production",
        "ab--cd--ef",
        "ab--cd--ef@production",
        "acme--legal",
        "acme--legal@production",
    ]


def test_flat_names_are_one_to_one() -> None:
    """Every namespace/name/alias over a small alphabet rich in '-': no two references share a
    folder name."""
    import itertools
    import re

    from registry.refs import NAME_PART

    words = ["".join(w) for n in range(1, 5) for w in itertools.product("a-", repeat=n)]
    parts = [w for w in words if re.fullmatch(NAME_PART, w)]
    refs = [f"{ns}/{name}{tail}" for ns in parts for name in parts for tail in ("", "@a", "@a-")]
    names = {sync_mod.folder_name(ref, "flat") for ref in refs}
    assert len(names) == len(refs)
    assert sync_mod.folder_name("acme/legal@production", "flat") == "acme--legal@production"


def test_shared_names_are_skipped_and_reported_the_rest_planned() -> None:
    """Should a mapping fold two references into one name (today's flat names did), those two are
    skipped and reported before anything is linked, and the rest of the pass is planned."""
    found = [("ab/cd--ef", "ab/cd--ef"), ("ab--cd/ef", "ab--cd/ef"), ("acme/legal", "acme/legal")]
    found.append(found[-1])  # listed twice: one reference, not a clash

    def old_flat(ref: str) -> str:
        return ref.replace("/", "--", 1)

    planned, skipped = sync_mod.plan_names(found, old_flat)
    assert planned == {"acme--legal": ("acme/legal", "acme/legal")}
    assert [(s.name, s.ref) for s in skipped] == [("ab--cd--ef", "ab/cd--ef"), ("ab--cd--ef", "ab--cd/ef")]
    assert all("ab/cd--ef and ab--cd/ef map to the same folder ab--cd--ef" in s.reason for s in skipped)
    planned, skipped = sync_mod.plan_names(found, lambda ref: sync_mod.folder_name(ref, "flat"))
    assert sorted(planned) == ["ab--cd+ef", "ab--cd--ef", "acme--legal"] and skipped == []
