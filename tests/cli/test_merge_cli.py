"""`adapters merge` end to end: embedded and against a server, lineage, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.cli.conftest import Cli, cli_fixture

adapters = cli_fixture("embedded", "postgresql-s3")


def test_merge_records_lineage_and_loads_in_peft(adapters: Cli, adapters_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapters("base", "add", "--config", str(adapters_dir / "base" / "config.json"), "--name", "tiny-llama")
    a = adapters.json("push", str(adapters_dir / "lora_a"), "acme/legal", "--base", "tiny-llama")
    b = adapters.json("push", str(adapters_dir / "lora_b"), "acme/medical", "--base", "tiny-llama")
    merged = adapters.json(
        "merge",
        "acme/legal=0.7",
        "acme/medical:1=-0.3",
        "--into",
        "acme/mix",
        "--method",
        "cat",
        "--alias",
        "candidate",
    )
    assert (merged["repo"], merged["version"], merged["created"]) == ("acme/mix", 1, True)
    shown = adapters.json("show", "acme/mix@candidate")
    lineage = shown["lineage"]
    assert lineage["method"] == "cat" and lineage["kind"] == "merge"
    assert [(p["digest"], p["weight"]) for p in lineage["parents"]] == [
        (a["digest"], 0.7),
        (b["digest"], -0.3),
    ]
    assert lineage["error"]["max"] < 1e-5  # cat is exact
    assert shown["base_model"]["name"] == "tiny-llama"
    assert shown["r"] == 4 + 8 and shown["peft_type"] == "LORA"
    human = adapters("show", "acme/mix")
    assert "acme/legal" in human.stdout and "merge error" in human.stdout

    svd = adapters.json("merge", "acme/legal=0.7", "acme/medical=0.3", "--into", "acme/mix", "--rank", "4")
    assert svd["version"] == 2 and svd["info"]["r"] == 4
    assert 0 < svd["info"]["lineage"]["error"]["max"] < 1

    out = tmp_path / "mix"
    adapters("pull", "acme/mix:1", "-o", str(out))
    base = AutoModelForCausalLM.from_pretrained(adapters_dir / "base").eval()
    ids = torch.randint(0, 128, (1, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = base(input_ids=ids).logits
        with_mix = PeftModel.from_pretrained(base, out).eval()(input_ids=ids).logits
    assert not torch.allclose(plain, with_mix)


def test_merge_refusals(adapters: Cli, adapters_dir: Path, tmp_path: Path) -> None:
    from peft import IA3Config, get_peft_model

    from tests.adapters_factory import tiny_llama, train_lora

    for name in ("tiny-llama", "another-base"):  # a base must be registered to be named
        adapters("base", "add", "--config", str(adapters_dir / "base" / "config.json"), "--name", name)
    adapters("push", str(adapters_dir / "lora_a"), "acme/legal", "--base", "tiny-llama")
    adapters("push", str(adapters_dir / "lora_b"), "acme/other", "--base", "another-base")
    adapters("push", str(adapters_dir / "lora_dora"), "acme/dora", "--base", "tiny-llama")
    ia3 = get_peft_model(
        tiny_llama(), IA3Config(target_modules=["k_proj", "down_proj"], feedforward_modules=["down_proj"])
    )
    ia3.save_pretrained(tmp_path / "ia3")
    adapters("push", str(tmp_path / "ia3"), "acme/ia3", "--base", "tiny-llama")
    train_lora(tiny_llama(), tmp_path / "head", modules_to_save=["lm_head"])
    adapters("push", str(tmp_path / "head"), "acme/head", "--base", "tiny-llama")

    def refused(*args: str) -> str:
        result = adapters("merge", *args, "--into", "acme/out", "--json", ok=False)
        assert result.exit_code == 1, result.output
        return str(json.loads(result.stdout)["error"]["code"])

    assert refused("acme/legal=0.5", "acme/dora=0.5") == "merge_refused"
    assert refused("acme/legal=0.5", "acme/ia3=0.5") == "merge_refused"
    assert refused("acme/legal=0.5", "acme/head=0.5") == "merge_refused"
    assert refused("acme/legal=0.5", "acme/other=0.5") == "base_mismatch"
    # Malformed parameters are refused when the job is submitted, before any worker sees them.
    assert (
        refused("acme/legal=0.5", "acme/legal=0.5", "--method", "linear", "--density", "2") == "bad_request"
    )
    malformed = adapters("merge", "acme/legal=oops", "--into", "acme/out", "--json", ok=False)
    assert malformed.exit_code == 2 and "not a finite number" in malformed.stderr  # a usage error
    assert refused("acme/legal=0.5", "acme/missing=0.5") == "not_found"
    assert adapters("show", "acme/out", ok=False).exit_code == 1  # nothing was stored
    ok = adapters.json(
        "merge", "acme/legal=0.5", "acme/other=0.5", "--into", "acme/out", "--allow-base-mismatch"
    )
    assert ok["version"] == 1 and ok["info"]["base_model"]["name"] is None
