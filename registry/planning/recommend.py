"""Every method ranked for one base and budget, and a recommendation with its reasons.

What decides, in order: (1) what fits the GPU; (2) the registry's own evidence, the best eval score
that adapters of each method reached on this base (and task), when there is any; (3) without
evidence, a prior drawn from the methods' papers. The recipe's rules of thumb (QLoRA for >30B on
<48 GB, IA3 when latency is critical, LoRA for multi-task, prefix tuning for few-shot) are inputs:
each that applies is printed with whether the recommendation agrees, and why not.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from registry.errors import BadRequest
from registry.planning.layout import Layout
from registry.planning.plan import Adjustment, Method, Plan, PlanOptions, make_plan
from registry.planning.search import adjustments
from registry.planning.units import human

# Without evidence, among methods that fit. LoRA matches full fine-tuning on GLUE and GPT-3
# tasks at a fraction of the memory (Hu et al. 2021); DoRA adds a little quality for more
# activation memory (Liu et al. 2024); QLoRA matches 16-bit LoRA when the 16-bit base does not fit
# (Dettmers et al. 2023); full fine-tuning trains most but stores a whole model per task; IA3 trains
# the fewest parameters (Liu et al. 2022); prefix and prompt tuning trail at small scale (Li & Liang
# 2021; Lester et al. 2021: prompt tuning matches fine-tuning only past ~10B parameters).
PRIOR: tuple[Method, ...] = ("lora", "dora", "qlora", "full", "ia3", "prefix", "prompt")
PRIOR_REASON = {
    "lora": "LoRA: near full fine-tuning quality at a fraction of the memory (Hu et al. 2021)",
    "dora": "DoRA: LoRA plus a magnitude vector, a little better, more activation memory (Liu et al. 2024)",
    "qlora": "QLoRA: LoRA over an NF4 base, matches 16-bit LoRA (Dettmers et al. 2023)",
    "full": "full fine-tuning: most capacity, a whole model stored per task",
    "ia3": "IA3: fewest trainable parameters, merges into the base (Liu et al. 2022)",
    "prefix": "prefix tuning: trails LoRA at this scale (Li & Liang 2021)",
    "prompt": "prompt tuning: matches fine-tuning only past ~10B parameters (Lester et al. 2021)",
}
MERGEABLE = {"lora", "qlora", "dora", "ia3", "full"}


class Evidence(BaseModel):
    """One adapter's score on this base: the method it was trained with and its best score."""

    method: Method
    score: float
    metric: str
    ref: str


class MethodEvidence(BaseModel):
    best: float
    ref: str
    count: int


class Ranked(BaseModel):
    rank: int
    method: Method
    total: int | None
    fits: bool | None
    trainable_params: int | None
    evidence: MethodEvidence | None = None
    reason: str


class Hints(BaseModel):
    """The recipe's flags: inputs to the recommendation, never the answer."""

    latency_critical: bool = False
    multi_task: bool = False
    few_shot: bool = False


class Recommendation(BaseModel):
    recommended: Method | None
    reasons: list[str]
    metric: str | None
    lower_is_better: bool = False
    ranking: list[Ranked]
    recipe: list[str] = Field(default_factory=list)
    """What each applicable rule of the recipe says, and whether the recommendation agrees."""
    plans: list[Plan]
    adjusted: Adjustment | None = None
    """When no method fits as asked: the recommended method's cheapest change of settings that
    fits (then `recommended` is that method, under those settings)."""
    adjustments: list[Adjustment] = Field(default_factory=list)
    """Every method that fits under some change of settings, the recommended one first."""


def _evidence(rows: list[Evidence], lower_is_better: bool) -> dict[str, MethodEvidence]:
    out: dict[str, MethodEvidence] = {}
    for row in rows:
        cur = out.get(row.method)
        better = cur is None or (row.score < cur.best if lower_is_better else row.score > cur.best)
        if better:
            out[row.method] = MethodEvidence(best=row.score, ref=row.ref, count=(cur.count if cur else 0) + 1)
        else:
            assert cur is not None
            cur.count += 1
    return out


def recommend(
    layout: Layout,
    options: PlanOptions,
    evidence: list[Evidence] | None = None,
    *,
    lower_is_better: bool = False,
    hints: Hints | None = None,
    metric: str | None = None,
) -> Recommendation:
    """Plan every method under `options` (its method ignored; --targets applies to the LoRA family)
    and rank them. `evidence` must be on one metric (`metric`, when given)."""
    hints = hints or Hints()
    rows = evidence or []
    metrics = {r.metric for r in rows} | ({metric} if metric else set())
    if len(metrics) > 1:
        raise BadRequest(f"evidence on several metrics ({', '.join(sorted(metrics))}): give one")
    metric = next(iter(metrics), None)
    by_method = _evidence(rows, lower_is_better)
    plans: dict[Method, Plan] = {}
    failed: dict[Method, str] = {}
    for method in PRIOR:
        targets = options.targets if method in ("lora", "qlora", "dora") else None
        try:
            plans[method] = make_plan(
                layout, options.model_copy(update={"method": method, "targets": targets})
            )
        except BadRequest as err:
            failed[method] = str(err)

    def key(method: Method) -> tuple[int, int, float, int]:
        plan = plans[method]
        fits = 0 if plan.fits is not False else 1
        ev = by_method.get(method)
        if fits == 1:
            return (1, 0, float(plan.memory.total), PRIOR.index(method))  # the smallest misses first
        if ev is not None:
            return (0, 0, ev.best if lower_is_better else -ev.best, PRIOR.index(method))
        return (0, 1, 0.0, _prior_index(method, hints))

    ordered = sorted(plans, key=key)
    ranking: list[Ranked] = []
    for i, method in enumerate(ordered, 1):
        plan = plans[method]
        ev = by_method.get(method)
        ranking.append(
            Ranked(
                rank=i,
                method=plan.method,
                total=plan.memory.total,
                fits=plan.fits,
                trainable_params=plan.trainable_params,
                evidence=ev,
                reason=_why(plan, ev, metric, options),
            )
        )
    for method, why in failed.items():
        ranking.append(
            Ranked(
                rank=len(ranking) + 1, method=method, total=None, fits=None, trainable_params=None, reason=why
            )
        )
    top = ranking[0] if ranking and ranking[0].fits is not False and ranking[0].total is not None else None
    reasons = _reasons(top, ranking, plans, metric, options)
    found: list[Adjustment] = []
    if top is None and options.gpu_memory is not None:
        # Nothing fits as asked: the cheapest change of settings, methods ranked as always among
        # the equally cheap (evidence first, then the prior).
        def adjusted_key(a: Adjustment) -> tuple[int, int, float, int]:
            ev = by_method.get(a.method)
            if ev is not None:
                return (a.cost, 0, ev.best if lower_is_better else -ev.best, PRIOR.index(a.method))
            return (a.cost, 1, 0.0, _prior_index(a.method, hints))

        found = sorted(adjustments(layout, options, list(plans)).values(), key=adjusted_key)
        if found:
            reasons += _adjusted_reasons(found[0], by_method.get(found[0].method), metric)
    chosen = top.method if top else (found[0].method if found else None)
    return Recommendation(
        recommended=chosen,
        reasons=reasons,
        metric=metric,
        lower_is_better=lower_is_better,
        ranking=ranking,
        recipe=_recipe(layout, options, hints, chosen, plans),
        plans=list(plans.values()),
        adjusted=found[0] if found else None,
        adjustments=found,
    )


def _adjusted_reasons(a: Adjustment, ev: MethodEvidence | None, metric: str | None) -> list[str]:
    out = [
        f"{a.method} fits with {', '.join(a.changes)}: needs {human(a.total)} ({human(a.headroom)} to spare)",
        "the cheapest change that fits: checkpointing and the 8-bit paged optimizer cost compute, "
        "not quality; a smaller batch costs throughput; shorter sequences cost most",
    ]
    if ev is not None:
        out.append(f"registry evidence on {metric}: {a.method} adapters reach {ev.best:g} ({ev.ref})")
    return out


def _prior_index(method: Method, hints: Hints) -> int:
    order: list[Method] = list(PRIOR)
    if hints.few_shot:  # the recipe's few-shot rule, weighed as a preference among what fits
        order.remove("prefix")
        order.insert(0, "prefix")
    return order.index(method)


def _why(plan: Plan, ev: MethodEvidence | None, metric: str | None, o: PlanOptions) -> str:
    need = human(plan.memory.total)
    parts = [f"needs {need}"]
    if o.gpu_memory is not None:
        parts.append("fits" if plan.fits else f"over {human(o.gpu_memory)} by {human(-(plan.headroom or 0))}")
    if ev is not None:
        parts.append(
            f"best {metric} {ev.best:g} ({ev.ref}, {ev.count} adapter{'s' if ev.count != 1 else ''})"
        )
    else:
        parts.append("no eval scores")
    return "; ".join(parts)


def _reasons(
    top: Ranked | None, ranking: list[Ranked], plans: dict[Method, Plan], metric: str | None, o: PlanOptions
) -> list[str]:
    if top is None:
        smallest = min((r for r in ranking if r.total is not None), key=lambda r: r.total or 0, default=None)
        tip = f" (the smallest, {smallest.method}, needs {human(smallest.total or 0)})" if smallest else ""
        return [f"no method fits {human(o.gpu_memory or 0)} as asked{tip}"]
    plan = plans[top.method]
    out = []
    if o.gpu_memory is not None:
        fitting = [r.method for r in ranking if r.fits]
        out.append(f"fits in {human(o.gpu_memory)}: {', '.join(fitting)}")
        out.append(f"{top.method} needs {human(plan.memory.total)} ({human(plan.headroom or 0)} to spare)")
    if top.evidence is not None:
        others = [
            f"{r.method} {r.evidence.best:g}"
            for r in ranking[1:]
            if r.evidence is not None and r.fits is not False
        ]
        vs = f" against {', '.join(others)}" if others else ""
        out.append(
            f"registry evidence on {metric}: {top.method} adapters reach {top.evidence.best:g} ({top.evidence.ref}){vs}"
        )
    else:
        out.append(
            "no eval scores for this base"
            + (f" on {metric}" if metric else "")
            + f": the prior decides: {PRIOR_REASON[top.method]}"
        )
    return out


def _recipe(
    layout: Layout, o: PlanOptions, hints: Hints, chosen: str | None, plans: dict[Method, Plan]
) -> list[str]:
    out = []

    def verdict(rule: str, says: str, why_not: str) -> None:
        agree = chosen == says or (says == "lora" and chosen in ("lora", "dora", "qlora"))
        out.append(f"recipe: {rule} -> {says}: " + ("agrees" if agree else f"differs: {why_not}"))

    big = layout.arch.param_count > 30e9
    if big and o.gpu_memory is not None and o.gpu_memory <= 48 * 2**30:  # 48 GB or GiB
        q = plans.get("qlora")
        why = (
            "QLoRA does not fit either"
            if q is not None and not q.fits and chosen is None
            else f"{chosen} fits and ranks higher"
        )
        verdict(">30B on <=48 GB", "qlora", why)
    if hints.latency_critical:
        verdict(
            "latency critical",
            "ia3",
            f"{chosen} also merges into the base, so it adds no latency either"
            if chosen in MERGEABLE
            else f"{chosen} adds virtual tokens to every request",
        )
    if hints.multi_task:
        verdict("multi-task", "lora", f"{chosen} ranks higher here; adapters of any method swap per request")
    if hints.few_shot:
        verdict("few-shot", "prefix", f"{chosen} fits and ranks higher (evidence or prior)")
    return out
