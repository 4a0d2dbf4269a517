"""Will this adapter work on a 4-bit (QLoRA-style) bitsandbytes base? NF4 with double quantization
by default; the variant (quant type, double quantization, compute dtype) is a parameter.

Four views, then a verdict:
- structure: which target modules bitsandbytes quantizes to 4 bits (Linear layers but lm_head and
  other skipped modules), which stay in high precision, and shapes its kernels refuse;
- per module: ||scale * B @ A||_F next to the quantization noise ||W - dequant(nf4(W))||_F;
- behaviour: the same probe inputs through base + adapter in full precision and on the NF4 base:
  mean KL of the next-token distributions and top-1 agreement, next to the base alone;
- merge safety: dequantize, add the update, requantize: the part of the update that is lost.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from registry.entities import qlora_variant_label
from registry.errors import CheckRefused
from registry.formats.model_folder import is_causal_lm

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


def compare(p: torch.Tensor, q: torch.Tensor) -> dict[str, float]:
    """Mean KL(p || q) over positions and top-1 agreement, from log-probabilities."""
    kl = (p.exp() * (p - q)).sum(-1).mean()
    top1 = (p.argmax(-1) == q.argmax(-1)).float().mean()
    return {"kl": float(kl), "top1_agreement": float(top1)}


def probe_ids(vocab: int, probe: int, probe_length: int, seed: int, device: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (probe, probe_length), generator=g).to(device)


def check_4bit(
    base_dir: Path,
    adapter_dir: Path,
    *,
    probe: int = 8,
    probe_length: int = 32,
    seed: int = 0,
    variant: Variant = Variant(),
    device: str = "cpu",
    streamed: bool = True,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, Any]:
    """The full report, with its verdict (pass / warn / fail) and the reasons for it. The model is
    run layer by layer (registry/tensors/qlora_stream.py) when its architecture and the adapter
    allow it, else whole (qlora_whole.py), with a note saying why."""
    from transformers.utils import logging as hf_logging

    from registry.tensors.qlora_stream import probe_streamed, why_not_streamed
    from registry.tensors.qlora_whole import probe_whole

    hf_logging.disable_progress_bar()  # the job reports its own progress

    def step(fraction: float, stage: str) -> None:
        if progress is not None:
            progress(fraction, stage)

    config = json.loads((base_dir / "config.json").read_text("utf-8"))
    if not is_causal_lm(config):
        raise CheckRefused(
            f"check-4bit compares next-token distributions, so it runs on causal language models; this "
            f"base is {config.get('architectures') or config.get('model_type')}",
            architectures=config.get("architectures"),
        )
    notes: list[str] = []
    why_not = why_not_streamed(config, adapter_dir) if streamed else "the whole-model path was asked for"
    ids = probe_ids(int(config["vocab_size"]), probe, probe_length, seed, device)
    if why_not is None:
        probed = probe_streamed(base_dir, adapter_dir, ids, variant, device, step)
    else:
        notes.append(f"run on the whole model, not layer by layer: {why_not}")
        probed = probe_whole(base_dir, adapter_dir, ids, variant, device, step)
    return _report(
        probed, variant, probe, probe_length, device, "layers" if why_not is None else "whole", notes
    )


def _report(
    probed: Probed, variant: Variant, probe: int, probe_length: int, device: str, path: str, notes: list[str]
) -> dict[str, Any]:
    reasons: list[str] = []
    behaviour: dict[str, Any] | None = None
    if probed.q_adapted is not None and probed.q_plain is not None:
        behaviour = {
            "probe": probe,
            "probe_length": probe_length,
            "adapted": compare(probed.fp_adapted, probed.q_adapted),
            "base": compare(probed.fp_plain, probed.q_plain),
            "adapter_effect_kl": compare(probed.fp_adapted, probed.fp_plain)["kl"],
        }
    else:
        reasons.append(f"the adapter does not run on the {variant.quant_type.upper()} base: {probed.q_error}")
    modules = sorted(probed.modules, key=lambda m: str(m["module"]))
    verdict = _verdict(probed.structure, modules, behaviour, reasons, variant)
    merge_errors = [m["merge_rel_error"] for m in modules if m.get("merge_rel_error") is not None]
    return {
        "verdict": verdict,
        "variant": variant.as_dict(),
        "reasons": reasons,
        "thresholds": THRESHOLDS,
        "structure": probed.structure,
        "modules": modules,
        "behaviour": behaviour,
        "merge": {
            "max_rel_error": max(merge_errors, default=None),
            "mean_rel_error": sum(merge_errors) / len(merge_errors) if merge_errors else None,
            "safe": bool(merge_errors) and max(merge_errors) <= THRESHOLDS["merge_safe_rel_error"],
        },
        "device": device,
        "path": path,
        "notes": notes,
    }


def _verdict(
    structure: dict[str, Any],
    modules: list[dict[str, Any]],
    behaviour: dict[str, Any] | None,
    reasons: list[str],
    variant: Variant,
) -> str:
    """Append the reasons; fail beats warn beats pass."""
    level = 0
    if behaviour is None:
        return "fail"
    if structure["problems"]:
        reasons.extend(structure["problems"])
        level = max(level, 1)
    drowned = [m["module"] for m in modules if m.get("drowned")]
    if drowned:
        reasons.append(
            f"{len(drowned)} module update(s) drown in {variant.quant_type.upper()} noise: "
            f"{', '.join(drowned[:5])}"
        )
        level = max(level, 1)
    adapted, base = behaviour["adapted"], behaviour["base"]
    kl_ratio = adapted["kl"] / max(base["kl"], 1e-9)
    top1_drop = base["top1_agreement"] - adapted["top1_agreement"]
    behaviour["kl_ratio"] = kl_ratio
    behaviour["top1_drop"] = top1_drop
    if kl_ratio > THRESHOLDS["fail_kl_ratio"] or top1_drop > THRESHOLDS["fail_top1_drop"]:
        reasons.append(
            f"4-bit error with the adapter is {kl_ratio:.2f}x the base's; top-1 drop {top1_drop:.3f}"
        )
        level = 2
    elif kl_ratio > THRESHOLDS["warn_kl_ratio"] or top1_drop > THRESHOLDS["warn_top1_drop"]:
        reasons.append(
            f"4-bit error with the adapter is {kl_ratio:.2f}x the base's; top-1 drop {top1_drop:.3f}"
        )
        level = max(level, 1)
    if behaviour["adapter_effect_kl"] < adapted["kl"]:
        reasons.append(
            "quantization moves the outputs more than the adapter does "
            f"(KL {adapted['kl']:.3g} vs adapter effect {behaviour['adapter_effect_kl']:.3g})"
        )
        level = max(level, 1)
    return ("pass", "warn", "fail")[level]
