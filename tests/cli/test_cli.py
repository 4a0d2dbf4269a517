"""The `adapters` CLI, in embedded mode and against a real server, with real PEFT adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import MODE_NAMES, Cli, cli_fixture

adapters = cli_fixture(*MODE_NAMES)


def test_push_list_show_pull_alias(adapters: Cli, adapter_files: Path, tmp_path: Path) -> None:
    pushed = adapters.json(
        "push",
        str(adapter_files / "lora_a"),
        "acme/legal",
        "--task",
        "legal",
        "--eval",
        "accuracy=0.9@lexglue:test",
        "--alias",
        "staging",
        "-m",
        "first cut",
    )
    assert (pushed["repo"], pushed["version"], pushed["created"]) == ("acme/legal", 1, True)
    assert pushed["digest"].startswith("sha256:")
    same = adapters.json("push", str(adapter_files / "lora_a"), "acme/legal")
    assert same["created"] is False and same["version"] == 1
    adapters("base", "add", "--config", str(adapter_files / "base" / "config.json"), "--name", "tiny-llama")
    second = adapters.json("push", str(adapter_files / "lora_b"), "acme/legal", "--base", "tiny-llama")
    assert second["version"] == 2

    shown = adapters.json("show", "acme/legal@staging")
    assert (shown["repo"], shown["version"], shown["digest"]) == ("acme/legal", 1, pushed["digest"])
    assert shown["evals"] == [{"metric": "accuracy", "value": 0.9, "dataset": "lexglue", "split": "test"}]
    assert shown["message"] == "first cut" and shown["aliases"] == ["staging"]

    listed = adapters.json("list")
    assert [v["ref"] for v in listed["items"]] == ["acme/legal:2"]
    assert [v["ref"] for v in adapters.json("list", "--task", "legal")["items"]] == ["acme/legal:1"]
    assert [v["ref"] for v in adapters.json("list", "--base", "tiny-llama")["items"]] == ["acme/legal:2"]
    assert adapters.json("list", "--peft-type", "IA3")["items"] == []

    out = tmp_path / "pulled"
    pulled = adapters.json("pull", "acme/legal@staging", "-o", str(out))
    assert pulled["version"] == 1 and Path(pulled["path"]) == out
    for f in (adapter_files / "lora_a").iterdir():
        assert (out / f.name).read_bytes() == f.read_bytes()

    moved = adapters.json("alias", "set", "acme/legal:2", "staging")
    assert moved["version"] == 2
    assert adapters.json("show", "acme/legal@staging")["version"] == 2
    adapters.json("alias", "rm", "acme/legal", "staging")
    human = adapters("show", "acme/legal:1")
    assert "acme/legal:1" in human.stdout and "lexglue" in human.stdout


def test_errors_exit_1_with_one_line(adapters: Cli, lora_a: Path) -> None:
    result = adapters("show", "acme/missing", ok=False)
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "not_found" in result.stderr
    (lora_a / "adapter_model.bin").write_bytes(b"\x80\x04K\x01.")  # training_args.bin is skipped
    bad = adapters("push", str(lora_a), "acme/x", "--json", ok=False)
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["error"]["code"] == "pickle_refused"
    assert "safetensors" in bad.stderr
    assert adapters("show", "Bad Ref", ok=False).exit_code == 2  # a malformed REF is a usage error
    assert adapters("push", ok=False).exit_code == 2  # usage error
    assert adapters("frobnicate", ok=False).exit_code == 2


@pytest.mark.slow
def test_pulled_adapter_gives_identical_logits(adapters: Cli, adapters_dir: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from tests.adapters_factory import logits_with_adapter

    adapters("push", str(adapters_dir / "lora_dora"), "acme/dora")
    out = tmp_path / "dora"
    adapters("pull", "acme/dora", "-o", str(out))
    ids = torch.randint(0, 128, (2, 10), generator=torch.Generator().manual_seed(0))
    base = AutoModelForCausalLM.from_pretrained(adapters_dir / "base").eval()
    with torch.no_grad():
        plain = base(input_ids=ids).logits
    original = logits_with_adapter(base, adapters_dir / "lora_dora", ids)
    pulled = logits_with_adapter(base, out, ids)
    assert torch.equal(original, pulled)
    assert not torch.allclose(plain, pulled)  # the adapter really changes the output


def test_embedded_default_needs_no_setup(tmp_path: Path, adapter_files: Path) -> None:
    """With only XDG_DATA_HOME set, data lands in $XDG_DATA_HOME/adapter-registry."""
    run = Cli(
        {
            "XDG_DATA_HOME": str(tmp_path / "xdg"),
            "ADAPTERS_HOME": "",
            "ADAPTERS_URL": "",
            "ADAPTERS_DATABASE_URL": "",
            "ADAPTERS_BLOB_URL": "",
        }
    )
    run.env.pop("ADAPTERS_HOME")
    run("push", str(adapter_files / "lora_a"), "acme/legal")
    assert (tmp_path / "xdg" / "adapter-registry" / "registry.db").exists()
    assert any((tmp_path / "xdg" / "adapter-registry" / "blobs" / "sha256").iterdir())
