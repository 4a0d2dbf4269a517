"""The 4-bit check layer by layer: four hidden states carried through the decoder layers, each
layer built from its own tensors (registry/tensors/layer_stream.py) once in float32 and once as
bitsandbytes 4-bit, the adapter injected into each by PEFT's own code, then dropped.

Paths: float32 + adapter, float32 base alone, 4-bit + adapter, 4-bit base alone (adapters switched
off as PeftModel.disable_adapter does). The per-module measurements (update vs 4-bit noise, merge
loss) are taken on the float32 layer while it is there. Peak memory is a float32 layer, its 4-bit
twin, the probe activations and the head, whatever the depth of the model.
"""

from __future__ import annotations

import copy
import ctypes
import gc
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from registry.formats.weights import PREFIX
from registry.tensors.layer_stream import FAMILIES, LayeredModel
from registry.tensors.qlora_probe import Probed, Variant, module_stats, structure_of, tuner_layers

ADAPTER = "default"
LAYERWISE_TYPES = ("LORA", "IA3")
"""Adapter types whose layers are independent of each other, tested against the whole model."""


def why_not_streamed(config: dict[str, Any], adapter_dir: Path) -> str | None:
    """None when the layer-by-layer pass applies; else why the whole model must be loaded."""
    from peft.utils import load_peft_weights

    model_type = config.get("model_type")
    if not LayeredModel.supports(model_type):
        return f"the {model_type} architecture is not one it knows ({', '.join(sorted(FAMILIES))})"
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text("utf-8"))
    peft_config = _peft_config(adapter_dir)
    peft_type = str(adapter_config.get("peft_type", "")).upper()
    if peft_config.is_prompt_learning or peft_config.is_adaption_prompt:
        return f"{peft_type} adapters change the inputs, not the layers"
    if peft_type not in LAYERWISE_TYPES:
        # Others may share state across layers (VeRA's shared A and B): never split them unchecked.
        return f"it handles {' and '.join(LAYERWISE_TYPES)} adapters (with DoRA), not {peft_type}"
    if adapter_config.get("modules_to_save"):
        return "the adapter replaces whole modules (modules_to_save)"
    if adapter_config.get("layer_replication"):
        return "the adapter rebuilds the list of layers (layer_replication)"
    if adapter_config.get("alora_invocation_tokens"):
        return "activated LoRA needs the whole model's input ids (alora_invocation_tokens)"
    layers = FAMILIES[str(model_type)].layers + "."
    for key in load_peft_weights(str(adapter_dir), device="cpu"):
        if not key.removeprefix(PREFIX).startswith(layers):
            return f"the adapter changes {key.removeprefix(PREFIX)}, outside the decoder layers"
    return None


def _peft_config(adapter_dir: Path) -> Any:
    from peft import PeftConfig
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    return PEFT_TYPE_TO_CONFIG_MAPPING[PeftConfig._get_peft_type(str(adapter_dir))].from_pretrained(
        str(adapter_dir)
    )


def _adapt(holder: nn.Module, peft_config: Any, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Inject the adapter into one layer as PeftModel.from_pretrained does (adapter weights cast up
    to float32, then loaded); its tuner layers by name."""
    from peft import inject_adapter_in_model, set_peft_model_state_dict
    from peft.tuners.tuners_utils import cast_adapter_dtype

    config = copy.deepcopy(peft_config)
    config.inference_mode = True
    inject_adapter_in_model(config, holder, adapter_name=ADAPTER)  # sets holder.peft_config too
    cast_adapter_dtype(holder, ADAPTER, autocast_adapter_dtype=True)
    set_peft_model_state_dict(holder, state, adapter_name=ADAPTER)
    return tuner_layers(holder)


def _give_back_memory() -> None:
    """Free a dropped layer now (PEFT's modules hold reference cycles) and hand glibc's freed heap
    back: without it RSS crept up by ~50 MB a layer on the bench model (freed blocks under
    glibc's 32 MB mmap threshold stay in the heap)."""
    gc.collect()
    _trim()


def _trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _switch(layers: dict[str, Any], on: bool) -> None:
    for layer in layers.values():
        layer.enable_adapters(on)


class _Paths:
    """A pair of hidden states (with the adapter, base alone) in one precision."""

    def __init__(self, model: LayeredModel, ids: torch.Tensor, dtype: torch.dtype) -> None:
        self.model, self.dtype = model, dtype
        self.position_ids = model.position_ids(ids)
        self.adapted = model.embed(ids, dtype)
        self.plain = self.adapted.clone()
        self.mask = model.masks(self.adapted, self.position_ids)
        self.rotary = model.rotary(self.adapted, self.position_ids)

    def step(self, index: int, layer: nn.Module, tuners: dict[str, Any]) -> None:
        run = self.model.run_layer
        with torch.no_grad():
            self.adapted = run(layer, self.adapted, self.mask(index), self.position_ids, self.rotary)
            _switch(tuners, False)
            self.plain = run(layer, self.plain, self.mask(index), self.position_ids, self.rotary)
            _switch(tuners, True)

    def head(self) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return self.model.head(self.adapted, self.dtype), self.model.head(self.plain, self.dtype)


def probe_streamed(
    base_dir: Path,
    adapter_dir: Path,
    ids: torch.Tensor,
    variant: Variant,
    device: str,
    step: Callable[[float, str], None],
) -> Probed:
    from peft.utils import load_peft_weights

    model = LayeredModel(base_dir, device)
    peft_config = _peft_config(adapter_dir)
    weights = {
        k.removeprefix(PREFIX): v for k, v in load_peft_weights(str(adapter_dir), device=device).items()
    }
    quant = variant.bnb_config()
    fp = _Paths(model, ids, torch.float32)
    q: _Paths | None = _Paths(model, ids, model.checkpoint_dtype)
    modules: list[dict[str, Any]] = []
    structure: dict[str, list[str]] = {"quantized": [], "high_precision": [], "problems": []}
    q_error: str | None = None
    n = model.num_layers
    for i in range(n):
        step(0.9 * i / n, f"layer {i + 1}/{n}")
        prefix = model.layer_prefix(i)
        state = {k: v for k, v in weights.items() if k.startswith(prefix)}
        fp_layer = model.layer(i, torch.float32)
        fp_holder = model.holder(i, fp_layer)
        tuners = _adapt(fp_holder, peft_config, state)
        fp.step(i, fp_layer, tuners)
        # Smallest first, each float32 weight dropped once measured: the measurement's temporaries
        # (a few copies of the weight) then meet less of the layer (with module_stats working in
        # place: peak RSS 1031 -> 829 MiB on two layers of the bench model).
        for name, tuner in sorted(tuners.items(), key=lambda kv: kv[1].get_base_layer().weight.numel()):
            modules.append(module_stats(name, tuner, variant))
            tuner.get_base_layer().weight = nn.Parameter(torch.empty(0), requires_grad=False)
            _trim()
        del fp_layer, fp_holder, tuners
        _give_back_memory()
        if q is None:
            continue
        try:
            q_layer = model.layer_4bit(i, quant)
            q_tuners = _adapt(model.holder(i, q_layer, quantized=True), peft_config, state)
            for part, names in structure_of(q_tuners).items():  # not the layers: they go
                structure[part].extend(names)
            q.step(i, q_layer, q_tuners)
            del q_layer, q_tuners
            _give_back_memory()
        except Exception as err:  # bitsandbytes refusing a shape, a kernel missing on this device...
            q_error, q = f"{type(err).__name__}: {err}", None
    step(0.9, "final norm and head")
    fp_adapted, fp_plain = fp.head()
    structure = {part: sorted(names) for part, names in structure.items()}
    probed = Probed(modules, dict(structure), fp_adapted, fp_plain, q_error=q_error)
    if q is not None:
        probed.q_adapted, probed.q_plain = q.head()
    step(0.95, "verdict")
    return probed
