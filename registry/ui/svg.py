"""Geometry for the two drawings, computed on the server: the lineage graph (layered left to right)
and the score-against-cost scatter with its Pareto front. Pure arithmetic over the services'
entities; the templates turn these shapes into SVG elements (autoescaped, so a label is text)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from registry.entities import LineageGraph, ParetoPoint

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 190, 40, 150, 22, 12


@dataclass
class Box:
    id: str
    label: str
    kind: str
    x: float
    y: float
    w: float
    h: float
    ref: str | None
    root: bool


@dataclass
class Arrow:
    x1: float
    y1: float
    x2: float
    y2: float
    kind: str
    label: str

    @property
    def label_x(self) -> float:
        """Labels sit on the first half of the line: where edges into one node converge, the
        second half is crowded."""
        return self.x1 + (self.x2 - self.x1) * 0.45

    @property
    def label_y(self) -> float:
        return self.y1 + (self.y2 - self.y1) * 0.45 - 5


@dataclass
class Drawing:
    width: float
    height: float
    boxes: list[Box] = field(default_factory=list)
    arrows: list[Arrow] = field(default_factory=list)


def _short(text: str, n: int = 26) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _layers(graph: LineageGraph) -> dict[str, int]:
    """Each node's column: the longest path reaching it from a node with no parent. Bounded by the
    node count, so a cycle (which lineage should never hold) cannot loop forever."""
    ids = [n.id for n in graph.nodes]
    layer = dict.fromkeys(ids, 0)
    edges = [(e.source, e.target) for e in graph.edges if e.source in layer and e.target in layer]
    for _ in range(len(ids)):
        changed = False
        for s, t in edges:
            if layer[t] < layer[s] + 1 and layer[s] + 1 < len(ids):
                layer[t] = layer[s] + 1
                changed = True
        if not changed:
            break
    return layer


def _edge_label(kind: str, weight: float | None, method: str | None, error: float | None) -> str:
    parts = [kind]
    if weight is not None:
        parts.append(f"w={weight:g}")
    if method:
        parts.append(method)
    if error is not None:
        parts.append(f"err={error:.2g}")
    return " ".join(parts)


def lineage(graph: LineageGraph) -> Drawing:
    """Columns by depth, parents left of what was made from them; the root outlined."""
    layer = _layers(graph)
    columns: dict[int, list[str]] = {}
    for n in graph.nodes:
        columns.setdefault(layer[n.id], []).append(n.id)
    rows = max((len(c) for c in columns.values()), default=1)
    width = PAD * 2 + len(columns) * NODE_W + max(len(columns) - 1, 0) * GAP_X
    height = PAD * 2 + rows * NODE_H + (rows - 1) * GAP_Y
    where: dict[str, Box] = {}
    for n in graph.nodes:
        col = layer[n.id]
        row = columns[col].index(n.id)
        offset = (height - PAD * 2 - (len(columns[col]) * (NODE_H + GAP_Y) - GAP_Y)) / 2
        where[n.id] = Box(
            id=n.id,
            label=_short(n.label),
            kind=n.kind,
            x=PAD + col * (NODE_W + GAP_X),
            y=PAD + offset + row * (NODE_H + GAP_Y),
            w=NODE_W,
            h=NODE_H,
            ref=n.ref if n.kind == "version" else None,
            root=n.id == graph.root,
        )
    arrows = []
    for e in graph.edges:
        a, b = where.get(e.source), where.get(e.target)
        if a is None or b is None:
            continue
        arrows.append(
            Arrow(
                x1=a.x + a.w,
                y1=a.y + a.h / 2,
                x2=b.x,
                y2=b.y + b.h / 2,
                kind=e.kind,
                label=_edge_label(e.kind, e.weight, e.method, e.error),
            )
        )
    return Drawing(width=width, height=height, boxes=list(where.values()), arrows=arrows)


# ---------------------------------------------------------------- scatter
SC_W, SC_H, SC_LEFT, SC_BOTTOM, SC_TOP, SC_RIGHT = 640, 360, 70, 44, 16, 20


@dataclass
class Dot:
    x: float
    y: float
    ref: str
    score: float
    cost: int
    on_front: bool
    title: str


@dataclass
class Tick:
    at: float
    label: str


@dataclass
class Scatter:
    width: int
    height: int
    left: int
    top: int
    right: int
    bottom: int
    dots: list[Dot]
    front: str
    """The front as SVG polyline points, by cost."""
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    log_x: bool
    x_label: str
    y_label: str


def _fmt(v: float) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:.3g}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


def scatter(points: list[ParetoPoint], cost_name: str, metric: str) -> Scatter:
    """Cost on x (log scale when it spans more than 20x: LoRA ranks double from one sweep point to
    the next), score on y; front points are marked and joined by a line."""
    costs = [max(p.cost, 0) for p in points] or [1]
    scores = [p.score for p in points] or [0.0]
    lo_c, hi_c = min(costs), max(costs)
    log_x = lo_c > 0 and hi_c / lo_c > 20

    def fx(c: float) -> float:
        """A 5% margin on each side: no point sits on an axis."""
        if log_x:
            lo, hi = math.log10(lo_c), math.log10(hi_c)
            t = (math.log10(max(c, lo_c)) - lo) / (hi - lo)
        else:
            t = (c - lo_c) / (hi_c - lo_c) if hi_c > lo_c else 0.5
        return SC_LEFT + (0.05 + 0.9 * t) * (SC_W - SC_LEFT - SC_RIGHT)

    lo_s, hi_s = min(scores), max(scores)
    pad = (hi_s - lo_s) * 0.08 or (abs(hi_s) * 0.05 or 1.0)
    lo_s, hi_s = lo_s - pad, hi_s + pad

    def fy(s: float) -> float:
        return SC_TOP + (1 - (s - lo_s) / (hi_s - lo_s)) * (SC_H - SC_TOP - SC_BOTTOM)

    dots = [
        Dot(
            x=round(fx(p.cost), 2),
            y=round(fy(p.score), 2),
            ref=p.ref,
            score=p.score,
            cost=p.cost,
            on_front=p.on_front,
            title=f"{p.ref}: {metric} {p.score:.4g}, {cost_name} {p.cost:,}"
            + (" (Pareto front)" if p.on_front else ""),
        )
        for p in points
    ]
    front = sorted((d for d in dots if d.on_front), key=lambda d: (d.cost, d.x))
    if log_x:
        lo, hi = math.floor(math.log10(lo_c)), math.ceil(math.log10(hi_c))
        x_vals = [10.0**k for k in range(lo, hi + 1) if lo_c <= 10.0**k <= hi_c] or [lo_c, hi_c]
    else:
        x_vals = [lo_c + (hi_c - lo_c) * i / 4 for i in range(5)] if hi_c > lo_c else [lo_c]
    y_vals = [lo_s + (hi_s - lo_s) * i / 4 for i in range(5)]
    return Scatter(
        width=SC_W,
        height=SC_H,
        left=SC_LEFT,
        top=SC_TOP,
        right=SC_W - SC_RIGHT,
        bottom=SC_H - SC_BOTTOM,
        dots=dots,
        front=" ".join(f"{d.x},{d.y}" for d in front),
        x_ticks=[Tick(round(fx(v), 2), _fmt(v)) for v in x_vals],
        y_ticks=[Tick(round(fy(v), 2), _fmt(v)) for v in y_vals],
        log_x=log_x,
        x_label=f"cost: {cost_name}" + (" (log scale)" if log_x else ""),
        y_label=metric,
    )
