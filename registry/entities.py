"""Plain entities returned by the service layer and served by the API (no ORM rows leak out)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class FileInfo(BaseModel):
    path: str
    size: int
    sha256: str


class EvalScoreIn(BaseModel):
    metric: str = Field(min_length=1, max_length=128)
    value: float
    dataset: str | None = Field(default=None, max_length=256)
    split: str | None = Field(default=None, max_length=64)


class BaseModelRef(BaseModel):
    name: str | None = None
    revision: str | None = None


class VersionInfo(BaseModel):
    repo: str
    version: int
    digest: str
    ref: str
    created_at: datetime
    pushed_by: str
    message: str | None
    task: str | None
    peft_type: str
    task_type: str | None
    r: int | None
    lora_alpha: float | None
    target_modules: list[str] | str | None
    lora_dropout: float | None
    use_rslora: bool
    use_dora: bool
    trainable_params: int
    adapter_bytes: int
    total_bytes: int
    base_model: BaseModelRef
    evals: list[EvalScoreIn]
    aliases: list[str]
    files: list[FileInfo]
    config: dict[str, Any]
    lineage: dict[str, Any] | None = None


class PushRequest(BaseModel):
    files: list[FileInfo] = Field(min_length=1, max_length=10_000)
    base: str | None = Field(default=None, max_length=256)
    base_revision: str | None = Field(default=None, max_length=128)
    task: str | None = Field(default=None, max_length=128)
    evals: list[EvalScoreIn] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    message: str | None = Field(default=None, max_length=10_000)
    lineage: dict[str, Any] | None = None
    """Set by the merge engine: how this version was derived from others."""


class PushResult(BaseModel):
    created: bool
    """False when the content equals the latest version: no new version was made."""
    repo: str
    version: int
    digest: str
    detail: str
    info: VersionInfo


class RepoInfo(BaseModel):
    repo: str
    latest_version: int
    created_at: datetime
    aliases: dict[str, int]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class VersionFilter(BaseModel):
    repo: str | None = None
    task: str | None = None
    peft_type: str | None = None
    base: str | None = None
    latest_only: bool = False


class AliasInfo(BaseModel):
    repo: str
    alias: str
    version: int
    digest: str


class MissingBlobs(BaseModel):
    missing: list[str]
