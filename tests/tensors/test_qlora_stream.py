"""The layer-by-layer 4-bit check gives the whole-model check's answers (transformers'
BitsAndBytesConfig model + PeftModel, kept as registry/tensors/qlora_whole.py): every figure within
1e-5 relative, the same verdict, reasons and structure, on Llama, Mistral (GQA, sliding window),
Qwen2 (q/k/v biases) and GPT-2 (Conv1D), for several 4-bit variants."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig
from transformers import PreTrainedModel

from registry.tensors.qlora import Variant, check_4bit
from tests.adapters_factory import VOCAB, save_peft

pytestmark = pytest.mark.models  # builds and quantizes real models

REL = 1e-5
DEFAULT = Variant()
IGNORED = {"path", "notes"}  # how the report was computed, not what it says


def _llama() -> PreTrainedModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(cfg)


def _mistral() -> PreTrainedModel:
    from transformers import MistralConfig, MistralForCausalLM

    cfg = MistralConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention
        max_position_embeddings=64,
        sliding_window=8,  # shorter than the probes: the sliding mask matters
    )
    return MistralForCausalLM(cfg)


def _qwen2() -> PreTrainedModel:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    return Qwen2ForCausalLM(cfg)


def _gpt2() -> PreTrainedModel:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64))


LINEAR_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]
ARCHS: dict[str, tuple[Callable[[], PreTrainedModel], list[str], bool]] = {
    "llama": (_llama, LINEAR_TARGETS, False),
    "mistral": (_mistral, LINEAR_TARGETS, False),
    "qwen2": (_qwen2, LINEAR_TARGETS, False),
    "gpt2": (_gpt2, ["c_attn", "c_proj", "c_fc"], True),
}


def build(root: Path, arch: str, dtype: torch.dtype = torch.float32) -> tuple[Path, Path]:
    """A random base (in several shards) and a LoRA with non-zero B, so the update matters."""
    make, targets, conv1d = ARCHS[arch]
    torch.manual_seed(0)
    base = make().eval()
    base.to(dtype).save_pretrained(root / "base", max_shard_size="100KB")
    torch.manual_seed(1)
    lora = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=targets,
        init_lora_weights=False,  # random A and B
        fan_in_fan_out=conv1d,
        task_type="CAUSAL_LM",
    )
    save_peft(make().eval(), lora, root / "lora")
    return root / "base", root / "lora"


class Built:
    """Each architecture's base and LoRA (build(), float32) made once for the module, and the
    default variant's streamed report on them (as both() computes it) made once: several tests
    read the same pair, and none of them writes to it (the tests that change an adapter, or need
    a bf16 base, build their own)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pairs: dict[str, tuple[Path, Path]] = {}
        self.reports: dict[str, dict[str, Any]] = {}

    def __call__(self, arch: str) -> tuple[Path, Path]:
        if arch not in self.pairs:
            self.pairs[arch] = build(self.root / arch, arch)
        return self.pairs[arch]

    def default_streamed(self, arch: str) -> dict[str, Any]:
        if arch not in self.reports:
            base, lora = self(arch)
            self.reports[arch] = check_4bit(base, lora, variant=DEFAULT, probe=4, probe_length=24)
        return self.reports[arch]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return Built(tmp_path_factory.mktemp("qlora-built"))


def assert_same(streamed: Any, whole: Any, where: str = "report") -> None:
    if isinstance(whole, dict):
        assert isinstance(streamed, dict), where
        assert set(streamed) - IGNORED == set(whole) - IGNORED, where
        for key in set(whole) - IGNORED:
            assert_same(streamed[key], whole[key], f"{where}.{key}")
    elif isinstance(whole, list):
        assert isinstance(streamed, list) and len(streamed) == len(whole), where
        for i, (s, w) in enumerate(zip(streamed, whole, strict=True)):
            assert_same(s, w, f"{where}[{i}]")
    elif isinstance(whole, float) and not isinstance(whole, bool):
        assert isinstance(streamed, float), where
        assert math.isclose(streamed, whole, rel_tol=REL, abs_tol=1e-12), f"{where}: {streamed} vs {whole}"
    else:
        assert streamed == whole, where


def both(
    base: Path, lora: Path, variant: Variant = DEFAULT, **kw: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    streamed = check_4bit(base, lora, variant=variant, probe=4, probe_length=24, **kw)
    whole = check_4bit(base, lora, variant=variant, probe=4, probe_length=24, streamed=False, **kw)
    return streamed, whole


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_the_streamed_check_answers_as_the_whole_model(built: Built, arch: str) -> None:
    base, lora = built(arch)
    streamed = built.default_streamed(arch)  # both(base, lora)'s streamed half
    whole = check_4bit(base, lora, variant=DEFAULT, probe=4, probe_length=24, streamed=False)
    assert streamed["path"] == "layers" and streamed["notes"] == []
    assert whole["path"] == "whole"
    assert_same(streamed, whole)
    # A comparison that cannot fail proves nothing: the figures are real and the adapter matters.
    b = streamed["behaviour"]
    assert b is not None and b["adapted"]["kl"] > 0 and b["base"]["kl"] > 0 and b["adapter_effect_kl"] > 0
    assert streamed["structure"]["quantized"] and all(m["update_norm"] > 0 for m in streamed["modules"])
    layers = 3 if arch == "llama" else 2
    assert len(streamed["modules"]) == layers * len(ARCHS[arch][1]) + (layers if arch == "gpt2" else 0)


@pytest.mark.parametrize(
    ("arch", "variant"),
    [
        ("llama", Variant("fp4", True, "float32")),
        ("llama", Variant("nf4", False, "bfloat16")),
        ("gpt2", Variant("fp4", False, "float32")),
        ("qwen2", Variant("fp4", True, "bfloat16")),
    ],
)
def test_each_variant_is_checked_as_named(built: Built, arch: str, variant: Variant) -> None:
    base, lora = built(arch)
    streamed, whole = both(base, lora, variant)
    assert_same(streamed, whole)
    assert streamed["variant"] == {
        "name": variant.label,
        "quant_type": variant.quant_type,
        "double_quant": variant.double_quant,
        "compute_dtype": variant.compute_dtype,
    }
    # The variant changes the measurements: it was really applied. (Each case differs from the
    # default in its quant type or double quantization: bitsandbytes 0.50's CPU 4-bit matmul
    # computes in the input's dtype whatever compute_dtype says, and transformers' whole model
    # measures the same, so a variant differing only in compute dtype has the default's figures
    # on CPU. nf4 + double quant + bfloat16 measured exactly the default's base KL on Llama and
    # Qwen2, both paths.)
    assert (variant.quant_type, variant.double_quant) != (DEFAULT.quant_type, DEFAULT.double_quant)
    default = built.default_streamed(arch)  # check_4bit(base, lora, probe=4, probe_length=24)
    assert default["behaviour"]["base"]["kl"] != streamed["behaviour"]["base"]["kl"]


@pytest.mark.parametrize("kind", ["ia3", "dora"])
def test_ia3_and_dora_stream_as_the_whole_model(built: Built, tmp_path: Path, kind: str) -> None:
    from peft import IA3Config

    base, _ = built("llama")
    config: Any = (
        IA3Config(
            target_modules=["k_proj", "down_proj"], feedforward_modules=["down_proj"], init_ia3_weights=False
        )
        if kind == "ia3"
        else LoraConfig(r=4, target_modules=["q_proj", "up_proj"], use_dora=True, init_lora_weights=False)
    )
    torch.manual_seed(2)
    save_peft(_llama().eval(), config, tmp_path / kind)
    streamed, whole = both(base, tmp_path / kind)
    assert streamed["path"] == "layers"
    assert_same(streamed, whole)
    assert streamed["behaviour"]["adapter_effect_kl"] > 0


def test_a_bf16_base_keeps_its_dtype_on_the_4bit_path(tmp_path: Path) -> None:
    # transformers loads the unquantized parts of a 4-bit model in the checkpoint's dtype.
    base, lora = build(tmp_path, "llama", torch.bfloat16)
    streamed, whole = both(base, lora)
    assert_same(streamed, whole)


def test_prompt_learning_falls_back_to_the_whole_model_with_a_note(qlora_dir: Path) -> None:
    report = check_4bit(qlora_dir / "base", qlora_dir / "prefix", probe=2, probe_length=8)
    assert report["path"] == "whole"
    assert "PREFIX_TUNING adapters change the inputs" in report["notes"][0]
    assert report["behaviour"] is not None and report["modules"] == []


def test_an_unknown_architecture_falls_back_with_a_note(tmp_path: Path) -> None:
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(0)
    cfg = OPTConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        ffn_dim=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        word_embed_proj_dim=64,
        max_position_embeddings=64,
    )
    OPTForCausalLM(cfg).save_pretrained(tmp_path / "base")
    save_peft(
        OPTForCausalLM(cfg),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"),
        tmp_path / "lora",
    )
    report = check_4bit(tmp_path / "base", tmp_path / "lora", probe=2, probe_length=8)
    assert report["path"] == "whole" and "opt architecture is not one it knows" in report["notes"][0]
    assert report["behaviour"] is not None and len(report["modules"]) == 4


def test_an_adapter_on_the_head_falls_back(built: Built, tmp_path: Path) -> None:
    base, _ = built("llama")
    save_peft(
        _llama(),
        LoraConfig(r=4, target_modules=["q_proj", "lm_head"], init_lora_weights=False, task_type="CAUSAL_LM"),
        tmp_path / "head",
    )
    report = check_4bit(base, tmp_path / "head", probe=2, probe_length=8)
    assert report["path"] == "whole" and "lm_head" in report["notes"][0]


def test_the_4bit_layers_are_adapted_by_peft_s_own_bitsandbytes_layers(tmp_path: Path) -> None:
    # PEFT picks its LoRA layer class from the model's 4-bit mark; the generic one adds the update
    # in another dtype order, which changes bf16 results (caught by bench/check4bit.py's bf16 model).
    from peft import PeftModel
    from peft.utils import load_peft_weights
    from transformers import AutoModelForCausalLM

    from registry.tensors.layer_stream import LayeredModel
    from registry.tensors.qlora_probe import tuner_layers
    from registry.tensors.qlora_stream import _adapt, _peft_config

    base, lora = build(tmp_path, "llama", torch.bfloat16)
    quant = DEFAULT.bnb_config()
    whole = AutoModelForCausalLM.from_pretrained(base, quantization_config=quant, device_map={"": "cpu"})
    reference = tuner_layers(PeftModel.from_pretrained(whole, lora).base_model.model)
    model = LayeredModel(base)
    state = {k.removeprefix("base_model.model."): v for k, v in load_peft_weights(str(lora)).items()}
    layer = model.holder(1, model.layer_4bit(1, quant), quantized=True)
    got = _adapt(
        layer, _peft_config(lora), {k: v for k, v in state.items() if k.startswith("model.layers.1.")}
    )
    expected = {name: type(t) for name, t in reference.items() if name.startswith("model.layers.1.")}
    assert {name: type(t) for name, t in got.items()} == expected
    assert {t.__name__ for t in expected.values()} == {"Linear4bit"}


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_the_head_cast_in_blocks_answers_as_the_whole_model(
    built: Built, arch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tiny vocabulary fits in one block of head rows; blocks of 48 make the loop run, ragged
    last block included, and must change nothing."""
    from registry.tensors import layer_stream

    monkeypatch.setattr(layer_stream, "HEAD_ROWS", 48)
    assert VOCAB % 48 != 0 and VOCAB > 48
    base, lora = built(arch)
    streamed, whole = both(base, lora)
    assert streamed["path"] == "layers"
    assert_same(streamed, whole)


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("layer_replication", [[0, 2], [1, 3]], "layer_replication"),
        ("alora_invocation_tokens", [1, 2], "alora_invocation_tokens"),
    ],
)
def test_lora_that_reshapes_the_model_falls_back(tmp_path: Path, field: str, value: Any, why: str) -> None:
    import json

    from registry.tensors.qlora_stream import why_not_streamed

    base, lora = build(tmp_path, "llama")
    config = json.loads((lora / "adapter_config.json").read_text())
    assert why_not_streamed(json.loads((base / "config.json").read_text()), lora) is None
    config[field] = value
    (lora / "adapter_config.json").write_text(json.dumps(config))
    reason = why_not_streamed(json.loads((base / "config.json").read_text()), lora)
    assert reason is not None and why in reason
