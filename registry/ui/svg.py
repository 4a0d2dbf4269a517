"""The lineage graph's layout, computed on the server: a layered drawing (parents left of what was
made from them) in the manner of Sugiyama's method, where each edge label owns a slot no line and
no other label enters. Pure arithmetic over the services' entities; drawings.html turns these
shapes into SVG elements (autoescaped, so a label is text). The scatter lives in ui/plot.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

from registry.entities import LineageEdge, LineageGraph

NODE_W, NODE_H, NODE_GAP, PAD = 190, 40, 22, 12
WAYPOINT_H, WAYPOINT_GAP = 6, 8
"""An edge that skips a column passes it through a waypoint: a thin slot stacked with the nodes."""
FAN = 36
"""The slanted run between a column and a gap's lane: every bend happens here, where no label is."""
CHAR_W, LABEL_H, LABEL_GAP, TRACK_GAP = 6.2, 14, 6, 8
"""Labels are 10 px system-ui text: Chromium measured 4.6-5.4 px a character on the labels merges
make ("merge w=0.7 cat err=1e-09" is 124 px); 6.2 leaves room for a wider fallback font."""
SWEEPS = 4


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
class LabelBox:
    """An edge label's slot: the text sits inside, left-aligned, its baseline `baseline`."""

    text: str
    x: float
    y: float
    w: float
    h: float

    @property
    def baseline(self) -> float:
        return self.y + self.h - 3

    def overlaps(self, other: LabelBox) -> bool:
        return not (
            self.x + self.w <= other.x
            or other.x + other.w <= self.x
            or self.y + self.h <= other.y
            or other.y + other.h <= self.y
        )


@dataclass
class Arrow:
    points: list[tuple[float, float]]
    kind: str
    label: str
    """The edge's description (its hover title); drawn in `label_box` when it has one."""
    label_box: LabelBox | None = None

    @property
    def path(self) -> str:
        return " ".join(f"{x:g},{y:g}" for x, y in self.points)


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


def edge_label(e: LineageEdge) -> str:
    parts = [e.kind]
    if e.weight is not None:
        parts.append(f"w={e.weight:g}")
    if e.method:
        parts.append(e.method)
    if e.error is not None:
        parts.append(f"err={e.error:.2g}")
    return " ".join(parts)


def _drawn_label(e: LineageEdge) -> str | None:
    """What is written on the edge: nothing on `trained_on` (dashed, said by the legend)."""
    return None if e.kind == "trained_on" else _short(edge_label(e), 40)


@dataclass
class _Track:
    """An edge's horizontal run through one gap's lane."""

    edge: int
    gap: int
    y_in: float = 0.0
    y_out: float = 0.0
    y: float = 0.0
    label: str | None = None


def _order(columns: list[list[str]], links: list[tuple[str, str]]) -> None:
    """Order each column by the mean position of its neighbours (barycenter sweeps, down and up):
    fewer crossings, children beside their parent."""
    preds: dict[str, list[str]] = {}
    succs: dict[str, list[str]] = {}
    for a, b in links:
        succs.setdefault(a, []).append(b)
        preds.setdefault(b, []).append(a)
    for sweep in range(SWEEPS):
        down = sweep % 2 == 0
        cols = range(1, len(columns)) if down else range(len(columns) - 2, -1, -1)
        for c in cols:
            ref = columns[c - 1] if down else columns[c + 1]
            where = {item: i for i, item in enumerate(ref)}
            near = preds if down else succs
            keyed = []
            for i, item in enumerate(columns[c]):
                at = [where[n] for n in near.get(item, []) if n in where]
                keyed.append((sum(at) / len(at) if at else float(i), i, item))
            columns[c][:] = [item for _, _, item in sorted(keyed)]


def lineage(graph: LineageGraph) -> Drawing:
    """Columns by depth; each edge runs through a lane in every gap it crosses, at its own height,
    and its label sits just above its run in the first of them: labels never touch one another,
    a line, or a node. The root is outlined."""
    layer = _layers(graph)
    ncols = max(layer.values(), default=0) + 1
    columns: list[list[str]] = [[] for _ in range(ncols)]
    for n in graph.nodes:
        columns[layer[n.id]].append(n.id)
    edges = [e for e in graph.edges if e.source in layer and e.target in layer]
    # An edge that skips columns gets a waypoint in each; the chain of links orders the columns.
    chains: list[list[str]] = []
    links: list[tuple[str, str]] = []
    for i, e in enumerate(edges):
        chain = [e.source]
        for c in range(layer[e.source] + 1, layer[e.target]):
            columns[c].append(f"~{i}:{c}")
            chain.append(f"~{i}:{c}")
        chain.append(e.target)
        chains.append(chain)
        if layer[e.target] > layer[e.source]:
            links.extend(pairwise(chain))
    _order(columns, links)

    # Heights: stack each column, then centre it on the tallest.
    def height_of(item: str) -> float:
        return WAYPOINT_H if item.startswith("~") else NODE_H

    top: dict[str, float] = {}
    stacks = []
    for col in columns:
        y, spans = 0.0, []
        for item in col:
            top[item] = y
            spans.append(y)
            y += height_of(item) + (WAYPOINT_GAP if item.startswith("~") else NODE_GAP)
        stacks.append(max(y - NODE_GAP, 0.0))
    tallest = max(stacks, default=0.0)
    for col, h in zip(columns, stacks, strict=True):
        for item in col:
            top[item] += (tallest - h) / 2

    def mid(item: str) -> float:
        return top[item] + height_of(item) / 2

    # Tracks: one per edge and gap crossed, placed near the middle of their ends, in order.
    tracks: list[list[_Track]] = [[] for _ in range(max(ncols - 1, 0))]
    by_edge: dict[int, list[_Track]] = {}
    for i, e in enumerate(edges):
        chain = chains[i]
        if layer[e.target] <= layer[e.source]:
            continue  # a cycle's back edge: drawn straight, without a lane
        for k, c in enumerate(range(layer[e.source], layer[e.target])):
            t = _Track(i, c, y_in=mid(chain[k]), y_out=mid(chain[k + 1]))
            t.label = _drawn_label(e) if k == 0 else None
            tracks[c].append(t)
            by_edge.setdefault(i, []).append(t)
    lane_w = []
    for lane in tracks:
        lane.sort(key=lambda t: ((t.y_in + t.y_out) / 2, t.y_in, t.y_out, t.edge))
        y = float("-inf")
        for t in lane:
            step = LABEL_H + LABEL_GAP if t.label else TRACK_GAP
            t.y = max((t.y_in + t.y_out) / 2, y + step)
            y = t.y
        if lane:  # the greedy pass only pushes down: centre the lane on what it wanted
            shift = sum((t.y_in + t.y_out) / 2 - t.y for t in lane) / len(lane)
            for t in lane:
                t.y += shift
        lane_w.append(max([len(t.label) * CHAR_W for t in lane if t.label] + [24.0]))

    col_x = [float(PAD)]
    for c in range(ncols - 1):
        col_x.append(col_x[c] + NODE_W + 2 * FAN + lane_w[c])

    arrows: list[Arrow] = []
    for i, e in enumerate(edges):
        src_x, dst_x = col_x[layer[e.source]], col_x[layer[e.target]]
        if i not in by_edge:
            arrows.append(
                Arrow([(src_x + NODE_W, mid(e.source)), (dst_x, mid(e.target))], e.kind, edge_label(e))
            )
            continue
        points = [(src_x + NODE_W, mid(e.source))]
        box = None
        for k, t in enumerate(by_edge[i]):
            x0 = col_x[t.gap] + NODE_W + FAN
            points += [(x0, t.y), (x0 + lane_w[t.gap], t.y)]
            if t.label:
                w = len(t.label) * CHAR_W
                box = LabelBox(t.label, x0 + (lane_w[t.gap] - w) / 2, t.y - LABEL_H - 1, w, LABEL_H)
            waypoint = chains[i][k + 1]
            if waypoint.startswith("~"):
                cx = col_x[t.gap + 1]
                points += [(cx, mid(waypoint)), (cx + NODE_W, mid(waypoint))]
        points.append((dst_x, mid(e.target)))
        arrows.append(Arrow(points, e.kind, edge_label(e), box))

    boxes = [
        Box(
            id=n.id,
            label=_short(n.label),
            kind=n.kind,
            x=col_x[layer[n.id]],
            y=top[n.id],
            w=NODE_W,
            h=NODE_H,
            ref=n.ref if n.kind == "version" else None,
            root=n.id == graph.root,
        )
        for n in graph.nodes
    ]
    # Everything placed: move it below the top margin, and size the drawing to hold it.
    ys = [b.y for b in boxes] + [y for a in arrows for _, y in a.points]
    ys += [a.label_box.y for a in arrows if a.label_box]
    lift = PAD - min(ys, default=PAD)
    for b in boxes:
        b.y = round(b.y + lift, 2)
    for a in arrows:
        a.points = [(round(x, 2), round(y + lift, 2)) for x, y in a.points]
        if a.label_box:
            a.label_box.y = round(a.label_box.y + lift, 2)
            a.label_box.x = round(a.label_box.x, 2)
    bottom = [b.y + b.h for b in boxes] + [y for a in arrows for _, y in a.points]
    width = col_x[-1] + NODE_W + PAD if graph.nodes else 2 * PAD
    return Drawing(
        width=round(width, 2), height=round(max(bottom, default=0) + PAD, 2), boxes=boxes, arrows=arrows
    )
