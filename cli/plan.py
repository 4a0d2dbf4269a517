"""`adapters plan`: trainable parameters, memory by part, and a method that fits (issue 14)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
