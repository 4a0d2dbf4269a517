"""Trainable parameters: the planner's count equals PEFT's `get_nb_trainable_parameters()` on the
model built from the same config, for every method and several target sets (exact)."""

from __future__ import annotations

from typing import Any

import pytest
from peft.utils.constants import (
    TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING,
)

from registry.errors import BadRequest
from registry.planning import Layout
from registry.planning.trainable import IA3_TARGETS, LORA_TARGETS, trainable
from tests.planning.models import build, with_method

TARGET_SETS: dict[str, list[Any]] = {
    "llama": [None, "all-linear", ["q_proj", "k_proj", "v_proj", "o_proj"], ["gate_proj", "down_proj"]],
    "mistral": [None, "all-linear", ["k_proj", "v_proj"], ["embed_tokens", "q_proj"]],
    "gpt2": [None, "all-linear", ["c_attn", "c_proj"], ["c_fc"]],
    "bert": [None, "all-linear", ["query", "key", "value", "dense"]],
}
CASES = [
    (name, method, targets)
    for name, sets in TARGET_SETS.items()
    for method in ("lora", "dora", "ia3")
    for targets in sets
    if not (method in ("dora", "ia3") and isinstance(targets, list) and "embed_tokens" in targets)
] + [(name, method, None) for name in TARGET_SETS for method in ("prefix", "prompt", "full")]


@pytest.mark.parametrize(("name", "method", "targets"), CASES, ids=str)
def test_trainable_parameters_equal_peft(
    layouts: dict[str, Layout], name: str, method: str, targets: Any
) -> None:
    model = with_method(build(name), name, method, targets)
    if method == "full":
        expected = sum(p.numel() for p in model.parameters())
    else:
        expected = model.get_nb_trainable_parameters()[0]  # type: ignore[operator]
    plan = trainable(layouts[name], method, r=8, targets=targets)
    assert plan.params == expected
    if method not in ("prefix", "prompt", "full"):
        # One tensor per trainable parameter tensor of PEFT's, same sizes (the optimizer sees these).
        sizes = sorted(p.numel() for p in model.parameters() if p.requires_grad)
        assert sorted(plan.tensors) == sizes


def test_defaults_are_pefts() -> None:
    for model_type, targets in LORA_TARGETS.items():
        assert TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING[model_type] == targets
    for model_type, (targets, feedforward) in IA3_TARGETS.items():
        assert TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING[model_type] == targets
        assert TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING[model_type] == feedforward


def test_gpt2_conv1d_is_read_transposed(layouts: dict[str, Layout]) -> None:
    """c_fc stores [in=128, out=512]: LoRA on it is r*(128+512), and IA3 (not feed-forward) scales
    its 512 outputs."""
    c_fc = next(m for m in layouts["gpt2"].modules if m.name.endswith("h.0.mlp.c_fc"))
    assert (c_fc.kind, c_fc.in_features, c_fc.out_features) == ("conv1d", 128, 512)


def test_all_linear_leaves_out_the_head(layouts: dict[str, Layout]) -> None:
    t = trainable(layouts["llama"], "lora", targets="all-linear")
    names = {hit.module.name for hit in t.targets}
    assert "lm_head" not in names and len(names) == 2 * 7


def test_targets_matching_nothing_are_refused(layouts: dict[str, Layout]) -> None:
    with pytest.raises(BadRequest, match="matches no"):
        trainable(layouts["llama"], "lora", targets=["nope"])
