"""Leaderboard and Pareto front over a seeded registry (the bench's loader, a few hundred
versions), checked against brute force computed here from plain reads, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from sqlalchemy import select

from bench.evals import seed
from registry.access.principal import OPERATOR
from registry.db import models as m
from registry.entities import FitQuery, LeaderboardQuery, ParetoQuery
from registry.services import rankings
from registry.services.context import Registry
from registry.services.fit_query import fit


@pytest.fixture
def seeded(reg: Registry) -> Registry:
    seed(reg, 400, 20, random.Random(7))
    return reg


def fitting_refs(reg: Registry, base: str) -> dict[str, str]:
    """ref -> tier, from the fit query (the tier rule the rankings must reuse)."""
    return {it.ref: it.tier for it in fit(reg, FitQuery(base=base, limit=500), principal=OPERATOR).items}


def current(reg: Registry, metric: str, dataset: str | None) -> dict[str, list[float]]:
    """ref -> its current values of `metric` (on `dataset`), read plainly."""
    with reg.sessions() as session:
        rows = session.execute(
            select(m.Repository.namespace, m.Repository.name, m.Version.number, m.EvalScore.value)
            .join(m.Version, m.Version.repository_id == m.Repository.id)
            .join(m.EvalScore, m.EvalScore.version_id == m.Version.id)
            .where(m.EvalScore.metric == metric, m.EvalScore.current)
            .where(m.EvalScore.dataset == dataset if dataset else m.EvalScore.id.is_not(None))
        ).all()
    out: dict[str, list[float]] = defaultdict(list)
    for ns, name, number, value in rows:
        out[f"{ns}/{name}:{number}"].append(value)
    return out


def costs(reg: Registry, kind: str) -> dict[str, int | None]:
    col = {"params": m.Version.trainable_params, "bytes": m.Version.adapter_bytes, "rank": m.Version.r}[kind]
    with reg.sessions() as session:
        rows = session.execute(
            select(m.Repository.namespace, m.Repository.name, m.Version.number, col).join(
                m.Version, m.Version.repository_id == m.Repository.id
            )
        ).all()
    return {f"{ns}/{name}:{n}": c for ns, name, n, c in rows}


def brute_front(points: dict[str, tuple[int, float]]) -> set[str]:
    """Every point no other dominates (at most as costly and at least as good, one strictly)."""
    return {
        ref
        for ref, (c, s) in points.items()
        if not any(oc <= c and os >= s and (oc < c or os > s) for o, (oc, os) in points.items() if o != ref)
    }


@pytest.mark.parametrize(
    ("metric", "dataset", "cost", "lower"),
    [
        ("accuracy", "mmlu", "params", False),
        ("accuracy", None, "bytes", False),
        ("loss", "gsm8k", "rank", True),
    ],
)
def test_pareto_front_equals_brute_force(
    seeded: Registry, metric: str, dataset: str | None, cost: str, lower: bool
) -> None:
    checked = 0
    for b in (1, 2, 3):
        base = f"org/base-{b}"
        fits = fitting_refs(seeded, base)
        values = current(seeded, metric, dataset)
        cost_of = costs(seeded, cost)
        pick = min if lower else max
        expected = {
            ref: (cost_of[ref], pick(values[ref]))
            for ref in fits
            if ref in values and cost_of[ref] is not None
        }
        # Brute force with the score turned so that higher is better.
        turned = {ref: (c, -s if lower else s) for ref, (c, s) in expected.items()}
        front = brute_front(turned)
        got = rankings.pareto(
            seeded,
            ParetoQuery(base=base, metric=metric, dataset=dataset, cost=cost, lower_is_better=lower),
            principal=OPERATOR,
        )
        assert got.total == len(expected) and len(got.points) == len(expected)
        assert {p.ref: (p.cost, p.score) for p in got.points} == expected
        assert {p.ref for p in got.points if p.on_front} == front
        assert got.front_size == len(front)
        for p in got.points:
            if not p.on_front:
                assert p.dominates == [] and p.dominated_count == 0
                continue
            pc, ps = turned[p.ref]
            dominated = {
                o for o, (oc, os) in turned.items() if pc <= oc and ps >= os and (pc < oc or ps > os)
            }
            assert p.dominated_count == len(dominated)
            assert set(p.dominates) <= dominated
            assert len(p.dominates) == min(len(dominated), rankings.DOMINATES_CAP)
        checked += len(front)
    assert checked > 3  # the seeded set has real fronts, not single points


@pytest.mark.parametrize(("metric", "dataset", "lower"), [("accuracy", None, False), ("loss", "mmlu", True)])
def test_leaderboard_one_best_row_per_repository(
    seeded: Registry, metric: str, dataset: str | None, lower: bool
) -> None:
    base = "org/base-4"
    fits = fitting_refs(seeded, base)
    values = current(seeded, metric, dataset)
    best: dict[str, float] = {}
    for ref in fits:
        if ref not in values:
            continue
        repo = ref.split(":")[0]
        v = min(values[ref]) if lower else max(values[ref])
        if repo not in best or (v < best[repo] if lower else v > best[repo]):
            best[repo] = v
    expected = sorted(best.values(), reverse=not lower)[:10]
    board = rankings.leaderboard(
        seeded,
        LeaderboardQuery(base=base, metric=metric, dataset=dataset, lower_is_better=lower, limit=10),
        principal=OPERATOR,
    )
    assert [r.score for r in board.rows] == expected
    assert len({r.repo for r in board.rows}) == len(board.rows)
    assert [r.rank for r in board.rows] == list(range(1, len(board.rows) + 1))
    for row in board.rows:
        assert row.ref in fits and row.tier == fits[row.ref]
        assert best[row.repo] == row.score
        assert dataset is None or row.dataset == dataset
    # Filters narrow the same ranking: a task keeps only its rows.
    task_rows = rankings.leaderboard(
        seeded,
        LeaderboardQuery(base=base, metric=metric, task="task-3", lower_is_better=lower),
        principal=OPERATOR,
    ).rows
    assert all(r.task == "task-3" for r in task_rows)


def test_rankings_show_only_what_the_caller_may_read(seeded: Registry) -> None:
    from registry.errors import NotFound
    from registry.services import accounts
    from tests.evals.conftest import user

    board = LeaderboardQuery(base="org/base-5", metric="accuracy")
    front = ParetoQuery(base="org/base-5", metric="accuracy", dataset="mmlu")
    everything = rankings.leaderboard(seeded, board, principal=OPERATOR).rows
    assert everything
    base_only = user(seeded, "bea", {"org": "read"})  # reads the base, not the adapters
    assert rankings.leaderboard(seeded, board, principal=base_only).rows == []
    assert rankings.pareto(seeded, front, principal=base_only).points == []
    both = user(seeded, "cai", {"org": "read", "acme": "read"})
    assert rankings.leaderboard(seeded, board, principal=both).rows == everything
    assert rankings.pareto(seeded, front, principal=both) == rankings.pareto(
        seeded, front, principal=OPERATOR
    )
    adapters_only = user(seeded, "dan", {"acme": "read"})  # the base's name is in a namespace it cannot read
    with pytest.raises(NotFound):
        rankings.leaderboard(seeded, board, principal=adapters_only)
    with pytest.raises(NotFound):
        rankings.pareto(seeded, front, principal=adapters_only)
    accounts.set_namespace_visibility(
        seeded, "acme", True, principal=OPERATOR
    )  # public adapters: readable by all
    assert rankings.leaderboard(seeded, board, principal=base_only).rows == everything
