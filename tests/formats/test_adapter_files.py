"""The folders tests/adapter_files.py writes without torch are what PEFT and transformers save for
the same config: the same files, tensor names, shapes, dtypes, safetensors metadata and config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from safetensors import safe_open

from tests import adapter_files
from tests.adapter_files import LORA_B, LORA_DORA

pytestmark = pytest.mark.models


def header(path: Path) -> tuple[dict[str, str], dict[str, tuple[list[int], str]]]:
    with safe_open(str(path), "np") as f:
        return f.metadata(), {k: (f.get_slice(k).get_shape(), f.get_slice(k).get_dtype()) for k in f.keys()}


def config(path: Path) -> dict[str, Any]:
    """A config with PEFT's set-valued fields as sets (PEFT writes a set in its iteration order)."""
    raw = json.loads(path.read_text())
    for field in ("target_modules", "feedforward_modules"):
        if isinstance(raw.get(field), list):
            raw[field] = set(raw[field])
    return raw


def assert_same_adapter(built: Path, saved: Path) -> None:
    assert {p.name for p in built.iterdir()} == {p.name for p in saved.iterdir()}
    assert header(built / "adapter_model.safetensors") == header(saved / "adapter_model.safetensors")
    assert config(built / "adapter_config.json") == config(saved / "adapter_config.json")


LORAS: dict[str, dict[str, Any]] = {
    "lora_a": {"r": 4, "lora_alpha": 8},
    "lora_b": LORA_B,
    "lora_dora": {"lora_alpha": 8, **LORA_DORA},
    "mlp": {"r": 2, "lora_alpha": 4, "target_modules": ["gate_proj", "up_proj", "down_proj"]},
}


@pytest.mark.parametrize("name", list(LORAS))
def test_lora_folder_is_what_peft_saves(name: str, tmp_path: Path) -> None:
    from peft import LoraConfig

    from tests.adapters_factory import save_peft, tiny_llama

    fields: dict[str, Any] = {"target_modules": ["q_proj", "v_proj"], **LORAS[name]}
    saved = save_peft(
        tiny_llama(), LoraConfig(task_type="CAUSAL_LM", lora_dropout=0.0, **fields), tmp_path / "peft"
    )
    assert_same_adapter(adapter_files.lora_folder(tmp_path / "built", **fields), saved)


def test_ia3_and_prefix_folders_are_what_peft_saves(tmp_path: Path) -> None:
    from peft import IA3Config, PrefixTuningConfig

    from tests.adapters_factory import save_peft, tiny_llama

    ia3 = save_peft(tiny_llama(), IA3Config(task_type="CAUSAL_LM"), tmp_path / "ia3")
    assert_same_adapter(adapter_files.ia3_folder(tmp_path / "built-ia3"), ia3)
    prefix = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    saved = save_peft(tiny_llama(), prefix, tmp_path / "prefix")
    assert_same_adapter(adapter_files.prefix_folder(tmp_path / "built-prefix"), saved)


def test_llama_base_is_what_transformers_saves(tmp_path: Path) -> None:
    from tests.adapters_factory import save_base, tiny_llama

    saved = save_base(tiny_llama(), tmp_path / "saved")
    built = adapter_files.llama_base(tmp_path / "built")
    assert {p.name for p in built.iterdir()} == {p.name for p in saved.iterdir()}
    assert header(built / "model.safetensors") == header(saved / "model.safetensors")
    for name in ("config.json", "generation_config.json"):
        assert json.loads((built / name).read_text()) == json.loads((saved / name).read_text())


def test_gpt2_base_and_lora_are_what_transformers_and_peft_save(tmp_path: Path) -> None:
    from peft import LoraConfig

    from tests.adapters_factory import save_peft, tiny_gpt2

    saved = tiny_gpt2()
    saved.save_pretrained(tmp_path / "saved")
    built = adapter_files.gpt2_base(tmp_path / "built")
    assert header(built / "model.safetensors") == header(tmp_path / "saved" / "model.safetensors")
    for name in ("config.json", "generation_config.json"):
        assert json.loads((built / name).read_text()) == json.loads((tmp_path / "saved" / name).read_text())
    fields: dict[str, Any] = {"r": 4, "target_modules": ["c_attn"], "fan_in_fan_out": True}
    lora = save_peft(tiny_gpt2(), LoraConfig(**fields), tmp_path / "peft")
    gpt2 = adapter_files.Gpt2()
    assert_same_adapter(
        adapter_files.lora_folder(tmp_path / "lora", model=gpt2, task_type=None, **fields), lora
    )


def test_wider_llama_is_what_transformers_saves(tmp_path: Path) -> None:
    from tests.adapters_factory import sized_llama

    sized_llama(hidden=64, vocab=256).save_pretrained(tmp_path / "saved")
    built = adapter_files.llama_base(
        tmp_path / "built", model=adapter_files.Llama(vocab=256, hidden=64, intermediate=128)
    )
    assert header(built / "model.safetensors") == header(tmp_path / "saved" / "model.safetensors")
    assert json.loads((built / "config.json").read_text()) == json.loads(
        (tmp_path / "saved" / "config.json").read_text()
    )


def test_built_adapters_load_into_peft(tmp_path: Path) -> None:
    """PEFT loads each built folder onto the tiny Llama and runs it."""
    import torch
    from peft import PeftModel

    from tests.adapters_factory import tiny_llama

    root = adapter_files.adapter_set(tmp_path / "set")
    for name in ("lora_a", "lora_b", "lora_dora"):
        model = PeftModel.from_pretrained(tiny_llama(), root / name)
        with torch.no_grad():
            assert torch.isfinite(model(input_ids=torch.tensor([[1, 2, 3]])).logits).all()
