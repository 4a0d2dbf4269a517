"""The drawings' geometry: parents left of what was made from them, a cycle that cannot hang the
layout, the scatter's scale and its front line in cost order."""

from __future__ import annotations

from registry.entities import LineageEdge, LineageGraph, LineageNode, ParetoPoint
from registry.ui import svg


def _node(i: str, kind: str = "version") -> LineageNode:
    return LineageNode(id=i, kind=kind, label=i, ref=f"acme/{i}:1" if kind == "version" else None)


def test_lineage_columns_follow_the_edges() -> None:
    graph = LineageGraph(
        root="mix",
        nodes=[_node("mix"), _node("a"), _node("b"), _node("base", "base"), _node("mix2")],
        edges=[
            LineageEdge(source="base", target="a", kind="trained_on"),
            LineageEdge(source="a", target="mix", kind="merge", weight=0.7, method="cat", error=1e-9),
            LineageEdge(source="b", target="mix", kind="merge", weight=-0.3, method="cat"),
            LineageEdge(source="mix", target="mix2", kind="merge", weight=1.0, method="svd"),
        ],
    )
    d = svg.lineage(graph)
    x = {b.id: b.x for b in d.boxes}
    assert x["base"] < x["a"] < x["mix"] < x["mix2"] and x["b"] < x["mix"]
    assert [b.id for b in d.boxes if b.root] == ["mix"]
    assert all(0 <= b.y and b.y + b.h <= d.height and b.x + b.w <= d.width for b in d.boxes)
    labels = sorted(a.label for a in d.arrows)
    assert "merge w=-0.3 cat" in labels and "merge w=0.7 cat err=1e-09" in labels
    assert all(a.x1 < a.x2 for a in d.arrows)  # every arrow points right


def test_a_cycle_in_lineage_still_draws() -> None:
    graph = LineageGraph(
        root="a",
        nodes=[_node("a"), _node("b")],
        edges=[
            LineageEdge(source="a", target="b", kind="merge"),
            LineageEdge(source="b", target="a", kind="merge"),
        ],
    )
    d = svg.lineage(graph)
    assert len(d.boxes) == 2 and len(d.arrows) == 2


def _point(ref: str, score: float, cost: int, front: bool) -> ParetoPoint:
    return ParetoPoint(
        ref=ref, digest="sha256:" + "0" * 64, repo=ref.split(":")[0], number=1, peft_type="LORA",
        score=score, cost=cost, on_front=front,
    )  # fmt: skip


def test_scatter_scale_and_front() -> None:
    points = [
        _point("acme/big:1", 0.9, 100_000, True),
        _point("acme/small:1", 0.6, 1_000, True),
        _point("acme/worse:1", 0.5, 50_000, False),
    ]
    s = svg.scatter(points, "params", "accuracy")
    assert s.log_x  # 100x spread
    dots = {d.ref: d for d in s.dots}
    assert dots["acme/small:1"].x < dots["acme/worse:1"].x < dots["acme/big:1"].x
    assert dots["acme/big:1"].y < dots["acme/small:1"].y < dots["acme/worse:1"].y  # higher is up
    assert (
        s.front
        == f"{dots['acme/small:1'].x},{dots['acme/small:1'].y} {dots['acme/big:1'].x},{dots['acme/big:1'].y}"
    )
    assert all(s.left < d.x < s.right and s.top < d.y < s.bottom for d in s.dots)
    linear = svg.scatter([points[1], _point("acme/mid:1", 0.7, 15_000, True)], "params", "accuracy")
    assert not linear.log_x and len(linear.x_ticks) == 5
    single = svg.scatter(points[:1], "rank", "accuracy")  # one point: no division by zero
    assert single.dots[0].x > single.left
