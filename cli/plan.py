"""`adapters plan`: trainable parameters, memory by part, and a method that fits (issue 14)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cli.app import with_client
from cli.output import emit, json_option
from cli.params import DTYPE, SIZE

if TYPE_CHECKING:
    from registry.client import RegistryClient
    from registry.planning import Evidence, Plan, Recommendation

METHODS = ("lora", "qlora", "dora", "ia3", "prefix", "prompt", "full")
PEFT_TYPE_METHOD = {"LORA": "lora", "IA3": "ia3", "PREFIX_TUNING": "prefix", "PROMPT_TUNING": "prompt"}


def _targets(text: str | None) -> str | list[str] | None:
    if text is None or text.lower() == "all-linear":
        return text
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise click.BadParameter(
            "give all-linear or module names separated by commas", param_hint="--targets"
        )
    return names


@click.command(name="plan")
@click.option(
    "--base", "base_ref", required=True, metavar="BASE", help="A registered base (name or fingerprint)."
)
@click.option("--method", type=click.Choice(METHODS), help="Plan one method; without it, rank them all.")
@click.option("--r", "rank", type=click.IntRange(1, 65536), default=8, show_default=True, help="LoRA rank.")
@click.option("--targets", help="all-linear, or module names: q_proj,v_proj (default: PEFT's for the model).")
@click.option("--seq-len", type=click.IntRange(1, 10_000_000), default=512, show_default=True)
@click.option("--batch", type=click.IntRange(1, 1_000_000), default=1, show_default=True)
@click.option("--gradient-checkpointing", is_flag=True)
@click.option(
    "--optimizer",
    type=click.Choice(["adamw", "adamw-8bit", "paged-adamw-8bit"]),
    default="adamw",
    show_default=True,
)
@click.option("--gpu-memory", type=SIZE, help="The GPU's memory: 24GB, 80GB, 48GiB.")
@click.option("--dtype", type=DTYPE, default="bf16", show_default=True)
@click.option("--no-double-quant", is_flag=True, help="QLoRA without double quantization.")
@click.option(
    "--attention",
    type=click.Choice(["sdpa", "eager"]),
    default="sdpa",
    show_default=True,
    help="eager keeps the s*s attention probabilities for the backward pass; sdpa does not.",
)
@click.option("--virtual-tokens", type=click.IntRange(1, 100_000), default=20, show_default=True)
@click.option("--task", help="Evidence: only adapters for this task.")
@click.option("--metric", help="Evidence: the eval metric (default: the one most adapters report).")
@click.option("--lower-is-better", is_flag=True, help="Evidence: the metric is a loss.")
@click.option("--latency-critical", is_flag=True, help="The recipe's input: inference latency matters.")
@click.option("--multi-task", is_flag=True, help="The recipe's input: several tasks on one base.")
@click.option("--few-shot", is_flag=True, help="The recipe's input: few training examples.")
@json_option
@with_client
def plan(
    client: RegistryClient,
    base_ref: str,
    method: str | None,
    rank: int,
    targets: str | None,
    seq_len: int,
    batch: int,
    gradient_checkpointing: bool,
    optimizer: str,
    gpu_memory: int | None,
    dtype: str,
    no_double_quant: bool,
    attention: str,
    virtual_tokens: int,
    task: str | None,
    metric: str | None,
    lower_is_better: bool,
    latency_critical: bool,
    multi_task: bool,
    few_shot: bool,
    as_json: bool,
) -> None:
    """Plan a fine-tune of BASE before it runs: trainable parameters and GPU memory by part, from
    the base's registered config alone (`adapters base add --config` is enough)."""
    from cli import render_plan
    from registry.planning import Hints, Layout, PlanOptions, plan_or_adjust, recommend

    if gpu_memory is not None and gpu_memory <= 0:
        raise click.BadParameter("must be more than zero", param_hint="--gpu-memory")
    options = PlanOptions.model_validate(
        {
            "method": method or "lora",
            "r": rank,
            "targets": _targets(targets),
            "seq_len": seq_len,
            "batch": batch,
            "gradient_checkpointing": gradient_checkpointing,
            "optimizer": optimizer,
            "gpu_memory": gpu_memory,
            "dtype": dtype,
            "double_quant": not no_double_quant,
            "num_virtual_tokens": virtual_tokens,
            "attention": attention,
        }
    )
    layout = Layout.of(client.get_base_layout(base_ref))
    if method is not None:
        one: Plan = plan_or_adjust(layout, options)
        emit(one, as_json, lambda p: render_plan.plan(base_ref, p))
        return
    metric, rows = evidence(client, base_ref, task, metric, lower_is_better)
    ranked: Recommendation = recommend(
        layout,
        options,
        rows,
        lower_is_better=lower_is_better,
        hints=Hints(latency_critical=latency_critical, multi_task=multi_task, few_shot=few_shot),
        metric=metric,
    )
    emit(ranked, as_json, lambda r: render_plan.recommendation(base_ref, r, options))


def evidence(
    client: RegistryClient, base: str, task: str | None, metric: str | None, lower_is_better: bool = False
) -> tuple[str | None, list[Evidence]]:
    """The registry's scores of adapters that fit `base` (the leaderboard: each repository's best),
    by method, on `metric` (default: the one most fitting versions report, rankings.common_metrics)."""
    from registry.entities import LeaderboardQuery
    from registry.planning import Evidence

    if metric is None:
        common = client.common_metrics(base, task)
        if not common:
            return None, []
        metric = common[0].metric
    query = LeaderboardQuery(base=base, metric=metric, task=task, lower_is_better=lower_is_better, limit=500)
    board = client.leaderboard(query)
    rows = [
        Evidence(method=_method(r.peft_type, r.use_dora), score=r.score, metric=metric, ref=r.ref)  # type: ignore[arg-type]
        for r in board.rows
        if r.peft_type in PEFT_TYPE_METHOD
    ]
    return metric, rows


def _method(peft_type: str, use_dora: bool) -> str:
    """A DoRA version is DoRA evidence, not LoRA's (same peft_type, magnitude vectors on top)."""
    method = PEFT_TYPE_METHOD[peft_type]
    return "dora" if method == "lora" and use_dora else method


COMMANDS: list[click.Command] = [plan]
