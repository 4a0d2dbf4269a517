"""The fine-tuning planner: trainable parameters and memory by part for each PEFT method on a
registered base, and a method that fits. Pure arithmetic over the base's architecture facts and
module table (no database, no torch); the CLI (`adapters plan`) feeds it what the client returns."""

from registry.planning.layout import Layout
from registry.planning.plan import METHOD_NAMES, Adjustment, Plan, PlanOptions, make_plan
from registry.planning.recommend import Evidence, Hints, Recommendation, recommend
from registry.planning.search import adjustments, plan_or_adjust
from registry.planning.units import human

__all__ = [
    "METHOD_NAMES",
    "Adjustment",
    "Evidence",
    "Hints",
    "Layout",
    "Plan",
    "PlanOptions",
    "Recommendation",
    "adjustments",
    "human",
    "make_plan",
    "plan_or_adjust",
    "recommend",
]
