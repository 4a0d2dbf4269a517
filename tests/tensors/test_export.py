"""Export (adapter merged into its base, streamed) against PEFT's merge_and_unload()."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import IA3Config, LoraConfig, PeftModel, PrefixTuningConfig, get_peft_model
from transformers import AutoModelForCausalLM, PreTrainedModel

from registry.errors import ExportRefused
from registry.formats.model_folder import inspect_model, weight_files
from registry.tensors.export import export_merged
from tests.adapters_factory import VOCAB, save_peft, sized_llama, tiny_gpt2, tiny_llama, train_lora

pytestmark = pytest.mark.models  # compared with PEFT on real models

IDS = torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(7))


def perturbed(base: PreTrainedModel, config: Any, out: Path, seed: int = 3) -> Path:
    """An adapter whose every trainable tensor is random (IA3 starts at ones, LoRA B at zeros)."""
    model = get_peft_model(base, config)
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if p.requires_grad:
            center = 1.0 if "ia3_l" in name or "magnitude" in name else 0.0
            p.data = center + 0.2 * torch.randn(p.shape, generator=gen)
    model.save_pretrained(out)
    return out


def export(base_dir: Path, adapter: Path, out: Path, **kw: Any) -> Any:
    cfg = json.loads((base_dir / "config.json").read_text())
    return export_merged(weight_files(base_dir), adapter, out, config=cfg, **kw)


def reference_logits(make_base: Any, adapter: Path, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    merged = PeftModel.from_pretrained(make_base(), adapter).merge_and_unload().to(dtype).eval()
    with torch.no_grad():
        return merged(input_ids=IDS).logits.float()


def exported_logits(out: Path) -> torch.Tensor:
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        return model(input_ids=IDS).logits.float()


CASES = {
    "lora": (
        tiny_llama,
        lambda b, o: train_lora(b, o, seed=4, target_modules=["q_proj", "v_proj", "down_proj"]),
    ),
    "dora-rslora-patterns": (
        tiny_llama,
        lambda b, o: perturbed(
            b,
            LoraConfig(
                r=4,
                lora_alpha=8,
                use_dora=True,
                use_rslora=True,
                rank_pattern={"v_proj": 2},
                alpha_pattern={"v_proj": 3},
                target_modules=["q_proj", "v_proj", "gate_proj"],
            ),
            o,
        ),
    ),
    "ia3": (
        tiny_llama,
        lambda b, o: perturbed(
            b,
            IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"]),
            o,
        ),
    ),
    "ia3-regex-targets": (  # PEFT's other form: regex strings, matched with re.fullmatch
        tiny_llama,
        lambda b, o: perturbed(
            b,
            IA3Config(target_modules=r".*\.(k_proj|v_proj|down_proj)", feedforward_modules=r".*\.down_proj"),
            o,
        ),
    ),
    "gpt2-conv1d-lora": (
        tiny_gpt2,
        lambda b, o: perturbed(b, LoraConfig(r=4, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True), o),
    ),
    "gpt2-conv1d-ia3": (
        tiny_gpt2,
        lambda b, o: perturbed(
            b,
            IA3Config(
                target_modules=["c_attn", "mlp.c_proj"],
                feedforward_modules=["mlp.c_proj"],
                fan_in_fan_out=True,
            ),
            o,
        ),
    ),
    "lora-modules-to-save": (
        tiny_llama,
        lambda b, o: train_lora(b, o, seed=5, modules_to_save=["lm_head"]),
    ),
}


TRAINED = {"lora", "lora-modules-to-save"}  # the others are random adapters: no training, fast


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.slow) if c in TRAINED else c for c in sorted(CASES)]
)
def test_export_equals_peft_merge_and_unload(case: str, tmp_path: Path) -> None:
    make_base, make_adapter = CASES[case]
    base_dir = tmp_path / "base"
    make_base().save_pretrained(base_dir, max_shard_size="20KB")  # several shards
    adapter = make_adapter(make_base(), tmp_path / "adapter")
    result = export(base_dir, adapter, tmp_path / "out", max_shard_size=30_000)
    assert len(result.files) > 1 and (tmp_path / "out" / "model.safetensors.index.json").is_file()
    ref = reference_logits(make_base, adapter)
    got = exported_logits(tmp_path / "out")
    assert torch.allclose(got, ref, atol=1e-5, rtol=1e-5), (got - ref).abs().max()
    plain = make_base()(input_ids=IDS).logits
    assert not torch.allclose(got, plain, atol=1e-4)  # the adapter did something
    # The fingerprint computed while writing is the one `base add` would compute from the files.
    facts = inspect_model(tmp_path / "out")
    assert (facts.fingerprint, facts.structure_signature) == (result.fingerprint, result.structure_signature)
    assert facts.structure_signature == inspect_model(base_dir).structure_signature


@pytest.mark.slow  # trains
def test_export_to_bf16_matches_peft_at_bf16_tolerance(tmp_path: Path) -> None:
    base_dir = tmp_path / "base"
    tiny_llama().save_pretrained(base_dir)
    adapter = train_lora(tiny_llama(), tmp_path / "adapter", seed=6)
    result = export(base_dir, adapter, tmp_path / "out", dtype="bf16")
    assert len(result.files) == 1 and (tmp_path / "out" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "out" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert next(model.parameters()).dtype == torch.bfloat16
    ref = reference_logits(tiny_llama, adapter, torch.bfloat16)
    assert torch.allclose(exported_logits(tmp_path / "out"), ref, atol=2e-2, rtol=2e-2)


@pytest.mark.slow  # trains
def test_export_refuses_what_it_cannot_merge_and_writes_nothing(tmp_path: Path) -> None:
    base_dir = tmp_path / "base"
    tiny_llama().save_pretrained(base_dir)
    prefix = save_peft(
        tiny_llama(), PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4), tmp_path / "p"
    )
    with pytest.raises(ExportRefused, match="PREFIX_TUNING"):
        export(base_dir, prefix, tmp_path / "out1")
    wider = train_lora(sized_llama(hidden=64), tmp_path / "wide", seed=1)
    with pytest.raises(ExportRefused, match=r"q_proj.*\[64, 64\].*\[32, 32\]"):
        export(base_dir, wider, tmp_path / "out2")
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()
