"""The recommendation: what fits first, then the registry's evidence, then the prior; the recipe's
rules reported as inputs."""

from __future__ import annotations

import pytest

from registry.errors import BadRequest
from registry.planning import Evidence, Hints, Layout, PlanOptions, adjustments, make_plan, recommend
from registry.planning.search import COST

GB = 10**9


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


def test_when_nothing_fits_as_asked_the_cheapest_change_that_fits_is_recommended(
    big_layouts: dict[str, Layout],
) -> None:
    """70B on 48 GB: no method fits at seq 512, batch 1, AdamW, no checkpointing; QLoRA with
    gradient checkpointing does (the issue's "5 GB to spare": ~9 GB here), and is the cheapest
    change: one step (checkpointing), before the 8-bit optimizer or a smaller batch."""
    layout = big_layouts["llama-2-70b"]
    options = PlanOptions(gpu_memory=48 * GB)
    assert all(not p.fits for p in [make_plan(layout, options.model_copy(update={"method": "qlora"}))])
    r = recommend(layout, options)
    assert r.recommended == "qlora" and all(x.fits is False for x in r.ranking)
    assert r.adjusted is not None
    assert r.adjusted.flags == ["--method qlora", "--gradient-checkpointing"]
    assert r.adjusted.changes == ["gradient checkpointing on"]
    assert 0 < r.adjusted.headroom < 48 * GB and r.adjusted.total + r.adjusted.headroom == 48 * GB
    checked = make_plan(
        layout, options.model_copy(update={"method": "qlora", "gradient_checkpointing": True})
    )
    assert checked.fits and checked.memory.total == r.adjusted.total
    assert any("qlora fits with gradient checkpointing on" in line for line in r.reasons)
    assert r.recipe == ["recipe: >30B on <=48 GB -> qlora: agrees"]


def test_the_search_changes_batch_and_sequence_only_when_it_must(layouts: dict[str, Layout]) -> None:
    layout = layouts["llama"]
    asked = PlanOptions(method="lora", batch=64, seq_len=2048)
    free = make_plan(
        layout, asked.model_copy(update={"gradient_checkpointing": True, "batch": 1, "seq_len": 1024})
    )
    tight = asked.model_copy(update={"gpu_memory": free.memory.total})
    found = adjustments(layout, tight, ["lora"])["lora"]
    assert found.total <= free.memory.total and found.cost >= COST["batch"] * 6  # 64 -> 1
    assert "--gradient-checkpointing" in found.flags and "--batch 1" in found.flags
    assert any(c.startswith("batch 64 -> 1 (accumulate 64 steps") for c in found.changes)
    # A budget nothing reaches: no adjustment, no recommendation.
    nothing = recommend(layout, asked.model_copy(update={"gpu_memory": 1000}))
    assert nothing.recommended is None and nothing.adjusted is None and nothing.adjustments == []
