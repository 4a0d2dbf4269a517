"""`adapters generate`: try an adapter from the shell (issue 14)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
