"""What a job is, as submitted and as served: its request, its state, its result."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from registry import bounds
from registry.errors import BadRequest
from registry.jobspec.kinds import RESULTS_BY_TYPE, JobType
from registry.jobspec.results import Check4bitResult, ExportResult, MergeResult

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
R = TypeVar("R", MergeResult, ExportResult, Check4bitResult)


class JobRequest(BaseModel):
    type: JobType
    params: Annotated[dict[str, Any], AfterValidator(lambda v: bounds.check_json_size(v, "params"))]
    max_attempts: int = Field(default=3, ge=1, le=20)


class JobInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # built from database rows: model_validate(row)

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
