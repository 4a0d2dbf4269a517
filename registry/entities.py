"""Plain entities returned by the service layer and served by the API (no ORM rows leak out)."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, Field

from registry import bounds

T = TypeVar("T")


def _checked_text(value: str, single_line: bool) -> str:
    why = bounds.text_problem(value, single_line)
    if why is not None:
        raise ValueError(why)
    return value


def _checked_json(value: Any) -> Any:
    return bounds.check_json_size(value, "value")


# str fields that the database can hold and the API can serve back (see registry.bounds).
_OneLine = AfterValidator(partial(_checked_text, single_line=True))
_MultiLine = AfterValidator(partial(_checked_text, single_line=False))
Name = Annotated[str, Field(min_length=1, max_length=bounds.NAME_LEN), _OneLine]
Revision = Annotated[str, Field(max_length=bounds.REVISION_LEN), _OneLine]
Label = Annotated[str, Field(min_length=1, max_length=bounds.LABEL_LEN), _OneLine]
Short = Annotated[str, Field(max_length=64), _OneLine]
Digest = Annotated[str, Field(min_length=1, max_length=71), _OneLine]
Message = Annotated[str, Field(max_length=bounds.MESSAGE_LEN), _MultiLine]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Count32 = Annotated[int, Field(ge=0, le=bounds.INT32_MAX)]
Count64 = Annotated[int, Field(ge=0, le=bounds.INT64_MAX)]
JsonDoc = Annotated[dict[str, Any], AfterValidator(_checked_json)]
"""A JSON object stored as given (lineage, a base's config): strict, depth- and size-capped."""


class FileInfo(BaseModel):
    path: Annotated[str, Field(min_length=1, max_length=1024)]
    """Checked by formats.paths.normalize_path where it is stored (refused as unsafe_path)."""
    size: Count64
    sha256: Digest


class EvalScoreIn(BaseModel):
    metric: Label
    value: FiniteFloat
    """Finite: PostgreSQL sorts NaN above every number, so a NaN would pass every --min-score."""
    dataset: Annotated[str, Field(max_length=256), _OneLine] | None = None
    split: Short | None = None


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


class VersionSummary(BaseModel):
    """A version as listings show it: what tells versions apart, not the whole documents (config,
    lineage, files), which `show` (resolve) returns. A listing page of whole versions was 15.7 MB."""

    repo: str
    version: int
    digest: str
    ref: str
    created_at: datetime
    pushed_by: str
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
    base_fingerprint: str | None = None
    """Fingerprint of the registered base it is linked to; None when unlinked or structure-only."""
    base_linked: bool = False
    derived: bool = False
    """Made by a merge (its lineage is in `show`)."""


class VersionInfo(VersionSummary):
    """One version whole: the summary plus its message, config, files, lineage and checks."""

    message: str | None
    files: list[FileInfo]
    config: dict[str, Any]
    lineage: dict[str, Any] | None = None
    fit_override: dict[str, Any] | None = None
    qlora_checks: list[QloraCheckSummary] = Field(default_factory=list)


class PushRequest(BaseModel):
    files: list[FileInfo] = Field(min_length=1, max_length=10_000)
    base: Name | None = None
    base_revision: Revision | None = None
    task: Label | None = None
    evals: list[EvalScoreIn] = Field(default_factory=list, max_length=256)
    aliases: list[Short] = Field(default_factory=list, max_length=64)
    message: Message | None = None
    lineage: JsonDoc | None = None
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
    repo: Annotated[str, Field(max_length=129), _OneLine] | None = None
    task: Label | None = None
    peft_type: Annotated[str, Field(max_length=32), _OneLine] | None = None
    base: Name | None = None
    latest_only: bool = False


class AliasInfo(BaseModel):
    repo: str
    alias: str
    version: int
    digest: str


class MissingBlobs(BaseModel):
    missing: list[str]


class ModuleInfo(BaseModel):
    name: Name
    kind: Annotated[str, Field(min_length=1, max_length=16), _OneLine]
    in_features: Count32
    out_features: Count32


class BaseNameInfo(BaseModel):
    name: Name
    revision: Revision | None = None


class BaseArchitecture(BaseModel):
    """A base model's architecture facts, read from its config.json (and its weights' parameter
    count): listed here once. Registration and the base's entity inherit them, so they stay flat
    members of the REST JSON; the fit check and the database row take them from here."""

    architectures: list[Name] = Field(default_factory=list, max_length=64)
    model_type: Short | None = None
    hidden_size: Count32 | None = None
    num_layers: Count32 | None = None
    num_heads: Count32 | None = None
    num_kv_heads: Count32 | None = None
    vocab_size: Count32 | None = None
    param_count: Count64 = 0
    dtype: Annotated[str, Field(max_length=32), _OneLine] | None = None

    @classmethod
    def of(cls, obj: object) -> BaseArchitecture:
        """The architecture fields of any object that has them (an entity, a database row)."""
        return cls(**{name: getattr(obj, name) for name in ARCHITECTURE_FIELDS})

    def architecture(self) -> BaseArchitecture:
        """Just these facts (from a registration or a base entity)."""
        return BaseArchitecture.of(self)


ARCHITECTURE_FIELDS = tuple(BaseArchitecture.model_fields)


class BaseRegistration(BaseArchitecture):
    """What a client computed from a model folder (or a config.json alone) and sends to register."""

    names: list[BaseNameInfo] = Field(default_factory=list, max_length=64)
    fingerprint: Digest | None = None
    structure_signature: Digest
    config: JsonDoc = Field(default_factory=dict)
    modules: list[ModuleInfo] = Field(max_length=200_000)
    files: list[FileInfo] | None = Field(default=None, max_length=10_000)
    """Uploaded files (weights, config, tokenizer), when --upload."""
    lineage: JsonDoc | None = None
    """For a derived model (export): the base fingerprint and adapter digest it was made from."""


class BaseInfo(BaseArchitecture):
    id: int
    names: list[BaseNameInfo]
    fingerprint: str | None
    structure_signature: str
    uploaded: bool
    module_count: int
    created_at: datetime
    files: list[FileInfo] | None = None
    lineage: dict[str, Any] | None = None


class FitQuery(BaseModel):
    base: Annotated[str, Field(min_length=1, max_length=4096), _OneLine]
    task: Label | None = None
    peft_type: Annotated[str, Field(max_length=32), _OneLine] | None = None
    min_scores: dict[Label, FiniteFloat] = Field(default_factory=dict, max_length=64)
    tier: str = Field(default="all", pattern="^(exact|compatible|all)$")
    sort: Label | None = None
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


# ---------------------------------------------------------------- lifecycle
class DeleteResult(BaseModel):
    """What `adapters rm` deleted."""

    repo: str
    versions: list[int]
    """The numbers deleted (never given again)."""
    digests: list[str]
    aliases_removed: list[str]
    repository_deleted: bool = False


class GcReport(BaseModel):
    """One garbage collection: what the sweep found unreferenced and (unless a dry run) deleted."""

    dry_run: bool
    grace_s: float
    blobs_scanned: int
    blobs_kept: int
    blobs_reclaimed: int
    bytes_reclaimed: int
    digests: list[str]
    """The digests reclaimed (or that would be, on a dry run)."""
    errors: int = 0
    """Blobs the store failed to delete (kept, retried by the next run)."""


class AuditEventInfo(BaseModel):
    id: int
    at: datetime
    actor: str
    """The user's name (the operator: the name it runs as)."""
    user_id: int | None
    token_id: int | None
    address: str
    """The client's address; `local` for this machine (embedded mode, the operator, workers)."""
    action: str
    target: str
    namespace: str | None = None
    repo: str | None = None
    details: dict[str, Any] | None = None


class AuditFilter(BaseModel):
    repo: Annotated[str, Field(max_length=129), _OneLine] | None = None
    user: Annotated[str, Field(max_length=128), _OneLine] | None = None
    since: datetime | None = None
