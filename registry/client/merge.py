"""`adapters merge` inputs: REF=WEIGHT parsed on the client (the merge itself is a job:
registry.worker.merge_job)."""

from __future__ import annotations

from dataclasses import dataclass

from registry.client.args import finite_number, name_equals_number


@dataclass(frozen=True)
class MergeInput:
    ref: str
    weight: float


def parse_merge_input(text: str) -> MergeInput:
    """REF=WEIGHT, e.g. acme/legal@production=0.7 or acme/medical:2=-0.3."""
    usage = "REF=WEIGHT, e.g. acme/legal@production=0.7"
    ref, weight = name_equals_number(text, usage, split_last=True)
    return MergeInput(ref, finite_number(weight, text, usage))
