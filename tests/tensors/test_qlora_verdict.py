"""The 4-bit check's verdict: each threshold pinned, just below and just above it (no model)."""

from __future__ import annotations

from typing import Any

import pytest

from registry.tensors.qlora import THRESHOLDS, Variant, _verdict

EPS = 1e-6


def verdict(
    kl_ratio: float = 1.0,
    top1_drop: float = 0.0,
    drowned: bool = False,
    problems: list[str] | None = None,
    effect_kl: float = 1.0,
    behaviour: bool = True,
) -> tuple[str, list[str], dict[str, Any] | None]:
    """A verdict on made-up measurements: the base's KL is 0.01, the adapted one kl_ratio times it."""
    base_kl = 0.01
    b: dict[str, Any] | None = (
        {
            "base": {"kl": base_kl, "top1_agreement": 0.9},
            "adapted": {"kl": base_kl * kl_ratio, "top1_agreement": 0.9 - top1_drop},
            "adapter_effect_kl": effect_kl,
        }
        if behaviour
        else None
    )
    reasons: list[str] = []
    modules = [{"module": "model.layers.0.self_attn.q_proj", "drowned": drowned}]
    return _verdict({"problems": problems or []}, modules, b, reasons, Variant()), reasons, b


def test_a_clean_report_passes() -> None:
    got, reasons, b = verdict()
    assert got == "pass" and reasons == []
    assert b is not None and b["kl_ratio"] == pytest.approx(1.0) and b["top1_drop"] == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("warn", "fail", "field"),
    [("warn_kl_ratio", "fail_kl_ratio", "kl_ratio"), ("warn_top1_drop", "fail_top1_drop", "top1_drop")],
)
def test_behaviour_thresholds(warn: str, fail: str, field: str) -> None:
    def at(value: float) -> str:
        return verdict(**{field: value})[0]

    assert at(THRESHOLDS[warn] - EPS) == "pass"
    assert at(THRESHOLDS[warn] + EPS) == "warn"
    assert at(THRESHOLDS[fail] - EPS) == "warn"
    assert at(THRESHOLDS[fail] + EPS) == "fail"


def test_the_thresholds_are_the_documented_ones() -> None:
    # README "4-bit check": changing one is a behaviour change, made here on purpose.
    assert THRESHOLDS["warn_kl_ratio"] == 1.5 and THRESHOLDS["fail_kl_ratio"] == 4.0
    assert THRESHOLDS["warn_top1_drop"] == 0.05 and THRESHOLDS["fail_top1_drop"] == 0.15
    assert THRESHOLDS["drowned_ratio"] == 0.1


def test_a_drowned_module_warns_and_is_named() -> None:
    got, reasons, _ = verdict(drowned=True)
    assert got == "warn" and "q_proj" in reasons[0] and "drown" in reasons[0]


def test_structure_problems_warn() -> None:
    got, reasons, _ = verdict(problems=["lm_head stays in high precision"])
    assert got == "warn" and reasons == ["lm_head stays in high precision"]


def test_quantization_moving_outputs_more_than_the_adapter_warns() -> None:
    assert verdict(effect_kl=0.01 * 1.2 + EPS)[0] == "pass"  # the adapter moves outputs more
    got, reasons, _ = verdict(kl_ratio=1.2, effect_kl=0.01 * 1.2 - EPS)
    assert got == "warn" and "quantization moves the outputs more" in reasons[0]


def test_fail_beats_warn_and_no_behaviour_fails() -> None:
    got, reasons, _ = verdict(kl_ratio=THRESHOLDS["fail_kl_ratio"] * 2, drowned=True, problems=["x"])
    assert got == "fail" and len(reasons) == 3
    assert verdict(behaviour=False)[0] == "fail"
