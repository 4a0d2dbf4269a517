"""What each kind of job gives: its result, stored on the job row and served as JSON."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from registry.entities import FileInfo


class MergeResult(BaseModel):
    """A merge job's output: the version it pushed."""

    kind: Literal["version"] = "version"
    ref: str
    """repo:version of the merged adapter."""
    repo: str
    version: int
    digest: str
    created: bool
    """False when the merge equals the latest version of the repository (no new version)."""


class ExportResult(BaseModel):
    """An export job's output: the derived base it registered, with its uploaded files."""

    kind: Literal["base"] = "base"
    base_id: int
    ref: str | None
    """The derived base's fingerprint."""
    names: list[str]
    fingerprint: str | None
    files: list[FileInfo]


class Check4bitResult(BaseModel):
    """A check-4bit job's output: the verdict recorded on the version, and the full report."""

    kind: Literal["check-4bit"] = "check-4bit"
    ref: str
    verdict: Literal["pass", "warn", "fail"]
    report: dict[str, Any]
    """The report of registry.tensors.qlora.check_4bit with the adapter and base it ran on."""


JobResult = MergeResult | ExportResult | Check4bitResult
