"""`adapters eval add`, `evals`, `leaderboard`, `pareto`, `compare`, `lineage` end to end with real
PEFT adapters and a real merge job: embedded, and against a server on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Cli, cli_fixture

adapters = cli_fixture("embedded", "postgresql-file")


@pytest.fixture(scope="module")
def wide_lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA trained on a wider Llama (hidden 64): it does not fit the tiny one."""
    from tests.adapters_factory import sized_llama, train_lora

    return train_lora(sized_llama(hidden=64), tmp_path_factory.mktemp("wide") / "lora", steps=1)


def dominated(points: list[dict[str, Any]], p: dict[str, Any]) -> set[str]:
    return {
        o["ref"]
        for o in points
        if p["cost"] <= o["cost"]
        and p["score"] >= o["score"]
        and (p["cost"] < o["cost"] or p["score"] > o["score"])
    }


def test_evals_rankings_and_lineage(adapters: Cli, adapters_dir: Path, wide_lora: Path) -> None:
    adapters("base", "add", str(adapters_dir / "base"), "--name", "tiny-llama")
    push = ["--base", "tiny-llama", "--json"]
    a = adapters.json(
        "push", str(adapters_dir / "lora_a"), "acme/legal", *push[:2], "--eval", "accuracy=0.7@mmlu:test"
    )
    b = adapters.json(
        "push", str(adapters_dir / "lora_b"), "acme/legal", *push[:2], "--eval", "accuracy=0.9@mmlu:test"
    )
    d = adapters.json(
        "push", str(adapters_dir / "lora_dora"), "acme/dora", *push[:2], "--eval", "accuracy=0.8@mmlu:test"
    )
    adapters("push", str(wide_lora), "acme/wide", "--eval", "accuracy=0.99@mmlu:test")  # no base registered

    # eval add / evals: append-only, the newest current, who and when.
    added = adapters.json(
        "eval", "add", "acme/legal:1", "accuracy=0.95@mmlu:test", "f1=0.5", "--note", "rerun"
    )
    assert [(r["metric"], r["value"], r["note"]) for r in added["records"]] == [
        ("f1", 0.5, "rerun"),
        ("accuracy", 0.95, "rerun"),
        ("accuracy", 0.7, None),
    ]
    assert all(r["recorded_by"] and r["created_at"] for r in added["records"])
    assert adapters.json("evals", "acme/legal:1") == added
    assert adapters("eval", "add", "acme/legal:1", "accuracy=nan", ok=False).exit_code == 2
    assert adapters("eval", "add", "acme/legal:1", "accuracy", ok=False).exit_code == 2
    assert "rerun" in adapters("evals", "acme/legal:1").stdout

    # leaderboard: fitting adapters only, one row per repository (its best), both directions.
    board = adapters.json("leaderboard", "--base", "tiny-llama", "--metric", "accuracy")
    assert [(r["ref"], r["score"]) for r in board["rows"]] == [("acme/legal:1", 0.95), ("acme/dora:1", 0.8)]
    assert board["rows"][0]["trainable_params"] == a["info"]["trainable_params"]
    assert board["rows"][0]["tier"] == "exact" and board["rows"][0]["rank"] == 1
    low = adapters.json("leaderboard", "--base", "tiny-llama", "--metric", "accuracy", "--lower-is-better")
    assert [(r["ref"], r["score"]) for r in low["rows"]] == [("acme/dora:1", 0.8), ("acme/legal:2", 0.9)]
    only = adapters.json("leaderboard", "--base", "tiny-llama", "--metric", "accuracy", "--limit", "1")
    assert len(only["rows"]) == 1
    assert (
        adapters.json("leaderboard", "--base", "tiny-llama", "--metric", "f1")["rows"][0]["ref"]
        == "acme/legal:1"
    )
    assert "acme/legal:1" in adapters("leaderboard", "--base", "tiny-llama", "--metric", "accuracy").stdout
    assert adapters("leaderboard", "--base", "nope", "--metric", "accuracy", ok=False).exit_code == 1

    # pareto: exact trainable parameters as the cost; the front and what each front point dominates.
    front = adapters.json(
        "pareto", "--base", "tiny-llama", "--metric", "accuracy", "--dataset", "mmlu", "--all-points"
    )
    points = front["points"]
    assert {p["ref"]: p["cost"] for p in points} == {
        "acme/legal:1": a["info"]["trainable_params"],
        "acme/legal:2": b["info"]["trainable_params"],
        "acme/dora:1": d["info"]["trainable_params"],
    }
    for p in points:
        assert p["on_front"] == (not any(p["ref"] in dominated(points, o) for o in points))
        if p["on_front"]:
            assert set(p["dominates"]) == dominated(points, p) and p["dominated_count"] == len(p["dominates"])
    only_front = adapters.json("pareto", "--base", "tiny-llama", "--metric", "accuracy", "--dataset", "mmlu")
    assert only_front["points"] == [p for p in points if p["on_front"]] and only_front["total"] == 3
    by_rank = adapters.json(
        "pareto", "--base", "tiny-llama", "--metric", "accuracy", "--cost", "rank", "--all-points"
    )
    assert {p["ref"]: p["cost"] for p in by_rank["points"]}["acme/legal:2"] == 8
    assert "Pareto front" in adapters("pareto", "--base", "tiny-llama", "--metric", "accuracy").stdout

    # compare: the fields that differ, parameter counts, every metric side by side.
    cmp = adapters.json("compare", "acme/legal:1", "acme/legal:2", "acme/dora")
    assert {"r", "lora_alpha", "target_modules", "use_dora", "use_rslora"} <= set(cmp["differing"])
    assert "peft_type" not in cmp["differing"] and "task_type" not in cmp["differing"]
    assert [v["ref"] for v in cmp["versions"]] == ["acme/legal:1", "acme/legal:2", "acme/dora:1"]
    assert cmp["metrics"] == ["accuracy@mmlu:test", "f1"]
    assert [v["scores"]["accuracy@mmlu:test"] for v in cmp["versions"]] == [0.95, 0.9, 0.8]
    assert [v["scores"]["f1"] for v in cmp["versions"]] == [0.5, None, None]
    assert [v["config"]["r"] for v in cmp["versions"]] == [4, 8, 4]
    assert "lora_alpha" in adapters("compare", "acme/legal:1", "acme/legal:2").stdout

    # lineage: a real merge job, its parents (weights, method, error), descendants, a deleted parent.
    mix = adapters.json(
        "merge", "acme/legal:1=0.7", "acme/legal:2=0.3", "--into", "acme/mix", "--method", "cat"
    )
    graph = adapters.json("lineage", "acme/mix")
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert graph["root"] == "version:acme/mix:1" and nodes[graph["root"]]["digest"] == mix["digest"]
    merges = {(e["source"], e["weight"], e["method"]) for e in graph["edges"] if e["kind"] == "merge"}
    assert merges == {("version:acme/legal:1", 0.7, "cat"), ("version:acme/legal:2", 0.3, "cat")}
    assert all(e["error"] is not None and e["error"] < 1e-5 for e in graph["edges"] if e["kind"] == "merge")
    assert ("base:" + a["info"]["base_fingerprint"], "version:acme/legal:1", "trained_on") in {
        (e["source"], e["target"], e["kind"]) for e in graph["edges"]
    }
    down = adapters.json("lineage", "acme/legal:1")
    assert {(e["source"], e["target"]) for e in down["edges"] if e["kind"] == "merge"} == {
        ("version:acme/legal:1", "version:acme/mix:1")
    }
    base_graph = adapters.json("lineage", "tiny-llama")
    assert {"version:acme/legal:1", "version:acme/mix:1"} <= {n["id"] for n in base_graph["nodes"]}
    assert "acme/legal:1" in adapters("lineage", "acme/mix").stdout

    adapters("rm", "acme/legal:2")
    after = adapters.json("lineage", "acme/mix")
    gone = [n for n in after["nodes"] if n["kind"] == "deleted"]
    assert [(n["digest"], n["id"]) for n in gone] == [(b["digest"], f"deleted:{b['digest']}")]
    assert any(e["source"] == gone[0]["id"] and e["weight"] == 0.3 for e in after["edges"])
    assert adapters("lineage", "acme/nothing", ok=False).exit_code == 1
