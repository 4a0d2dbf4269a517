"""What the 4-bit check measures, module by module: the settings checked (Variant), an adapted
module's update next to the noise 4-bit quantization adds to its weight, the structure bitsandbytes
gives the adapted modules, and the raw material of a pass (Probed).

Its own module, below the check (qlora.py) and its two ways of running the model (qlora_stream.py,
qlora_whole.py), which all use these: before, the two runners imported them from qlora.py, which
imported the runners back (an import cycle hidden inside a function)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from registry.dtypes import qlora_variant_label

BLOCKSIZE = 64
# The verdict's thresholds (README: "4-bit check").
THRESHOLDS: dict[str, float] = {
    # A module's update is drowned below this fraction of the noise NF4 adds to its weight.
    "drowned_ratio": 0.1,
    # KL(adapted fp || adapted nf4) over KL(base fp || base nf4): how much worse quantization
    # hurts with the adapter than without it.
    "warn_kl_ratio": 1.5,
    "fail_kl_ratio": 4.0,
    # Top-1 agreement lost with the adapter, beyond what the base alone loses.
    "warn_top1_drop": 0.05,
    "fail_top1_drop": 0.15,
    # Merging into the 4-bit weights is safe when requantizing loses under half the update.
    "merge_safe_rel_error": 0.5,
}


@dataclass(frozen=True)
class Variant:
    """The bitsandbytes 4-bit settings checked (transformers' BitsAndBytesConfig fields)."""

    quant_type: str = "nf4"
    double_quant: bool = True
    compute_dtype: str = "float32"

    @property
    def label(self) -> str:
        return qlora_variant_label(self.quant_type, self.double_quant, self.compute_dtype)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.label,
            "quant_type": self.quant_type,
            "double_quant": self.double_quant,
            "compute_dtype": self.compute_dtype,
        }

    def bnb_config(self) -> Any:
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=self.quant_type,
            bnb_4bit_use_double_quant=self.double_quant,
            bnb_4bit_compute_dtype=getattr(torch, self.compute_dtype),
        )


def _roundtrip(w: torch.Tensor, variant: Variant) -> torch.Tensor:
    import bitsandbytes.functional as bnbf

    q, state = bnbf.quantize_4bit(
        w.contiguous(),
        blocksize=BLOCKSIZE,
        compress_statistics=variant.double_quant,
        quant_type=variant.quant_type,
    )
    return bnbf.dequantize_4bit(q, state).to(w.dtype)


def _delta(layer: Any, weight: torch.Tensor) -> torch.Tensor | None:
    """The module's update in the base weight's layout, from PEFT's own layer code."""
    if hasattr(layer, "ia3_l") and "default" in layer.ia3_l:
        scale = layer.ia3_l["default"].detach().float()
        if getattr(layer, "fan_in_fan_out", False):
            scale = scale.T
        return weight * scale - weight
    getter = getattr(layer, "get_delta_weight", None)
    if getter is None:
        return None
    try:
        return getter("default").detach().float()
    except (KeyError, AttributeError, RuntimeError):
        return None


def tuner_layers(root: Any) -> dict[str, Any]:
    """PEFT's adapted modules under `root`, by their names in the base model."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {name: mod for name, mod in root.named_modules() if isinstance(mod, BaseTunerLayer)}


def module_stats(name: str, layer: Any, variant: Variant) -> dict[str, Any]:
    """One adapted module: its update next to the 4-bit noise, and what requantizing loses."""
    weight = layer.get_base_layer().weight.detach().float()
    delta = _delta(layer, weight)
    if delta is None or weight.dim() != 2 or delta.shape != weight.shape:
        return {"module": name, "update_norm": None, "noise_norm": None, "note": "no weight delta"}
    # In place where a value is not needed again: each float32 copy of a 5632 x 2048 weight is
    # 46 MB, and the layer-by-layer check's peak memory is a layer plus this.
    dq = _roundtrip(weight, variant)
    noise = float(torch.linalg.norm(weight - dq))
    update = float(torch.linalg.norm(delta))
    merged = dq.add_(delta)
    del delta
    requant_loss = float(torch.linalg.norm(_roundtrip(merged, variant).sub_(merged)))
    ratio = update / noise if noise > 0 else math.inf
    return {
        "module": name,
        "shape": list(weight.shape),
        "update_norm": update,
        "noise_norm": noise,
        "update_to_noise": ratio,
        "drowned": ratio < THRESHOLDS["drowned_ratio"],
        "merge_rel_error": requant_loss / update if update > 0 else None,
    }


def structure_of(quantized_layers: dict[str, Any]) -> dict[str, Any]:
    """Which adapted modules bitsandbytes quantized, which stayed in high precision, and shapes its
    CPU kernels refuse."""
    import bitsandbytes as bnb

    out: dict[str, Any] = {"quantized": [], "high_precision": [], "problems": []}
    for name, layer in sorted(quantized_layers.items()):
        base = layer.get_base_layer()
        if isinstance(base, bnb.nn.Linear4bit):
            out["quantized"].append(name)
            if base.in_features % BLOCKSIZE:
                out["problems"].append(
                    f"{name}: in_features {base.in_features} is not a multiple of the 4-bit block size "
                    f"{BLOCKSIZE} (CPU kernels refuse it)"
                )
        else:
            out["high_precision"].append(name)
    return out


@dataclass
class Probed:
    """What a pass over the model measured: the raw material of the report."""

    modules: list[dict[str, Any]]
    structure: dict[str, Any]
    fp_adapted: torch.Tensor
    fp_plain: torch.Tensor
    q_adapted: torch.Tensor | None = None
    q_plain: torch.Tensor | None = None
    q_error: str | None = None
    """Why the 4-bit paths did not run (bitsandbytes refusing a shape, a kernel missing...)."""
