"""The drawings' geometry: parents left of what was made from them, labels that touch no other
label, line or node, a cycle that cannot hang the layout, the scatter's scale, round ticks and its
front line in cost order."""

from __future__ import annotations

from itertools import pairwise

from registry.entities import LineageEdge, LineageGraph, LineageNode, ParetoPoint
from registry.ui import plot, svg


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
    assert all(p[0] <= q[0] for a in d.arrows for p, q in pairwise(a.points))  # all rightwards


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
    s = plot.scatter(points, "params", "accuracy")
    assert s.log_x  # 100x spread
    dots = {d.ref: d for d in s.dots}
    assert dots["acme/small:1"].x < dots["acme/worse:1"].x < dots["acme/big:1"].x
    assert dots["acme/big:1"].y < dots["acme/small:1"].y < dots["acme/worse:1"].y  # higher is up
    assert (
        s.front
        == f"{dots['acme/small:1'].x},{dots['acme/small:1'].y} {dots['acme/big:1'].x},{dots['acme/big:1'].y}"
    )
    assert all(s.left < d.x < s.right and s.top < d.y < s.bottom for d in s.dots)
    mid = _point("acme/mid:1", 0.7, 15_000, True)
    linear = plot.scatter([_point("acme/s:1", 0.6, 2_000, True), mid], "params", "accuracy")
    assert not linear.log_x  # 7.5x: under a decade
    assert [t.value for t in linear.x_ticks] == [2000, 4000, 6000, 8000, 10_000, 12_000, 14_000]
    assert [t.label for t in s.x_ticks] == ["1k", "2k", "5k", "10k", "20k", "50k", "100k"]
    single = plot.scatter(points[:1], "rank", "accuracy")  # one point: no division by zero
    assert single.dots[0].x > single.left


def segment_hits_box(p: tuple[float, float], q: tuple[float, float], box: svg.LabelBox) -> bool:
    """Whether the segment p-q enters the open rectangle `box` (Liang-Barsky clipping)."""
    (x0, y0), (x1, y1) = p, q
    dx, dy = x1 - x0, y1 - y0
    lo, hi = 0.0, 1.0
    for step, room in (
        (-dx, x0 - box.x),
        (dx, box.x + box.w - x0),
        (-dy, y0 - box.y),
        (dy, box.y + box.h - y0),
    ):
        if step == 0:
            if room <= 0:
                return False
            continue
        t = room / step
        if step < 0:
            lo = max(lo, t)
        else:
            hi = min(hi, t)
    return hi - lo > 1e-9  # a segment that starts on a side (float noise) does not enter


def many_children() -> LineageGraph:
    """Two parents merged four ways (eight labelled edges), a skip edge, an export with a label."""
    nodes = [_node("base", "base"), _node("a"), _node("b")] + [_node(f"m{i}") for i in range(4)]
    nodes.append(_node("exported", "base"))
    edges = [
        LineageEdge(source="base", target="a", kind="trained_on"),
        LineageEdge(source="base", target="b", kind="trained_on"),
        LineageEdge(source="base", target="m0", kind="trained_on"),
        LineageEdge(source="m1", target="exported", kind="export"),
        LineageEdge(source="base", target="exported", kind="export"),
    ]
    for i in range(4):
        edges.append(
            LineageEdge(
                source="a", target=f"m{i}", kind="merge", weight=0.5 + i / 10, method="ties", error=1e-7
            )
        )
        edges.append(
            LineageEdge(source="b", target=f"m{i}", kind="merge", weight=0.5 - i / 10, method="dare_ties")
        )
    return LineageGraph(root="a", nodes=nodes, edges=edges)


def test_lineage_labels_never_touch_labels_lines_or_nodes() -> None:
    d = svg.lineage(many_children())
    labelled = [a for a in d.arrows if a.label_box]
    assert len(labelled) == 10  # eight merges and two exports; trained_on is said by the legend
    for i, a in enumerate(labelled):
        assert a.label_box is not None
        for other in labelled[i + 1 :]:
            assert other.label_box is not None and not a.label_box.overlaps(other.label_box), (a, other)
        for e in d.arrows:
            for p, q in pairwise(e.points):
                assert not segment_hits_box(p, q, a.label_box), (a.label, e.label, p, q)
        for b in d.boxes:
            assert not a.label_box.overlaps(svg.LabelBox("", b.x, b.y, b.w, b.h)), (a.label, b.id)
    nodes = [svg.LabelBox("", b.x, b.y, b.w, b.h) for b in d.boxes]
    for e in d.arrows:  # lines run between nodes, never through one (ends on a node's side)
        for p, q in pairwise(e.points):
            assert not any(segment_hits_box(p, q, n) for n in nodes), (e.label, p, q)
    assert all(0 <= b.y and b.y + b.h <= d.height and b.x + b.w <= d.width for b in d.boxes)
    assert all(
        0 <= a.label_box.y and a.label_box.x + a.label_box.w <= d.width for a in labelled if a.label_box
    )


def test_round_ticks() -> None:
    assert plot.nice_ticks(0.52, 0.93) == [0.6, 0.7, 0.8, 0.9]
    assert plot.nice_ticks(0, 1_000_000, 6) == [0, 200_000, 400_000, 600_000, 800_000, 1_000_000]
    assert plot.log_ticks(900, 1.1e6) == [1e3, 1e4, 1e5, 1e6]
    assert plot.log_ticks(1500, 90_000) == [2000, 5000, 10_000, 20_000, 50_000]
