"""When nothing fits as asked: search the settings that change memory and find the cheapest
configuration that fits, with the flags that ask for it.

What each change costs, from what it gives up: gradient checkpointing recomputes the forward pass
once more in the backward (about a third more compute, Chen et al. 2016), nothing learned changes;
the 8-bit paged optimizer keeps Adam's states in 8 bits (Dettmers et al. 2022 "8-bit Optimizers":
the same results on the tasks measured); a halved batch is the same training with gradient
accumulation, at half the throughput per step; a halved sequence length truncates what the model
sees, so it costs most. A method change is not a setting: the methods are ranked as always (evidence,
then the prior) among the cheapest configurations.
"""

from __future__ import annotations

import itertools

from registry.errors import BadRequest
from registry.planning.layout import Layout
from registry.planning.plan import Adjustment, Method, Plan, PlanOptions, make_plan

COST = {"gradient_checkpointing": 1, "optimizer": 1, "batch": 2, "seq_len": 3}
"""What one step of each change costs (per halving for batch and sequence length)."""
MIN_SEQ_LEN = 128
"""Sequences are not shortened below this (nor below an eighth of what was asked)."""


def _halvings(start: int, floor: int) -> list[int]:
    out = [start]
    while out[-1] // 2 >= floor:
        out.append(out[-1] // 2)
    return out


def adjustments(
    layout: Layout, options: PlanOptions, methods: list[Method] | tuple[Method, ...]
) -> dict[Method, Adjustment]:
    """For each of `methods`, the cheapest change of settings under which it fits
    `options.gpu_memory` (ties: the one with most headroom); methods that fit under none are left
    out. Nothing is searched without a GPU size."""
    o = options
    if o.gpu_memory is None:
        return {}
    gcs = [o.gradient_checkpointing] + ([] if o.gradient_checkpointing else [True])
    optimizers = [o.optimizer] + ([] if o.optimizer == "paged-adamw-8bit" else ["paged-adamw-8bit"])
    batches = _halvings(o.batch, 1)
    seqs = _halvings(o.seq_len, min(o.seq_len, max(MIN_SEQ_LEN, o.seq_len // 8)))
    out: dict[Method, Adjustment] = {}
    for method in methods:
        targets = o.targets if method in ("lora", "qlora", "dora") else None
        best: tuple[int, int, Plan] | None = None
        for gc, opt, batch, seq in itertools.product(gcs, optimizers, batches, seqs):
            cost = (
                COST["gradient_checkpointing"] * (gc != o.gradient_checkpointing)
                + COST["optimizer"] * (opt != o.optimizer)
                + COST["batch"] * (len(_halvings(o.batch, batch)) - 1)
                + COST["seq_len"] * (len(_halvings(o.seq_len, seq)) - 1)
            )
            if best is not None and cost > best[0]:
                continue
            update = {
                "method": method,
                "targets": targets,
                "gradient_checkpointing": gc,
                "optimizer": opt,
                "batch": batch,
                "seq_len": seq,
            }
            try:
                plan = make_plan(layout, o.model_copy(update=update))
            except BadRequest:
                break  # the method cannot be planned at all (its targets match nothing)
            if not plan.fits:
                continue
            headroom = plan.headroom or 0
            if best is None or (cost, -headroom) < (best[0], -(best[2].headroom or 0)):
                best = (cost, headroom, plan)
        if best is not None:
            out[method] = _describe(method, o, best[2], best[0])
    return out


def _describe(method: Method, asked: PlanOptions, plan: Plan, cost: int) -> Adjustment:
    got = plan.options
    changes: list[str] = []
    flags = [f"--method {method}"]
    if got.gradient_checkpointing and not asked.gradient_checkpointing:
        changes.append("gradient checkpointing on")
        flags.append("--gradient-checkpointing")
    if got.optimizer != asked.optimizer:
        changes.append(f"optimizer {asked.optimizer} -> {got.optimizer}")
        flags.append(f"--optimizer {got.optimizer}")
    if got.batch != asked.batch:
        changes.append(
            f"batch {asked.batch} -> {got.batch} (accumulate {asked.batch // got.batch} steps "
            "to keep the effective batch)"
        )
        flags.append(f"--batch {got.batch}")
    if got.seq_len != asked.seq_len:
        changes.append(f"sequence length {asked.seq_len} -> {got.seq_len}")
        flags.append(f"--seq-len {got.seq_len}")
    return Adjustment(
        method=method,
        changes=changes,
        flags=flags,
        cost=cost,
        total=plan.memory.total,
        headroom=plan.headroom or 0,
    )


def plan_or_adjust(layout: Layout, options: PlanOptions) -> Plan:
    """The plan of `options.method`; when it does not fit, with the cheapest change that does."""
    plan = make_plan(layout, options)
    if plan.fits is not False:
        return plan
    found = adjustments(layout, options, [options.method]).get(options.method)
    return plan.model_copy(update={"adjusted": found})
