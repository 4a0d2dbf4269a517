"""A model's tensors from its config.json alone: the architecture instantiated on torch's meta
device (no memory, no weights). What `adapters base add --config` records (client/bases.py) and
the planner's report compares (tests/planning/report.py)."""

from __future__ import annotations

from typing import Any

import torch

from registry.formats.model_folder import is_causal_lm
from registry.tensors.safetensors_stream import TORCH_TO_ST


def meta_shapes(cfg: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (safetensors dtype, shape) of each tensor save_pretrained would write (tied weights
    once)."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    config = AutoConfig.for_model(**cfg)
    auto = AutoModelForCausalLM if is_causal_lm(cfg) else AutoModel
    with torch.device("meta"):
        model = auto.from_config(config)
    state = model.state_dict()
    kept = {name for name, _ in model.named_parameters()}  # remove_duplicate: tied weights once
    kept |= {name for name, _ in model.named_buffers() if name in state}
    return {n: (TORCH_TO_ST.get(t.dtype, "F32"), tuple(t.shape)) for n, t in state.items() if n in kept}
