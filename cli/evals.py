"""`adapters eval add`, `evals`, `leaderboard`, `pareto`, `compare`, `lineage` (issue 13)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from cli.app import with_client
from cli.output import console, emit, json_option, say
from cli.params import EVAL, REF

if TYPE_CHECKING:
    from registry.client import RegistryClient
    from registry.entities import (
        Comparison,
        EvalHistory,
        EvalScoreIn,
        Leaderboard,
        LineageGraph,
        ParetoResult,
    )


@click.group(name="eval")
def eval_group() -> None:
    """Record evaluation scores on existing versions."""


@eval_group.command(name="add")
@click.argument("ref", type=REF)
@click.argument("scores", nargs=-1, required=True, type=EVAL, metavar="METRIC=VALUE[@DATASET[:SPLIT]]...")
@click.option("--note", help="Why, or how these scores were measured (kept with them).")
@json_option
@with_client
def eval_add(
    client: RegistryClient, ref: str, scores: tuple[EvalScoreIn, ...], note: str | None, as_json: bool
) -> None:
    """Append scores to REF's evaluation history (the latest per metric and dataset is current)."""
    emit(client.add_evals(ref, list(scores), note), as_json, _history)


@click.command(name="evals")
@click.argument("ref", type=REF)
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="The newest records to list (the current scores are always all listed).",
)
@json_option
@with_client
def evals(client: RegistryClient, ref: str, limit: int, as_json: bool) -> None:
    """REF's evaluation history, newest first, with who recorded each score and when."""
    emit(client.eval_history(ref, limit), as_json, _history)


def _ranking_options(command: Callable[..., None]) -> Callable[..., None]:
    """What leaderboard and pareto both take: the base, the metric and which scores count."""
    for option in reversed(
        [
            click.option("--base", required=True, help="Base name or fingerprint."),
            click.option("--metric", required=True),
            click.option("--dataset"),
            click.option(
                "--split", help="Only scores on this split (default: each version's best over splits)."
            ),
            click.option("--task"),
            click.option("--lower-is-better", is_flag=True, help="Rank ascending (loss, perplexity)."),
        ]
    ):
        command = option(command)
    return command


@click.command()
@_ranking_options
@click.option("--peft-type")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
@json_option
@with_client
def leaderboard(
    client: RegistryClient,
    base: str,
    metric: str,
    dataset: str | None,
    split: str | None,
    task: str | None,
    peft_type: str | None,
    lower_is_better: bool,
    limit: int,
    as_json: bool,
) -> None:
    """The adapters that fit BASE, one row per repository (its best version), ranked by METRIC
    (on one dataset: give --dataset when the scores were taken on several)."""
    from registry.entities import LeaderboardQuery, ParetoQuery

    if dataset is None:  # the candidates' datasets: the Pareto answer lists them
        probe = ParetoQuery(
            base=base, metric=metric, split=split, task=task, lower_is_better=lower_is_better, front_only=True
        )
        _one_dataset(client.pareto(probe).datasets, metric)
    q = LeaderboardQuery(
        base=base,
        metric=metric,
        dataset=dataset,
        split=split,
        task=task,
        peft_type=peft_type,
        lower_is_better=lower_is_better,
        limit=limit,
    )
    emit(client.leaderboard(q), as_json, _leaderboard)


@click.command()
@_ranking_options
@click.option("--cost", type=click.Choice(["params", "bytes", "rank"]), default="params", show_default=True)
@click.option("--all-points", is_flag=True, help="Also list the points off the front (for plotting).")
@json_option
@with_client
def pareto(
    client: RegistryClient,
    base: str,
    metric: str,
    dataset: str | None,
    split: str | None,
    task: str | None,
    cost: str,
    lower_is_better: bool,
    all_points: bool,
    as_json: bool,
) -> None:
    """The versions on the Pareto front of METRIC against cost (exact trainable parameters by default)."""
    from registry.entities import ParetoQuery

    q = ParetoQuery(
        base=base,
        metric=metric,
        dataset=dataset,
        split=split,
        task=task,
        cost=cost,
        lower_is_better=lower_is_better,
        front_only=not all_points,
    )
    result = client.pareto(q)
    if dataset is None:
        _one_dataset(result.datasets, metric)
    emit(result, as_json, _pareto)


def _one_dataset(datasets: list[str | None], metric: str) -> None:
    """Scores on different datasets are never ranked against each other: ask for one."""
    if len(datasets) <= 1:
        return
    named = ", ".join(d or "(none recorded)" for d in datasets)
    pick = next(d for d in datasets if d is not None)
    raise click.UsageError(
        f"{metric} was scored on {len(datasets)} datasets ({named}), which are not ranked against "
        f"each other: give one, e.g. --dataset {pick}"
    )


@click.command()
@click.argument("refs", nargs=-1, required=True, type=REF)
@json_option
@with_client
def compare(client: RegistryClient, refs: tuple[str, ...], as_json: bool) -> None:
    """Versions side by side (two or more): the config fields that differ, parameter counts, every
    metric."""
    if len(refs) < 2:
        raise click.UsageError("compare needs at least two versions: adapters compare REF REF...")
    emit(client.compare(list(refs)), as_json, _comparison)


@click.command()
@click.argument("target", metavar="REF|BASE")
@click.option("--depth", default=8, show_default=True, type=click.IntRange(1, 32))
@json_option
@with_client
def lineage(client: RegistryClient, target: str, depth: int, as_json: bool) -> None:
    """The lineage around a version or a base: merge parents, export sources, and descendants."""
    emit(client.lineage(target, depth), as_json, _lineage)


# ---------------------------------------------------------------- rendering for people
def _scope(metric: str, dataset: str | None, split: str | None) -> str:
    return metric + (f"@{dataset}" if dataset else "") + (f":{split}" if split else "")


def _history(h: EvalHistory) -> None:
    from rich.table import Table

    table = Table("metric", "value", "recorded by", "when", "note", "", title=f"evaluations of {h.ref}")
    current = {(c.metric, c.dataset, c.split, c.created_at, c.value) for c in h.current}
    for r in h.records:
        mark = "current" if (r.metric, r.dataset, r.split, r.created_at, r.value) in current else ""
        table.add_row(
            _scope(r.metric, r.dataset, r.split),
            f"{r.value:g}",
            r.recorded_by,
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.note or "",
            mark,
        )
    console.print(table)
    if h.total > len(h.records):
        say(f"[dim]the newest {len(h.records)} of {h.total} records (--limit to see more)[/dim]")


def _leaderboard(b: Leaderboard) -> None:
    from rich.table import Table

    order = "lower is better" if b.lower_is_better else "higher is better"
    table = Table(
        "#",
        "ref",
        "tier",
        "peft",
        "r",
        "task",
        "params",
        b.metric,
        "on",
        title=f"{b.base}: {b.metric} ({order})",
    )
    for row in b.rows:
        table.add_row(
            str(row.rank),
            row.ref,
            row.tier,
            row.peft_type,
            str(row.r or ""),
            row.task or "",
            f"{row.trainable_params:,}",
            f"{row.score:g}",
            _scope("", row.dataset, row.split).lstrip("@"),
        )
    console.print(table)
    if not b.rows:
        say("no fitting adapter has this metric")


def _pareto(p: ParetoResult) -> None:
    from rich.table import Table

    every = any(not pt.on_front for pt in p.points)  # --all-points: the others too, marked
    on = f" on {p.dataset}" if p.dataset else (f" on {p.datasets[0]}" if p.datasets and p.datasets[0] else "")
    table = Table(
        "ref",
        p.cost,
        p.metric,
        *(["front"] if every else []),
        "dominates",
        title=f"Pareto front on {p.base}{on} ({p.front_size} of {p.total})",
    )
    for pt in p.points:
        extra = pt.dominated_count - 3
        listed = ", ".join(pt.dominates[:3]) + (f" (+{extra} more)" if extra > 0 else "")
        mark = ["yes" if pt.on_front else ""] if every else []
        table.add_row(pt.ref, f"{pt.cost:,}", f"{pt.score:g}", *mark, listed or "-")
    console.print(table)
    if len(p.points) < p.total:
        say(f"[dim]{len(p.points)} of {p.total} points (--all-points lists the others)[/dim]")


def _comparison(c: Comparison) -> None:
    from rich.table import Table

    table = Table("", *[v.ref for v in c.versions], title="comparison")
    for f in c.differing:
        table.add_row(f"[yellow]{f}[/yellow]", *[_cell(v.config.get(f)) for v in c.versions])
    table.add_row("trainable params", *[f"{v.trainable_params:,}" for v in c.versions])
    table.add_row("adapter bytes", *[f"{v.adapter_bytes:,}" for v in c.versions])
    for k in c.metrics:
        table.add_row(k, *[_cell(v.scores.get(k)) for v in c.versions])
    console.print(table)
    if not c.differing:
        say("the configurations are identical")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _lineage(g: LineageGraph) -> None:
    from rich.tree import Tree

    nodes = {n.id: n for n in g.nodes}
    parents: dict[str, list[tuple[str, str]]] = {}
    children: dict[str, list[tuple[str, str]]] = {}
    for e in g.edges:
        what = (
            e.kind
            + (f" w={e.weight:g}" if e.weight is not None else "")
            + (f" {e.method}" if e.method else "")
        )
        what += f" err={e.error:.3g}" if e.error is not None else ""
        what += " unverified" if e.unverified else ""
        parents.setdefault(e.target, []).append((e.source, what))
        children.setdefault(e.source, []).append((e.target, what))

    def label(node_id: str) -> str:
        n = nodes.get(node_id)
        if n is None:
            return node_id
        style = {"deleted": "red", "hidden": "dim", "base": "cyan"}.get(n.kind, "bold")
        return f"[{style}]{n.label}[/{style}]" + (f" [dim]{n.digest[:19]}[/dim]" if n.digest else "")

    def grow(tree: Tree, node_id: str, links: dict[str, list[tuple[str, str]]], seen: set[str]) -> None:
        for other, what in links.get(node_id, []):
            branch = tree.add(f"{label(other)} [dim]({what})[/dim]")
            if other not in seen:
                grow(branch, other, links, seen | {other})

    root = Tree(label(g.root))
    for title, links in (("derived from", parents), ("derived into", children)):
        branch = root.add(f"[dim]{title}[/dim]")
        grow(branch, g.root, links, {g.root})
        if not links.get(g.root):
            branch.add("[dim]nothing recorded[/dim]")
    console.print(root)
    if g.truncated:
        say("[dim](truncated: raise --depth, or the graph is larger than shown)[/dim]")


COMMANDS: list[click.Command] = [eval_group, evals, leaderboard, pareto, compare, lineage]
