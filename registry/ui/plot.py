"""The score-against-cost scatter with its Pareto front, computed on the server: the panel's full
width (the SVG scales to it), round ticks (1, 2, 5 times a power of ten) and a log scale when the
costs span a decade or more. drawings.html turns it into SVG."""

from __future__ import annotations

import math
from dataclasses import dataclass

from registry.entities import ParetoPoint

SC_W, SC_H, SC_LEFT, SC_BOTTOM, SC_TOP, SC_RIGHT = 1200, 420, 70, 44, 16, 24
LOG_SPAN = 10
"""Costs whose largest is at least this many times the smallest are drawn on a log scale: LoRA
ranks double from one sweep point to the next, and parameter counts then span decades."""


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
    value: float


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
    """A tick's text: 2k, 1.5M, 0.25 (no float noise: the values are round)."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.4g}{unit}"
    return f"{v:.4g}"


def nice_step(span: float, most: int = 6) -> float:
    """The smallest step of 1, 2 or 5 times a power of ten that cuts `span` into at most `most`."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / most
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * power >= raw:
            return m * power
    return 10 * power  # pragma: no cover - the loop returns at m=10


def nice_ticks(lo: float, hi: float, most: int = 6) -> list[float]:
    """Round values (multiples of a 1-2-5 step) within [lo, hi]."""
    step = nice_step(hi - lo, most)
    first = math.ceil(lo / step - 1e-9)
    out = []
    k = first
    while k * step <= hi + step * 1e-9:
        out.append(round(k * step, 12))
        k += 1
    return out


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten within [lo, hi]; with 2 and 5 times them too when at most two and a half
    decades show (one or two decades would otherwise get two or three ticks)."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mults = (1, 2, 5) if math.log10(hi / lo) <= 2.5 else (1,)
    vals = [m * 10.0**k for k in range(a, b + 1) for m in mults]
    return [v for v in vals if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)]


def scatter(points: list[ParetoPoint], cost_name: str, metric: str) -> Scatter:
    """Cost on x, score on y; front points are marked and joined by a line. Each axis keeps a
    margin so no point sits on it, and its ticks are round values inside that range."""
    costs = [max(p.cost, 0) for p in points] or [1]
    scores = [p.score for p in points] or [0.0]
    lo_c, hi_c = min(costs), max(costs)
    log_x = lo_c > 0 and hi_c / lo_c >= LOG_SPAN
    if log_x:
        pad = (math.log10(hi_c) - math.log10(lo_c)) * 0.05
        x_lo, x_hi = 10 ** (math.log10(lo_c) - pad), 10 ** (math.log10(hi_c) + pad)
    else:
        pad_c = (hi_c - lo_c) * 0.05 or (abs(hi_c) * 0.1 or 1.0)
        x_lo, x_hi = max(lo_c - pad_c, 0.0), hi_c + pad_c  # costs are counts: never below 0
    plot_w = SC_W - SC_LEFT - SC_RIGHT

    def fx(c: float) -> float:
        if log_x:
            lo, hi = math.log10(x_lo), math.log10(x_hi)
            t = (math.log10(max(c, x_lo)) - lo) / (hi - lo)
        else:
            t = (c - x_lo) / (x_hi - x_lo)
        return SC_LEFT + t * plot_w

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
    x_vals = log_ticks(x_lo, x_hi) if log_x else nice_ticks(x_lo, x_hi, 8)
    y_vals = nice_ticks(lo_s, hi_s, 6)
    return Scatter(
        width=SC_W,
        height=SC_H,
        left=SC_LEFT,
        top=SC_TOP,
        right=SC_W - SC_RIGHT,
        bottom=SC_H - SC_BOTTOM,
        dots=dots,
        front=" ".join(f"{d.x},{d.y}" for d in front),
        x_ticks=[Tick(round(fx(v), 2), _fmt(v), v) for v in x_vals],
        y_ticks=[Tick(round(fy(v), 2), _fmt(v), v) for v in y_vals],
        log_x=log_x,
        x_label=f"cost: {cost_name}" + (" (log scale)" if log_x else ""),
        y_label=metric,
    )
