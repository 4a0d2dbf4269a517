"""PEFT's rules for which base modules an adapter touches, written once: target and
feed-forward matching, locating an adapter's module in a base, and transformers' Conv1D layout.

Validation (`formats/weights.py`), the fit check (`formats/compatibility.py`) and export
(`tensors/export.py`) all call these; a copy that drifts from PEFT refuses good adapters.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

CONV1D_MODEL_TYPES = {"gpt2"}  # transformers' Conv1D stores weights as [in, out]


def module_matches(module: str, spec: Any, *, feedforward: bool = False) -> bool:
    """Does a PEFT module spec (`target_modules`, or IA3's `feedforward_modules`) name `module`?

    As PEFT 0.21 decides it: a string is a regex that must match the whole module name; a list
    matches a name exactly or as a suffix. For targets (`tuners_utils.check_target_module_exists`)
    the suffix starts at a dot, and the string `"all-linear"` (which PEFT expands to every linear
    layer) matches anything. IA3's feed-forward check (`IA3Model._check_target_module_feedforward`)
    is a bare `str.endswith` and knows no shorthand: `feedforward=True`.
    """
    if spec is None:
        return False
    if isinstance(spec, str):
        if not feedforward and spec.lower() == "all-linear":
            return True
        return re.fullmatch(spec, module) is not None
    if feedforward:
        return any(module.endswith(t) for t in spec)
    return any(module == t or module.endswith("." + t) for t in spec)


def is_feedforward(module: str, feedforward_modules: Any) -> bool:
    """IA3: is `module` feed-forward (its vector scales the layer's input, not its output)?"""
    return module_matches(module, feedforward_modules, feedforward=True)


def locate_module(name: str, modules: Collection[str], *, unique_suffix: bool = False) -> str | None:
    """The base module an adapter's module name denotes: the exact name, else the name without
    leading components (an adapter on BertForSequenceClassification names `bert.encoder...` where
    a BertModel base has `encoder...`); with `unique_suffix`, then the one base module that ends
    with it (a model with a head names `model.layers...`)."""
    parts = name.split(".")
    for i in range(len(parts)):
        candidate = ".".join(parts[i:])
        if candidate in modules:
            return candidate
    if unique_suffix:
        hits = [m for m in modules if m.endswith("." + name)]
        return hits[0] if len(hits) == 1 else None
    return None


def is_conv1d(model_type: str | None, module: str) -> bool:
    """Is this 2-D weight a transformers Conv1D ([in, out], GPT-2's `c_attn`, `c_fc`, ...)?"""
    return model_type in CONV1D_MODEL_TYPES and module.rsplit(".", 1)[-1].startswith("c_")
