"""The one copy of PEFT's module matching agrees with PEFT's own functions."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from peft.tuners.ia3 import IA3Model
from peft.tuners.tuners_utils import check_target_module_exists

from registry.formats.targets import is_conv1d, is_feedforward, locate_module, module_matches

MODULES = [
    "model.layers.0.self_attn.k_proj",
    "model.layers.1.mlp.down_proj",
    "model.layers.1.mlp.up_proj",
    "transformer.h.0.mlp.c_fc",
    "transformer.h.0.attn.c_attn",
    "down_proj",
    "lm_head",
]
SPECS: list[Any] = [
    ["k_proj", "down_proj"],
    ["proj"],  # a suffix, but not at a dot: PEFT's target rule refuses it, its feed-forward rule not
    ["fc"],
    [r".*\.down_proj"],  # a regex inside a list is a literal name to PEFT
    r".*\.(k_proj|down_proj)",
    r"down_proj",
    r".*mlp.*",
    r"model\.layers\.1\..*",
]


@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize("module", MODULES)
def test_targets_match_as_peft_does(module: str, spec: Any) -> None:
    config = SimpleNamespace(target_modules=spec, target_parameters=None)
    assert module_matches(module, spec) == bool(check_target_module_exists(config, module))


@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize("module", MODULES)
def test_feedforward_matches_as_peft_ia3_does(module: str, spec: Any) -> None:
    config = SimpleNamespace(feedforward_modules=spec)
    assert is_feedforward(module, spec) == IA3Model._check_target_module_feedforward(config, module)


def test_regex_strings_are_not_sets_of_characters() -> None:
    # The drifted copy made set(".*\\.down_proj") and matched single characters.
    assert is_feedforward("model.layers.0.mlp.down_proj", r".*\.down_proj")
    assert not is_feedforward("model.layers.0.self_attn.k_proj", r".*\.down_proj")
    assert not is_feedforward("model.layers.0.mlp.down_proj", None)
    assert module_matches("anything", "all-linear") and not is_feedforward("anything", "all-linear")


def test_locate_and_conv1d() -> None:
    base = {"encoder.layer.0.query", "model.layers.0.q_proj", "other.model.layers.0.q_proj"}
    assert locate_module("bert.encoder.layer.0.query", base) == "encoder.layer.0.query"
    assert locate_module("layers.0.q_proj", base) is None
    assert locate_module("layers.0.q_proj", base, unique_suffix=True) is None  # two candidates
    assert locate_module("layer.0.query", base, unique_suffix=True) == "encoder.layer.0.query"
    assert is_conv1d("gpt2", "transformer.h.0.attn.c_attn")
    assert not is_conv1d("llama", "model.c_proj") and not is_conv1d("gpt2", "transformer.wte")
