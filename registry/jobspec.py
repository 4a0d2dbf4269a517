"""What each kind of job takes: validated when the job is submitted, again when a worker runs it."""

from __future__ import annotations

import builtins
import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, Field, ValidationError, field_validator

from registry import bounds
from registry.entities import FileInfo
from registry.errors import BadRequest
from registry.refs import check_alias, check_ref, check_repo

MAX_MERGE_WEIGHT = 1e3
"""|weight| of a merge input: deltas are scaled in float32, where 1e308 overflowed to inf and burned
three attempts; real recipes use weights within [-2, 2]."""
SEED_MAX = 2**32 - 1


def _text(text: str) -> str:
    return bounds.check_text(text, "value", 4096)


RefText = Annotated[str, Field(min_length=1, max_length=300), AfterValidator(check_ref)]
RepoText = Annotated[str, Field(min_length=3, max_length=129), AfterValidator(check_repo)]
AliasText = Annotated[str, Field(max_length=64), AfterValidator(check_alias)]
BaseText = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_text)]
"""A registered base (name or sha256:fingerprint), or in embedded mode a local model folder."""
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]

JobType = Literal["merge", "export", "check-4bit"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)?\s*$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
SIZE_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


class MergeInputSpec(BaseModel):
    ref: RefText
    weight: float

    @field_validator("weight")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v) or abs(v) > MAX_MERGE_WEIGHT:
            raise ValueError(f"weight must be a finite number within ±{MAX_MERGE_WEIGHT:g}")
        return v


class MergeParams(BaseModel):
    inputs: list[MergeInputSpec] = Field(min_length=1, max_length=64)
    into: RepoText
    method: Literal["svd", "cat", "linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"] = "svd"
    rank: Annotated[int, Field(le=65_536)] | Literal["auto"] | None = None
    energy: float = Field(default=0.99, gt=0, le=1)
    density: float = Field(default=1.0, gt=0, le=1)
    majority_sign_method: Literal["total", "frequency"] = "total"
    seed: Seed = 0
    allow_base_mismatch: bool = False
    task: Annotated[str, Field(max_length=bounds.LABEL_LEN), AfterValidator(_text)] | None = None
    aliases: list[AliasText] = Field(default_factory=list, max_length=64)
    message: Annotated[str, Field(max_length=bounds.MESSAGE_LEN)] | None = None

    @field_validator("rank")
    @classmethod
    def _positive(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and v < 1:
            raise ValueError("rank must be a positive integer or 'auto'")
        return v


class ExportParams(BaseModel):
    ref: RefText
    base: BaseText
    """A registered base (name or sha256:fingerprint) whose files were uploaded, or, in embedded
    mode only, a local model folder."""
    into: Annotated[str, Field(min_length=1, max_length=bounds.NAME_LEN), AfterValidator(_text)] | None = None
    """Name to register the exported model under (default: <adapter repo>-v<N>-merged[-dtype])."""
    dtype: Literal["bf16", "fp16", "fp32"] | None = None
    """Output dtype; default: the base's own."""
    max_shard_size: int = Field(default=5 * 10**9, ge=1024, le=bounds.INT64_MAX)
    base_path: BaseText | None = None
    """Embedded mode only: the caller's model folder, read in place by the in-process worker (the
    API refuses this parameter: a server's workers never read a path a client names)."""


class Check4bitParams(BaseModel):
    ref: RefText
    base: BaseText
    base_path: BaseText | None = None
    """As ExportParams.base_path."""
    probe: int = Field(default=8, ge=1, le=256)
    """Number of probe sequences run through the full-precision and the 4-bit model."""
    probe_length: int = Field(default=32, ge=2, le=2048)
    seed: Seed = 0
    quant: Literal["nf4", "fp4"] = "nf4"
    """The 4-bit variant checked: bitsandbytes quant type, double quantization, compute dtype."""
    double_quant: bool = True
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"


PARAMS_BY_TYPE: dict[str, type[BaseModel]] = {
    "merge": MergeParams,
    "export": ExportParams,
    "check-4bit": Check4bitParams,
}


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
RESULTS_BY_TYPE: dict[str, type[JobResult]] = {
    "merge": MergeResult,
    "export": ExportResult,
    "check-4bit": Check4bitResult,
}
R = TypeVar("R", MergeResult, ExportResult, Check4bitResult)


P = TypeVar("P", MergeParams, ExportParams, Check4bitParams)


def parse_params(job_type: str, params: dict[str, Any]) -> BaseModel:
    """The typed parameters of a job, or BadRequest naming the first problem."""
    model = PARAMS_BY_TYPE.get(job_type)
    if model is None:
        raise BadRequest(f"unknown job type {job_type!r}; known: {', '.join(PARAMS_BY_TYPE)}")
    return _validate(job_type, model, params)


def params_as(model: type[P], params: dict[str, Any]) -> P:
    """`params` read as `model` (what a worker runs), or BadRequest naming the first problem."""
    job_type = next(t for t, m in PARAMS_BY_TYPE.items() if m is model)
    return _validate(job_type, model, params)


M = TypeVar("M", bound=BaseModel)


def _validate(job_type: str, model: type[M], params: dict[str, Any]) -> M:
    try:
        return model.model_validate(params)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "params"
        # The message of a refusal raised by our own rule (parse_ref, check_alias) keeps its words.
        msg = str(first["ctx"]["error"]) if "error" in first.get("ctx", {}) else first["msg"]
        raise BadRequest(f"{job_type} job: {where}: {msg}", field=where) from err


def parse_size(text: str) -> int:
    """'5GB', '500MiB', '1000000' -> bytes (decimal units as transformers reads them)."""
    m = SIZE_RE.match(text)
    if m is None:
        raise BadRequest(f"size {text!r} is not like 5GB, 500MB or 2GiB")
    unit = (m[2] or "").upper()
    return int(float(m[1]) * SIZE_UNITS[unit])


class JobRequest(BaseModel):
    type: JobType
    params: Annotated[dict[str, Any], AfterValidator(lambda v: bounds.check_json_size(v, "params"))]
    max_attempts: int = Field(default=3, ge=1, le=20)


class JobInfo(BaseModel):
    id: int
    type: str
    status: JobStatus
    params: dict[str, Any]
    progress: float
    stage: str | None
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    fence: int
    cancel_requested: bool
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def result_as(self, model: builtins.type[R]) -> R:
        """The result of this succeeded job as its typed model (stored and served as JSON)."""
        if self.result is None or RESULTS_BY_TYPE.get(self.type) is not model:
            raise BadRequest(f"job {self.id} ({self.type}, {self.status}) has no {model.__name__}")
        return model.model_validate(self.result)
