"""Will this adapter work on an NF4, double-quantized (QLoRA-style) bitsandbytes base?

Four views, then a verdict:
- structure: which target modules bitsandbytes quantizes to 4 bits (Linear layers but lm_head and
  other skipped modules), which stay in high precision, and shapes its kernels refuse;
- per module: ||scale * B @ A||_F next to the quantization noise ||W - dequant(nf4(W))||_F;
- behaviour: the same probe inputs through base + adapter in full precision and on the NF4 base:
  mean KL of the next-token distributions and top-1 agreement, next to the base alone;
- merge safety: dequantize, add the update, requantize: the part of the update that is lost.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

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


def _nf4_roundtrip(w: torch.Tensor) -> torch.Tensor:
    import bitsandbytes.functional as bnbf

    q, state = bnbf.quantize_4bit(
        w.contiguous(), blocksize=BLOCKSIZE, compress_statistics=True, quant_type="nf4"
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


def _tuner_layers(model: Any) -> dict[str, Any]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    inner = model.base_model.model
    return {name: mod for name, mod in inner.named_modules() if isinstance(mod, BaseTunerLayer)}


def module_report(peft_model: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, layer in sorted(_tuner_layers(peft_model).items()):
        weight = layer.get_base_layer().weight.detach().float()
        delta = _delta(layer, weight)
        if delta is None or weight.dim() != 2 or delta.shape != weight.shape:
            out.append({"module": name, "update_norm": None, "noise_norm": None, "note": "no weight delta"})
            continue
        dq = _nf4_roundtrip(weight)
        noise = float(torch.linalg.norm(weight - dq))
        update = float(torch.linalg.norm(delta))
        merged = dq + delta
        requant_loss = float(torch.linalg.norm(_nf4_roundtrip(merged) - merged))
        ratio = update / noise if noise > 0 else math.inf
        out.append(
            {
                "module": name,
                "shape": list(weight.shape),
                "update_norm": update,
                "noise_norm": noise,
                "update_to_noise": ratio,
                "drowned": ratio < THRESHOLDS["drowned_ratio"],
                "merge_rel_error": requant_loss / update if update > 0 else None,
            }
        )
    return out


def _probe_logits(model: Any, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(with adapter, base alone) next-token log-probabilities."""
    with torch.no_grad():
        adapted = model(input_ids=ids).logits.float().log_softmax(-1)
        with model.disable_adapter():
            plain = model(input_ids=ids).logits.float().log_softmax(-1)
    return adapted, plain


def _compare(p: torch.Tensor, q: torch.Tensor) -> dict[str, float]:
    """Mean KL(p || q) over positions and top-1 agreement, from log-probabilities."""
    kl = (p.exp() * (p - q)).sum(-1).mean()
    top1 = (p.argmax(-1) == q.argmax(-1)).float().mean()
    return {"kl": float(kl), "top1_agreement": float(top1)}


def check_4bit(
    base_dir: Path,
    adapter_dir: Path,
    *,
    probe: int = 8,
    probe_length: int = 32,
    seed: int = 0,
    device: str = "cpu",
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, Any]:
    """The full report, with its verdict (pass / warn / fail) and the reasons for it."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    from transformers.utils import logging as hf_logging

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

    step(0.0, "loading the full-precision base")
    fp_base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    fp_base.to(device)  # type: ignore[arg-type]
    fp = PeftModel.from_pretrained(fp_base, adapter_dir).eval()
    vocab = int(fp_base.config.vocab_size)
    ids = torch.randint(0, vocab, (probe, probe_length), generator=torch.Generator().manual_seed(seed)).to(
        device
    )
    step(0.15, "measuring updates against NF4 noise")
    modules = module_report(fp)
    step(0.4, "probing the full-precision model")
    fp_adapted, fp_plain = _probe_logits(fp, ids)
    del fp, fp_base
    gc.collect()

    reasons: list[str] = []
    structure: dict[str, Any] = {"quantized": [], "high_precision": [], "problems": []}
    behaviour: dict[str, Any] | None = None
    step(0.55, "loading the NF4 base")
    try:
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32,
        )
        q_base = AutoModelForCausalLM.from_pretrained(
            base_dir, quantization_config=quant, device_map={"": device}
        ).eval()
        q = PeftModel.from_pretrained(q_base, adapter_dir).eval()
        structure = _structure(q)
        step(0.75, "probing the NF4 model")
        q_adapted, q_plain = _probe_logits(q, ids)
        behaviour = {
            "probe": probe,
            "probe_length": probe_length,
            "adapted": _compare(fp_adapted, q_adapted),
            "base": _compare(fp_plain, q_plain),
            "adapter_effect_kl": _compare(fp_adapted, fp_plain)["kl"],
        }
        del q, q_base
    except Exception as err:  # bitsandbytes refusing a shape, a kernel missing on this device...
        reasons.append(f"the adapter does not run on the NF4 base: {type(err).__name__}: {err}")
    gc.collect()
    step(0.95, "verdict")
    verdict = _verdict(structure, modules, behaviour, reasons)
    merge_errors = [m["merge_rel_error"] for m in modules if m.get("merge_rel_error") is not None]
    return {
        "verdict": verdict,
        "reasons": reasons,
        "thresholds": THRESHOLDS,
        "structure": structure,
        "modules": modules,
        "behaviour": behaviour,
        "merge": {
            "max_rel_error": max(merge_errors, default=None),
            "mean_rel_error": sum(merge_errors) / len(merge_errors) if merge_errors else None,
            "safe": bool(merge_errors) and max(merge_errors) <= THRESHOLDS["merge_safe_rel_error"],
        },
        "device": device,
    }


def _structure(q: Any) -> dict[str, Any]:
    import bitsandbytes as bnb

    out: dict[str, Any] = {"quantized": [], "high_precision": [], "problems": []}
    for name, layer in sorted(_tuner_layers(q).items()):
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


def _verdict(
    structure: dict[str, Any],
    modules: list[dict[str, Any]],
    behaviour: dict[str, Any] | None,
    reasons: list[str],
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
        reasons.append(f"{len(drowned)} module update(s) drown in NF4 noise: {', '.join(drowned[:5])}")
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
