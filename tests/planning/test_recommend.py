"""The recommendation: what fits first, then the registry's evidence, then the prior; the recipe's
rules reported as inputs."""

from __future__ import annotations

import pytest

from registry.errors import BadRequest
from registry.planning import Evidence, Hints, Layout, PlanOptions, make_plan, recommend


def between_lora_and_full(layout: Layout) -> int:
    lora = make_plan(layout, PlanOptions(method="lora")).memory.total
    full = make_plan(layout, PlanOptions(method="full")).memory.total
    assert lora < full
    return (lora + full) // 2


def test_evidence_decides_among_what_fits(layouts: dict[str, Layout]) -> None:
    layout = layouts["llama"]
    options = PlanOptions(gpu_memory=between_lora_and_full(layout))
    rows = [
        Evidence(method="full", score=0.1, metric="loss", ref="a/full@v1"),  # best, but does not fit
        Evidence(method="lora", score=0.5, metric="loss", ref="a/lora@v1"),
        Evidence(method="lora", score=0.4, metric="loss", ref="a/lora@v2"),
        Evidence(method="ia3", score=0.3, metric="loss", ref="a/ia3@v1"),
    ]
    r = recommend(layout, options, rows, lower_is_better=True)
    assert r.recommended == "ia3"
    assert [x.method for x in r.ranking[:2]] == ["ia3", "lora"]
    lora = r.ranking[1].evidence
    assert lora is not None and (lora.best, lora.ref, lora.count) == (0.4, "a/lora@v2", 2)
    full = next(x for x in r.ranking if x.method == "full")
    assert full.fits is False and full.rank > 5  # after every method that fits
    # Higher is better: LoRA's 0.5 wins.
    assert recommend(layout, options, rows).recommended == "lora"


def test_without_evidence_the_prior_decides_and_hints_weigh_in(layouts: dict[str, Layout]) -> None:
    layout = layouts["gpt2"]
    plain = recommend(layout, PlanOptions())
    assert plain.recommended == "lora" and plain.metric is None
    assert len(plain.plans) == 7 and all(x.fits is None for x in plain.ranking)
    few = recommend(layout, PlanOptions(), hints=Hints(few_shot=True, latency_critical=True))
    assert few.recommended == "prefix"
    assert any(line.startswith("recipe: few-shot -> prefix: agrees") for line in few.recipe)
    assert any("latency critical -> ia3: differs: prefix adds virtual tokens" in line for line in few.recipe)


def test_evidence_on_two_metrics_is_refused(layouts: dict[str, Layout]) -> None:
    rows = [
        Evidence(method="lora", score=0.5, metric="accuracy", ref="a/x@v1"),
        Evidence(method="ia3", score=0.5, metric="f1", ref="a/y@v1"),
    ]
    with pytest.raises(BadRequest, match="several metrics"):
        recommend(layouts["llama"], PlanOptions(), rows)


def test_targets_that_do_not_exist_rank_last_with_the_reason(layouts: dict[str, Layout]) -> None:
    r = recommend(layouts["bert"], PlanOptions(targets=["q_proj"]))
    tail = r.ranking[-3:]
    assert {x.method for x in tail} == {"lora", "qlora", "dora"}
    assert all(x.total is None and "matches no" in x.reason for x in tail)
    assert r.recommended == "full"
