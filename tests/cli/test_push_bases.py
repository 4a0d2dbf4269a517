"""Issue 23, "bases linked by weights, never by a typo": which base a push links, said in its output.
An unknown --base is a usage error with close names; a registered name wins over a same-named
folder in the current directory; adapter_config's absolute base path is fingerprinted, and a path
not on this machine leaves the version unlinked with the way to link it. Embedded and over HTTP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.conftest import Cli, cli_fixture

adapters = cli_fixture("embedded", "postgresql-file")


def with_base_path(adapter: Path, into: Path, base: str) -> Path:
    """A copy of `adapter` whose adapter_config.json names `base`, as PEFT writes a local base."""
    shutil.copytree(adapter, into)
    config = json.loads((into / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base
    (into / "adapter_config.json").write_text(json.dumps(config))
    return into


def test_which_base_a_push_links(
    adapters: Cli, adapters_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.adapters_factory import save_base, tiny_llama

    lora = adapters_dir / "lora_a"
    registered = adapters.json("base", "add", str(adapters_dir / "base"), "--name", "acme/tiny-llama")
    fingerprint = registered["fingerprint"]

    # A typo is a usage error naming the close names, and nothing is stored.
    typo = adapters("push", str(lora), "acme/legal", "--base", "acme/tiny-lama", ok=False)
    assert typo.exit_code == 2, typo.output
    assert "no registered base" in typo.stderr and "did you mean acme/tiny-llama" in typo.stderr
    assert adapters.json("list")["items"] == []
    missing = adapters("push", str(lora), "acme/legal", "--base", "./no-such-folder", ok=False)
    assert missing.exit_code == 2 and "no such model folder" in missing.stderr

    # A registered name wins over a folder of that name in the current directory (other weights).
    monkeypatch.chdir(tmp_path)
    save_base(tiny_llama(seed=7), tmp_path / "acme" / "tiny-llama")
    pushed = adapters.json("push", str(lora), "acme/legal", "--base", "acme/tiny-llama")
    assert pushed["info"]["base_fingerprint"] == fingerprint
    assert pushed["base_note"].startswith(
        "the registered base acme/tiny-llama (not the folder ./acme/tiny-llama"
    )
    human = adapters("push", str(lora), "acme/legal", "--base", "acme/tiny-llama").stdout
    assert "base: the registered base acme/tiny-llama" in human

    # Written as a path, the folder is taken (its own weights: another fingerprint).
    local = adapters.json("push", str(lora), "acme/local", "--base", "./acme/tiny-llama")
    assert local["info"]["base_linked"] and local["info"]["base_fingerprint"] != fingerprint
    assert "the model folder" in local["base_note"] and "linked by fingerprint" in local["base_note"]
    # No base has the name: the folder is taken, and the output says so.
    save_base(tiny_llama(), tmp_path / "llama-here")
    here = adapters.json("push", str(lora), "acme/here", "--base", "llama-here")
    assert here["info"]["base_fingerprint"] == fingerprint
    assert "the model folder ./llama-here (no registered base has that name)" in here["base_note"]

    # adapter_config.json holds the absolute path of the registered base's folder: linked by weights.
    absolute = with_base_path(lora, tmp_path / "abs", str((adapters_dir / "base").resolve()))
    linked = adapters.json("push", str(absolute), "acme/abs")
    assert linked["info"]["base_linked"] and linked["info"]["base_fingerprint"] == fingerprint
    assert "(from adapter_config.json), linked by fingerprint" in linked["base_note"]

    # A path that is not on this machine: pushed, not linked, and told how to link it.
    gone = with_base_path(lora, tmp_path / "gone", "/nowhere/models/llama")
    unlinked = adapters.json("push", str(gone), "acme/gone")
    assert unlinked["created"] and not unlinked["info"]["base_linked"]
    assert "not linked: adapter_config.json names the folder /nowhere/models/llama" in unlinked["base_note"]
    assert "--base NAME" in unlinked["base_note"]
    # An unknown name in the config is not an error either; it is said, with close names.
    named = with_base_path(lora, tmp_path / "named", "acme/tiny-lama")
    note = adapters.json("push", str(named), "acme/named")["base_note"]
    assert "not linked" in note and "acme/tiny-llama" in note


def test_jobs_and_fit_take_a_registered_name_over_a_folder(
    embedded: Cli, adapters_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fit NAME` with a folder NAME in the current directory asks about the registered base."""
    embedded("base", "add", str(adapters_dir / "base"), "--name", "llama")
    embedded("push", str(adapters_dir / "lora_a"), "acme/legal", "--base", "llama")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "llama").mkdir()  # not a model folder: fingerprinting it would fail
    fits = embedded.json("fit", "llama")
    assert [i["ref"] for i in fits["items"]] == ["acme/legal:1"]
