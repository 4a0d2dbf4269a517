"""One function per job type: typed parameters in, its output published with its success."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from registry.worker.check4bit_job import run_check4bit
from registry.worker.context import JobContext
from registry.worker.export_job import run_export
from registry.worker.merge_job import run_merge
from registry.worker.publish import Published

HANDLERS: dict[str, Callable[[JobContext], Published[Any]]] = {
    "merge": run_merge,
    "export": run_export,
    "check-4bit": run_check4bit,
}
