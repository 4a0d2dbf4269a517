"""Random Llama-shaped model folders and LoRA adapters, written straight to safetensors (no
random init of a module tree), for benchmarks and fault tests that need sizes tests cannot train."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from registry.formats.weights import PREFIX


def llama_config(hidden: int, layers: int, vocab: int, intermediate: int | None = None) -> dict[str, Any]:
    heads = max(1, hidden // 64)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": intermediate or int(hidden * 2.75) // 64 * 64,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": max(1, heads // 4),
        "vocab_size": vocab,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }


def llama_shapes(cfg: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = h // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h)}
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        shapes |= {
            p + "input_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (h, h),
            p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h),
            p + "self_attn.o_proj.weight": (h, h),
            p + "post_attention_layernorm.weight": (h,),
            p + "mlp.gate_proj.weight": (i, h),
            p + "mlp.up_proj.weight": (i, h),
            p + "mlp.down_proj.weight": (h, i),
        }
    shapes |= {"model.norm.weight": (h,), "lm_head.weight": (v, h)}
    return shapes


def write_llama(
    folder: Path, cfg: dict[str, Any], dtype: torch.dtype = torch.bfloat16, shard_bytes: int = 500 * 10**6
) -> Path:
    """A random model in several shards with its index, generated one tensor at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    shapes = llama_shapes(cfg)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    weight_map: dict[str, int] = {}
    total = 0
    for name, shape in shapes.items():
        t = (
            torch.ones(shape, dtype=dtype)
            if len(shape) == 1
            else (torch.randn(shape, generator=g) * 0.02).to(dtype)
        )
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > shard_bytes:
            _save(folder, shards, len(shards) - 1)
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
        total += nbytes
        weight_map[name] = len(shards) - 1
    _save(folder, shards, len(shards) - 1)
    n = len(shards)
    names = [f"model-{k + 1:05d}-of-{n:05d}.safetensors" for k in range(n)]
    for k in range(n):
        (folder / f"part-{k}.safetensors").rename(folder / names[k])
    index = {"metadata": {"total_size": total}, "weight_map": {t: names[k] for t, k in weight_map.items()}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), "utf-8")
    (folder / "config.json").write_text(json.dumps(cfg, indent=2), "utf-8")
    return folder


def _save(folder: Path, shards: list[dict[str, torch.Tensor]], k: int) -> None:
    save_file(shards[k], str(folder / f"part-{k}.safetensors"), metadata={"format": "pt"})
    shards[k].clear()  # keep one shard in memory at a time


def write_lora(
    folder: Path,
    shapes: dict[str, tuple[int, ...]],
    targets: tuple[str, ...] = ("q_proj", "v_proj"),
    r: int = 16,
    dtype: torch.dtype = torch.float32,
    seed: int = 1,
    base_name: str | None = None,
) -> Path:
    """A PEFT LoRA folder with random A and B for every base weight whose leaf is in `targets`."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        module = name.removesuffix(".weight")
        if len(shape) != 2 or module.rsplit(".", 1)[-1] not in targets:
            continue
        out_f, in_f = shape
        tensors[f"{PREFIX}{module}.lora_A.weight"] = (torch.randn(r, in_f, generator=g) / in_f**0.5).to(dtype)
        tensors[f"{PREFIX}{module}.lora_B.weight"] = (torch.randn(out_f, r, generator=g) * 0.01).to(dtype)
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": r,
        "lora_alpha": 2 * r,
        "lora_dropout": 0.0,
        "target_modules": list(targets),
        "base_model_name_or_path": base_name,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2), "utf-8")
    return folder
