"""The 4-bit check on whole models: the base loaded in float32 and again through transformers'
BitsAndBytesConfig, each with the adapter through PeftModel. Memory is the whole float32 model
(6.4 GiB of RSS for a 2 GB bf16 base), so this runs only where the layer-by-layer pass cannot (an
architecture it does not know, prompt-learning adapters...), and the tests hold the streamed pass
to its numbers."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from registry.tensors.qlora_probe import Probed, Variant, module_stats, structure_of, tuner_layers


def _log_probs(model: Any, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(with adapter, base alone) next-token log-probabilities."""
    with torch.no_grad():
        adapted = model(input_ids=ids).logits.float().log_softmax(-1)
        with model.disable_adapter():
            plain = model(input_ids=ids).logits.float().log_softmax(-1)
    return adapted, plain


def probe_whole(
    base_dir: Path,
    adapter_dir: Path,
    ids: torch.Tensor,
    variant: Variant,
    device: str,
    step: Callable[[float, str], None],
) -> Probed:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    step(0.0, "loading the full-precision base")
    fp_base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    fp_base.to(device)  # type: ignore[arg-type]
    fp = PeftModel.from_pretrained(fp_base, adapter_dir).eval()
    step(0.15, "measuring updates against 4-bit noise")
    layers = tuner_layers(fp.base_model.model)
    modules = [module_stats(name, layer, variant) for name, layer in sorted(layers.items())]
    step(0.4, "probing the full-precision model")
    fp_adapted, fp_plain = _log_probs(fp, ids)
    del fp, fp_base, layers
    gc.collect()
    probed = Probed(modules, {"quantized": [], "high_precision": [], "problems": []}, fp_adapted, fp_plain)
    step(0.55, f"loading the {variant.label} base")
    try:
        q_base = AutoModelForCausalLM.from_pretrained(
            base_dir, quantization_config=variant.bnb_config(), device_map={"": device}
        ).eval()
        q = PeftModel.from_pretrained(q_base, adapter_dir).eval()
        probed.structure = structure_of(tuner_layers(q.base_model.model))
        step(0.75, f"probing the {variant.label} model")
        probed.q_adapted, probed.q_plain = _log_probs(q, ids)
        del q, q_base
    except Exception as err:  # bitsandbytes refusing a shape, a kernel missing on this device...
        probed.q_error = f"{type(err).__name__}: {err}"
    gc.collect()
    step(0.95, "verdict")
    return probed
