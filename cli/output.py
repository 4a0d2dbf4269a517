"""Printing (rich on a terminal, one JSON document with --json), progress bars and error exits."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from registry.errors import RegistryError
from storage import StorageError

F = TypeVar("F", bound=Callable[..., Any])
err_console = Console(stderr=True, soft_wrap=True)
# Pipes get a wide console so tables are not squeezed to 80 columns.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")(f)  # type: ignore[return-value]


def emit_json(doc: Any) -> None:
    if isinstance(doc, BaseModel):
        doc = doc.model_dump(mode="json")
    click.echo(json.dumps(doc, indent=2, default=str))


class RichProgress:
    """A TransferProgress drawn on stderr; silent when stderr is not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and err_console.is_terminal
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def start(self, description: str, total_bytes: int) -> None:
        if not self.enabled:
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total_bytes)

    def advance(self, n: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def handle_errors(f: F) -> F:
    """Map registry errors, refused values (pydantic) and OS errors to one line on stderr and exit 1;
    ADAPTERS_DEBUG=1 shows the traceback."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except (RegistryError, StorageError) as err:
            if os.environ.get("ADAPTERS_DEBUG"):
                raise
            code = getattr(err, "code", "error")
            if kwargs.get("as_json"):
                emit_json({"error": {"code": code, "message": str(err)}})
            err_console.print(f"[red]error[/red] ({code}): {err}", highlight=False, soft_wrap=True)
            sys.exit(1)
        except ValidationError as err:  # a value refused while building a request entity
            if os.environ.get("ADAPTERS_DEBUG"):
                raise
            message = validation_message(err)
            if kwargs.get("as_json"):
                emit_json({"error": {"code": "validation_error", "message": message}})
            err_console.print(
                f"[red]error[/red] (validation_error): {message}", highlight=False, soft_wrap=True
            )
            sys.exit(1)
        except OSError as err:
            if os.environ.get("ADAPTERS_DEBUG"):
                raise
            err_console.print(f"[red]error[/red] (os_error): {err}", highlight=False, soft_wrap=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def validation_message(err: ValidationError) -> str:
    """One line for a pydantic ValidationError: the first error's location and message."""
    errors = err.errors(include_url=False, include_input=False)
    if not errors:
        return str(err).splitlines()[0]
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    line = f"{where}: {first['msg']}" if where else str(first["msg"])
    more = len(errors) - 1
    return line.replace("\n", " ") + (f" (and {more} more)" if more else "")


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
