"""Load a PEFT LoRA adapter folder into per-module factors (A, B) and scalings, and write one back."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from registry.errors import InvalidAdapter
from registry.formats.weights import LORA_FACTOR_RE, PREFIX, pattern_value


@dataclass
class LoraModuleFactors:
    """One module's factors, flattened to 2-D: delta = scale * B @ A with A [r, k], B [d, r]."""

    a: torch.Tensor
    b: torch.Tensor
    scale: float
    a_shape: tuple[int, ...]
    b_shape: tuple[int, ...]
    embedding: bool = False

    @property
    def rank(self) -> int:
        return int(self.a.shape[0])


@dataclass
class LoraAdapter:
    config: dict[str, Any]
    modules: dict[str, LoraModuleFactors]
    dtype: torch.dtype
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    """Tensors that are not LoRA factors (modules_to_save, DoRA magnitudes), by full name."""


def module_scale(config: dict[str, Any], module: str, rank: int) -> float:
    """PEFT's scaling: alpha / r, or alpha / sqrt(r) with rslora; alpha_pattern overrides alpha."""
    alpha = float(pattern_value(module, config.get("alpha_pattern") or {}, config.get("lora_alpha", 8)))
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def load_lora(folder: Path, device: str = "cpu") -> LoraAdapter:
    """Read adapter_config.json and adapter_model.safetensors (never a pickle); factors go to
    `device` in float32."""
    config = json.loads((folder / "adapter_config.json").read_text("utf-8"))
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise InvalidAdapter(
            f"{folder}: peft_type {config.get('peft_type')} is not LORA", peft_type=config.get("peft_type")
        )
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    extra: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        m = LORA_FACTOR_RE.match(name)
        if m is None:
            extra[name] = t
            continue
        pairs.setdefault(m["module"].removeprefix(PREFIX), {})[m["kind"]] = t
    modules = {}
    dtype = next(iter(tensors.values())).dtype if tensors else torch.float32
    for module, pair in sorted(pairs.items()):
        embedding = "lora_embedding_A" in pair
        a = pair["lora_embedding_A" if embedding else "lora_A"]
        b = pair["lora_embedding_B" if embedding else "lora_B"]
        rank = int(a.shape[0])
        modules[module] = LoraModuleFactors(
            a=a.reshape(rank, -1).to(device, torch.float32),
            b=(b.reshape(b.shape[0], rank) if b.dim() > 2 else b).to(device, torch.float32),
            scale=module_scale(config, module, rank),
            a_shape=tuple(a.shape),
            b_shape=tuple(b.shape),
            embedding=embedding,
        )
    return LoraAdapter(config, modules, dtype, extra)


def factor_names(module: str, embedding: bool) -> tuple[str, str]:
    if embedding:
        return f"{PREFIX}{module}.lora_embedding_A", f"{PREFIX}{module}.lora_embedding_B"
    return f"{PREFIX}{module}.lora_A.weight", f"{PREFIX}{module}.lora_B.weight"


def save_lora(
    folder: Path,
    config: dict[str, Any],
    modules: dict[str, LoraModuleFactors],
    dtype: torch.dtype,
    extra: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write a standard PEFT LoRA folder. Scaling is folded into B, so alpha = rank per module."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    ranks = {name: f.rank for name, f in modules.items()}
    r = max(ranks.values())
    for name, f in modules.items():
        a_name, b_name = factor_names(name, f.embedding)
        a_shape = (f.rank, *f.a_shape[1:])
        b_shape = (f.b_shape[0], f.rank, *f.b_shape[2:])
        tensors[a_name] = f.a.reshape(a_shape).to("cpu", dtype).contiguous()
        tensors[b_name] = (f.b * f.scale).reshape(b_shape).to("cpu", dtype).contiguous()
    tensors.update(extra or {})
    out_config = dict(config)
    out_config.update(
        r=r,
        lora_alpha=r,
        use_rslora=False,
        use_dora=False,
        rank_pattern={n: k for n, k in ranks.items() if k != r},
        alpha_pattern={n: k for n, k in ranks.items() if k != r},
        # Full module names: PEFT matches them exactly, so no other module of the base gets a LoRA.
        target_modules=sorted(modules),
        layers_to_transform=None,
        layers_pattern=None,
        exclude_modules=None,
    )
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    (folder / "adapter_config.json").write_text(
        json.dumps(out_config, indent=2, sort_keys=True) + "\n", "utf-8"
    )
