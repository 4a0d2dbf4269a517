"""Our torch-free config validation agrees with PEFT's own config classes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from registry.errors import InvalidAdapter
from registry.formats.gen_peft_schema import schema_from_peft
from registry.formats.peft_config import peft_schema, validate_config


def test_committed_schema_matches_installed_peft() -> None:
    assert peft_schema() == schema_from_peft(), "run: python -m registry.formats.gen_peft_schema"


def peft_accepts(doc: dict[str, Any]) -> bool:
    from peft import PeftConfig

    try:
        PeftConfig.from_peft_type(**doc)
    except (TypeError, ValueError):
        return False
    return True


GOOD = [
    {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], "task_type": "CAUSAL_LM"},
    {"peft_type": "LORA", "r": 4, "target_modules": ".*proj", "use_rslora": True, "use_dora": True},
    {"peft_type": "IA3", "target_modules": ["k_proj", "down_proj"], "feedforward_modules": ["down_proj"]},
    {
        "peft_type": "PREFIX_TUNING",
        "num_virtual_tokens": 10,
        "token_dim": 32,
        "num_layers": 2,
        "num_attention_heads": 4,
        "task_type": "CAUSAL_LM",
    },
    {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 8, "task_type": "CAUSAL_LM"},
    {"peft_type": "LOHA", "r": 4, "alpha": 8, "target_modules": ["q_proj"]},
    {"peft_type": "LOKR", "r": 4, "alpha": 8, "target_modules": ["q_proj"]},
]
BAD = [
    {"peft_type": "LORA", "r": 8, "lora_dropout": 1.5},
    {"peft_type": "LORA", "r": 8, "task_type": "NOT_A_TASK"},
    {"peft_type": "LORA", "r": 8, "rank_pattern": {"q_proj": "big"}},
]


@pytest.mark.parametrize("doc", GOOD, ids=lambda d: d["peft_type"])
def test_accepted_configs_are_accepted_by_peft(doc: dict[str, Any]) -> None:
    facts = validate_config(dict(doc))
    assert facts.peft_type == doc["peft_type"]
    assert peft_accepts(dict(doc))


@pytest.mark.parametrize("doc", BAD)
def test_refused_configs(doc: dict[str, Any]) -> None:
    with pytest.raises(InvalidAdapter):
        validate_config(dict(doc))


def test_real_saved_config_round_trips(adapters_dir: Path) -> None:
    doc = json.loads((adapters_dir / "lora_dora" / "adapter_config.json").read_text())
    facts = validate_config(doc)
    assert (facts.r, facts.use_dora, facts.use_rslora, facts.rank_pattern) == (4, True, True, {"v_proj": 2})
    assert facts.unknown_fields == []
