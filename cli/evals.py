"""`adapters eval add`, `evals`, `leaderboard`, `pareto`, `compare`, `lineage` (issue 13)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
