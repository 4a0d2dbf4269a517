"""`adapters ui`: open the web UI (issue 13)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
