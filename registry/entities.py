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


class QloraCheckSummary(BaseModel):
    """The latest `check-4bit` answer for a version on one base."""

    base: str
    base_fingerprint: str | None
    verdict: str
    checked_at: datetime
    job: int | None = None
    reasons: list[str] = Field(default_factory=list)


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
    base_fingerprint: str | None = None
    """Fingerprint of the registered base it is linked to; None when unlinked or structure-only."""
    base_linked: bool = False
    fit_override: dict[str, Any] | None = None
    qlora_checks: list[QloraCheckSummary] = Field(default_factory=list)


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
    force: bool = False
    """Record the version even if the fit check against its known base refuses it."""


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


class ModuleInfo(BaseModel):
    name: str
    kind: str
    in_features: int
    out_features: int


class BaseNameInfo(BaseModel):
    name: str
    revision: str | None = None


class BaseRegistration(BaseModel):
    """What a client computed from a model folder (or a config.json alone) and sends to register."""

    names: list[BaseNameInfo] = Field(default_factory=list)
    fingerprint: str | None = None
    structure_signature: str
    architectures: list[str] = Field(default_factory=list)
    model_type: str | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    num_heads: int | None = None
    num_kv_heads: int | None = None
    vocab_size: int | None = None
    param_count: int = 0
    dtype: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    modules: list[ModuleInfo] = Field(max_length=200_000)
    files: list[FileInfo] | None = None
    """Uploaded files (weights, config, tokenizer), when --upload."""
    lineage: dict[str, Any] | None = None
    """For a derived model (export): the base fingerprint and adapter digest it was made from."""


class BaseInfo(BaseModel):
    id: int
    names: list[BaseNameInfo]
    fingerprint: str | None
    structure_signature: str
    architectures: list[str]
    model_type: str | None
    hidden_size: int | None
    num_layers: int | None
    num_heads: int | None
    num_kv_heads: int | None
    vocab_size: int | None
    param_count: int
    dtype: str | None
    uploaded: bool
    module_count: int
    created_at: datetime
    files: list[FileInfo] | None = None
    lineage: dict[str, Any] | None = None


class FitQuery(BaseModel):
    base: str
    task: str | None = None
    peft_type: str | None = None
    min_scores: dict[str, float] = Field(default_factory=dict)
    tier: str = Field(default="all", pattern="^(exact|compatible|all)$")
    sort: str | None = None
    explain: bool = False
    limit: int = Field(default=50, ge=1, le=500)
    qlora_ok: bool = False
    """Only versions whose latest 4-bit check (on any base) passed or warned."""


class FitItem(BaseModel):
    ref: str
    repo: str
    version: int
    digest: str
    tier: str
    peft_type: str
    task: str | None
    r: int | None
    base_model: str | None
    score: float | None = None
    """Value of the --sort metric, when sorting."""


class FitRejection(BaseModel):
    ref: str
    reasons: list[str]


class FitResult(BaseModel):
    base: BaseInfo
    items: list[FitItem]
    rejected: list[FitRejection] | None = None
