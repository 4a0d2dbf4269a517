"""Printing (rich on a terminal, one JSON document with --json), transfer progress and error exits."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

if TYPE_CHECKING:
    from pydantic import ValidationError
    from rich.console import Console
    from rich.progress import Progress, TaskID

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class _LazyConsole:
    """A rich Console built on first use: `--json` and `--help` never pay for rich.console."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def _target(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)

    def __enter__(self) -> Console:
        return self._target().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._target().__exit__(*exc)


err_console: Console = _LazyConsole(stderr=True, soft_wrap=True)  # type: ignore[assignment]
# Pipes get a wide console so tables are not squeezed to 80 columns.
console: Console = _LazyConsole(soft_wrap=True, width=None if sys.stdout.isatty() else 160)  # type: ignore[assignment]


def json_option(f: Callable[P, R]) -> Callable[P, R]:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")(f)


def jsonable(doc: Any) -> Any:
    """Entities (pydantic models, recognised without importing pydantic), and lists and dicts of
    them, as plain JSON values."""
    if hasattr(doc, "model_dump"):
        return doc.model_dump(mode="json")
    if isinstance(doc, list | tuple):
        return [jsonable(item) for item in doc]
    if isinstance(doc, dict):
        return {key: jsonable(value) for key, value in doc.items()}
    return doc


def emit_json(doc: Any) -> None:
    click.echo(json.dumps(jsonable(doc), indent=2, default=str))


def emit(doc: T, as_json: bool, render: Callable[[T], None]) -> None:
    """What a command prints: `doc` as one JSON document with --json, else `render(doc)` for people."""
    if as_json:
        emit_json(doc)
    else:
        render(doc)


def say(line: str) -> None:
    """One line for people on stdout (rich markup, no highlighting)."""
    console.print(line, highlight=False)


class RichProgress:
    """A TransferProgress drawn on stderr; silent when stderr is not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and err_console.is_terminal
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def start(self, description: str, total_bytes: int) -> None:
        if not self.enabled:
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

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


def handle_errors(f: Callable[P, R]) -> Callable[P, R]:
    """Map registry errors, refused values (pydantic) and OS errors to one `error (code): message`
    line on stderr and exit 1 (with --json, also one JSON error document on stdout);
    ADAPTERS_DEBUG=1 shows the traceback."""

    @functools.wraps(f)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return f(*args, **kwargs)
        except Exception as err:  # error_line tells the registry's kinds (one line) from a bug
            line = error_line(err)
            if line is None or os.environ.get("ADAPTERS_DEBUG"):
                raise
            code, message = line
            if kwargs.get("as_json"):
                emit_json({"error": {"code": code, "message": message}})
            err_console.print(f"[red]error[/red] ({code}): {message}", highlight=False, soft_wrap=True)
            sys.exit(1)

    return wrapper


def error_line(err: Exception) -> tuple[str, str] | None:
    """(code, message) of an error the CLI reports in one line; None for a bug (a traceback)."""
    from registry.errors import RegistryError, Unauthenticated  # only on failure: start-up does not pay
    from storage import StorageError

    if isinstance(err, Unauthenticated):  # the server speaks HTTP; a CLI user needs the command
        message = str(err).removesuffix(": pass Authorization: Bearer <token>")
        return err.code, f"{message}; log in with `adapters login` or set ADAPTERS_TOKEN"
    if isinstance(err, RegistryError | StorageError):
        return getattr(err, "code", "error"), str(err)
    if isinstance(err, OSError):
        return "os_error", str(err)
    from pydantic import ValidationError  # only on failure: start-up does not pay for pydantic

    if isinstance(err, ValidationError):  # a value refused while building a request entity
        return "validation_error", validation_message(err)
    return None


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
