"""Adapter and base folders written as files, without torch: what PEFT's and transformers'
`save_pretrained` write for the tiny Llama of tests/adapters_factory.py (the same key names,
shapes, dtypes and config), with seeded random values. The registry's own logic (push, pull,
refusals, fit, access) needs valid folders, not training runs: building these takes milliseconds
where training took seconds. tests/formats/test_adapter_files.py pins every folder here to a real
PEFT/transformers save of the same config; numerical tests keep the trained adapters."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file


@dataclass(frozen=True)
class Llama:
    """The shape of a LlamaForCausalLM (tests/adapters_factory.py's tiny_llama by default)."""

    vocab: int = 128
    hidden: int = 32
    intermediate: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    max_positions: int = 64

    auto_mapping = {
        "base_model_class": "LlamaForCausalLM",
        "parent_library": "transformers.models.llama.modeling_llama",
    }
    """What PEFT records of the model class when a config has no task_type."""

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def linear(self) -> dict[str, tuple[str, int, int]]:
        """Each linear module's short name -> (parent, in_features, out_features)."""
        kv = self.kv_heads * self.head_dim
        return {
            "q_proj": ("self_attn", self.hidden, self.hidden),
            "k_proj": ("self_attn", self.hidden, kv),
            "v_proj": ("self_attn", self.hidden, kv),
            "o_proj": ("self_attn", self.hidden, self.hidden),
            "gate_proj": ("mlp", self.hidden, self.intermediate),
            "up_proj": ("mlp", self.hidden, self.intermediate),
            "down_proj": ("mlp", self.intermediate, self.hidden),
        }

    def targets(self, name: str) -> list[tuple[str, int, int]]:
        """(module path, in_features, out_features) of every module named `name`."""
        parent, fan_in, fan_out = self.linear()[name]
        return [(f"model.layers.{i}.{parent}.{name}", fan_in, fan_out) for i in range(self.layers)]


@dataclass(frozen=True)
class Gpt2:
    """The shape of a GPT2LMHeadModel (tests/adapters_factory.py's tiny_gpt2 by default)."""

    vocab: int = 128
    hidden: int = 32
    layers: int = 2
    heads: int = 4
    positions: int = 64

    auto_mapping = {
        "base_model_class": "GPT2LMHeadModel",
        "parent_library": "transformers.models.gpt2.modeling_gpt2",
    }
    """What PEFT records of the model class when a config has no task_type."""

    def targets(self, name: str) -> list[tuple[str, int, int]]:
        h = self.hidden
        shapes = {
            "attn.c_attn": (h, 3 * h),
            "attn.c_proj": (h, h),
            "mlp.c_fc": (h, 4 * h),
            "mlp.c_proj": (4 * h, h),
        }
        return [
            (f"transformer.h.{i}.{path}", fan_in, fan_out)
            for i in range(self.layers)
            for path, (fan_in, fan_out) in shapes.items()
            if path.rsplit(".", 1)[1] == name
        ]


TINY = Llama()


def _version(package: str, default: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return default


def _save(tensors: dict[str, np.ndarray], path: Path) -> None:
    save_file(tensors, str(path), metadata={"format": "pt"})  # what torch's save_pretrained writes


def _card(peft_type: str) -> str:
    """A short stand-in for the model card PEFT writes beside every adapter."""
    tags = f"- 'base_model:adapter:'\n- {peft_type.lower()}\n- transformers"
    return f"---\nbase_model: ''\nlibrary_name: peft\npipeline_tag: text-generation\ntags:\n{tags}\n---\n"


def _write(folder: Path, tensors: dict[str, np.ndarray], config: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _save(tensors, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    (folder / "README.md").write_text(_card(config["peft_type"]))
    return folder


def _common(peft_type: str, **fields: Any) -> dict[str, Any]:
    return {
        "auto_mapping": None,
        "base_model_name_or_path": None,
        "inference_mode": True,
        "modules_to_save": None,
        "peft_type": peft_type,
        "peft_version": _version("peft", "0.21.2"),
        "revision": None,
        "task_type": "CAUSAL_LM",
        **fields,
    }


def lora_config(
    r: int = 8,
    lora_alpha: int = 8,
    target_modules: list[str] | None = None,
    rank_pattern: dict[str, int] | None = None,
    alpha_pattern: dict[str, int] | None = None,
    use_dora: bool = False,
    use_rslora: bool = False,
    lora_dropout: float = 0.0,
    fan_in_fan_out: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """adapter_config.json as PEFT 0.21 writes a LoraConfig with these fields (the rest default)."""
    return _common(
        "LORA",
        alora_invocation_tokens=None,
        alpha_pattern=alpha_pattern or {},
        arrow_config=None,
        bias="none",
        corda_config=None,
        ensure_weight_tying=False,
        eva_config=None,
        exclude_modules=None,
        fan_in_fan_out=fan_in_fan_out,
        init_lora_weights=True,
        kasa_config=None,
        layer_replication=None,
        layers_pattern=None,
        layers_to_transform=None,
        loftq_config={},
        lora_alpha=lora_alpha,
        lora_bias=False,
        lora_dropout=lora_dropout,
        lora_ga_config=None,
        megatron_config=None,
        megatron_core="megatron.core",
        monteclora_config=None,
        qalora_group_size=16,
        r=r,
        rank_pattern=rank_pattern or {},
        target_modules=sorted(target_modules or ["q_proj", "v_proj"]),
        target_parameters=None,
        trainable_token_indices=None,
        use_bdlora=None,
        use_dora=use_dora,
        use_qalora=False,
        use_rslora=use_rslora,
        velora_config=None,
        **extra,
    )


def lora_folder(folder: Path, seed: int = 0, model: Llama | Gpt2 = TINY, **fields: Any) -> Path:
    """A LoRA adapter as PEFT saves one: per layer and target, lora_A (r x in) and lora_B
    (out x r), plus lora_magnitude_vector (out) with DoRA; rank_pattern overrides r by name."""
    config = lora_config(**fields)
    if config["task_type"] is None:
        config["auto_mapping"] = dict(model.auto_mapping)
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for name in config["target_modules"]:
        for path, fan_in, fan_out in model.targets(name):
            r = config["rank_pattern"].get(name, config["r"])
            prefix = f"base_model.model.{path}"
            tensors[f"{prefix}.lora_A.weight"] = _random(rng, (r, fan_in))
            tensors[f"{prefix}.lora_B.weight"] = _random(rng, (fan_out, r))
            if config["use_dora"]:
                tensors[f"{prefix}.lora_magnitude_vector"] = _random(rng, (fan_out,)) + 1
    return _write(folder, tensors, config)


def ia3_folder(
    folder: Path,
    seed: int = 0,
    model: Llama = TINY,
    target_modules: list[str] | None = None,
    feedforward_modules: list[str] | None = None,
) -> Path:
    """An IA3 adapter as PEFT saves one: ia3_l is (out x 1) on attention, (1 x in) on
    feed-forward modules. PEFT's defaults for Llama: k_proj, v_proj, down_proj (feed-forward)."""
    targets = sorted(target_modules or ["down_proj", "k_proj", "v_proj"])
    feedforward = sorted(feedforward_modules if feedforward_modules is not None else ["down_proj"])
    config = _common(
        "IA3",
        exclude_modules=None,
        fan_in_fan_out=False,
        feedforward_modules=feedforward,
        init_ia3_weights=True,
        target_modules=targets,
    )
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in range(model.layers):
        for name in targets:
            parent, fan_in, fan_out = model.linear()[name]
            shape = (1, fan_in) if name in feedforward else (fan_out, 1)
            key = f"base_model.model.model.layers.{layer}.{parent}.{name}.ia3_l"
            tensors[key] = _random(rng, shape) + 1
    return _write(folder, tensors, config)


def prefix_folder(folder: Path, seed: int = 0, model: Llama = TINY, num_virtual_tokens: int = 4) -> Path:
    """A prefix-tuning adapter as PEFT saves one for a causal LM with grouped-query attention:
    prompt_embeddings (tokens x layers * 2 * kv_heads * head_dim)."""
    token_dim = model.kv_heads * model.head_dim
    config = _common(
        "PREFIX_TUNING",
        encoder_hidden_size=token_dim,
        init_weights=None,
        num_attention_heads=model.kv_heads,
        num_layers=model.layers,
        num_transformer_submodules=1,
        num_virtual_tokens=num_virtual_tokens,
        prefix_projection=False,
        token_dim=token_dim,
    )
    rng = np.random.default_rng(seed)
    tensors = {"prompt_embeddings": _random(rng, (num_virtual_tokens, model.layers * 2 * token_dim))}
    return _write(folder, tensors, config)


def llama_base(folder: Path, seed: int = 0, model: Llama = TINY) -> Path:
    """A LlamaForCausalLM folder as transformers 5 saves one (untied embeddings, float32)."""
    rng = np.random.default_rng(seed)
    h = model.hidden
    tensors = {
        "lm_head.weight": _random(rng, (model.vocab, h)),
        "model.embed_tokens.weight": _random(rng, (model.vocab, h)),
        "model.norm.weight": np.ones(h, dtype=np.float32),
    }
    for layer in range(model.layers):
        prefix = f"model.layers.{layer}"
        tensors[f"{prefix}.input_layernorm.weight"] = np.ones(h, dtype=np.float32)
        tensors[f"{prefix}.post_attention_layernorm.weight"] = np.ones(h, dtype=np.float32)
        for name, (parent, fan_in, fan_out) in model.linear().items():
            tensors[f"{prefix}.{parent}.{name}.weight"] = _random(rng, (fan_out, fan_in))
    folder.mkdir(parents=True, exist_ok=True)
    _save(tensors, folder / "model.safetensors")
    transformers = _version("transformers", "5.25.0")
    config = {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "dtype": "float32",
        "eos_token_id": 2,
        "head_dim": model.head_dim,
        "hidden_act": "silu",
        "hidden_size": h,
        "initializer_range": 0.02,
        "intermediate_size": model.intermediate,
        "max_position_embeddings": model.max_positions,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": model.heads,
        "num_hidden_layers": model.layers,
        "num_key_value_heads": model.kv_heads,
        "pad_token_id": None,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-06,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "tie_word_embeddings": False,
        "transformers_version": transformers,
        "use_cache": True,
        "vocab_size": model.vocab,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    generation = {
        "_from_model_config": True,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "output_attentions": False,
        "output_hidden_states": False,
        "transformers_version": transformers,
        "use_cache": True,
    }
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2, sort_keys=True) + "\n")
    return folder


def gpt2_base(folder: Path, seed: int = 0, model: Gpt2 = Gpt2()) -> Path:
    """A GPT2LMHeadModel folder as transformers 5 saves one (tied head, Conv1D weights in x out)."""
    rng = np.random.default_rng(seed)
    h = model.hidden
    tensors = {
        "transformer.wte.weight": _random(rng, (model.vocab, h)),
        "transformer.wpe.weight": _random(rng, (model.positions, h)),
        "transformer.ln_f.weight": np.ones(h, dtype=np.float32),
        "transformer.ln_f.bias": np.zeros(h, dtype=np.float32),
    }
    for i in range(model.layers):
        for norm in ("ln_1", "ln_2"):
            tensors[f"transformer.h.{i}.{norm}.weight"] = np.ones(h, dtype=np.float32)
            tensors[f"transformer.h.{i}.{norm}.bias"] = np.zeros(h, dtype=np.float32)
        for name in ("c_attn", "c_proj", "c_fc"):
            for path, fan_in, fan_out in model.targets(name):
                if path.startswith(f"transformer.h.{i}."):
                    tensors[f"{path}.weight"] = _random(rng, (fan_in, fan_out))
                    tensors[f"{path}.bias"] = np.zeros(fan_out, dtype=np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    _save(tensors, folder / "model.safetensors")
    transformers = _version("transformers", "5.25.0")
    config = {
        "activation_function": "gelu_new",
        "add_cross_attention": False,
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": 50256,
        "dtype": "float32",
        "embd_pdrop": 0.1,
        "eos_token_id": 50256,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_embd": h,
        "n_head": model.heads,
        "n_inner": None,
        "n_layer": model.layers,
        "n_positions": model.positions,
        "pad_token_id": None,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "tie_word_embeddings": True,
        "transformers_version": transformers,
        "use_cache": True,
        "vocab_size": model.vocab,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    generation = {
        "_from_model_config": True,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "output_attentions": False,
        "output_hidden_states": False,
        "transformers_version": transformers,
        "use_cache": True,
    }
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2, sort_keys=True) + "\n")
    return folder


def _random(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.standard_normal(shape) * 0.02).astype(np.float32)


LORA_B: dict[str, Any] = {
    "r": 8,
    "lora_alpha": 16,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
LORA_DORA: dict[str, Any] = {"r": 4, "use_dora": True, "use_rslora": True, "rank_pattern": {"v_proj": 2}}


def adapter_set(root: Path) -> Path:
    """The folders of tests/conftest.py's trained `adapters_dir`, written as files: base, lora_a
    (r 4, alpha 8, q/v), lora_b (r 8, alpha 16, q/k/v/o), lora_dora (DoRA, rsLoRA, v at r 2)."""
    llama_base(root / "base")
    lora_folder(root / "lora_a", seed=1, r=4, lora_alpha=8)
    lora_folder(root / "lora_b", seed=2, **LORA_B)
    lora_folder(root / "lora_dora", seed=3, lora_alpha=8, **LORA_DORA)
    return root
