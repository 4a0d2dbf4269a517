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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from registry.errors import CheckRefused
from registry.formats.model_folder import is_causal_lm
from registry.tensors.qlora_probe import THRESHOLDS, Probed, Variant


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
