"""The kinds of job, each declared once: its name, what it takes and what it gives (after PEFT's
PEFT_TYPE_TO_CONFIG_MAPPING). The tables the API validates with, the worker's bodies
(registry/worker/kinds.py binds one to each kind) and the CLI's options derive from these
declarations; a new kind is one declaration here, one body there and its command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from registry.errors import BadRequest
from registry.jobspec.params import Check4bitParams, ExportParams, JobParams, MergeParams
from registry.jobspec.results import Check4bitResult, ExportResult, JobResult, MergeResult

JobType = Literal["merge", "export", "check-4bit"]
"""The kinds declared below (checked there), as the API's enum (a Literal, for the schema and mypy)."""
P = TypeVar("P", bound=JobParams)
R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class JobKind(Generic[P, R]):
    """One kind of job: the lower half of its declaration (no body: the server and the services
    import this without torch or the worker)."""

    name: str
    params: type[P]
    result: type[R]

    def parse(self, params: dict[str, Any]) -> P:
        """`params` as this kind's model, or BadRequest naming the first problem (in the words of
        our own rule where one refused it: parse_ref, check_alias)."""
        try:
            return self.params.model_validate(params)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "params"
            msg = str(first["ctx"]["error"]) if "error" in first.get("ctx", {}) else first["msg"]
            raise BadRequest(f"{self.name} job: {where}: {msg}", field=where) from err


MERGE = JobKind("merge", MergeParams, MergeResult)
EXPORT = JobKind("export", ExportParams, ExportResult)
CHECK_4BIT = JobKind("check-4bit", Check4bitParams, Check4bitResult)

KINDS: dict[str, JobKind[Any, Any]] = {k.name: k for k in (MERGE, EXPORT, CHECK_4BIT)}
if set(KINDS) != set(get_args(JobType)):  # JobType is the API's enum: it names every kind
    raise RuntimeError(f"job kinds {sorted(KINDS)} differ from JobType {get_args(JobType)}")
PARAMS_BY_TYPE: dict[str, type[JobParams]] = {name: k.params for name, k in KINDS.items()}
RESULTS_BY_TYPE: dict[str, type[JobResult]] = {name: k.result for name, k in KINDS.items()}


def kind_of(job_type: str) -> JobKind[Any, Any]:
    """The declaration of `job_type`, or BadRequest listing the known kinds."""
    kind = KINDS.get(job_type)
    if kind is None:
        raise BadRequest(f"unknown job type {job_type!r}; known: {', '.join(KINDS)}")
    return kind


def parse_params(job_type: str, params: dict[str, Any]) -> JobParams:
    """The typed parameters of a job, or BadRequest naming the first problem."""
    parsed: JobParams = kind_of(job_type).parse(params)
    return parsed
