"""Jobs as the server sees them, without torch or the worker: each kind declared once
(kinds.py: name, parameters, result), the parameter and result models, what a job is (info.py),
and the typed lineage a merge or an export records (lineage.py)."""

from registry.jobspec.info import TERMINAL, JobInfo, JobRequest, JobStatus
from registry.jobspec.kinds import (
    CHECK_4BIT,
    EXPORT,
    KINDS,
    MERGE,
    PARAMS_BY_TYPE,
    RESULTS_BY_TYPE,
    JobKind,
    JobType,
    kind_of,
    parse_params,
)
from registry.jobspec.params import (
    MAX_MERGE_WEIGHT,
    SEED_MAX,
    Check4bitParams,
    ExportParams,
    JobAccess,
    JobParams,
    MergeInputSpec,
    MergeParams,
    parse_size,
)
from registry.jobspec.results import Check4bitResult, ExportResult, JobResult, MergeResult

__all__ = [
    "CHECK_4BIT",
    "EXPORT",
    "KINDS",
    "MAX_MERGE_WEIGHT",
    "MERGE",
    "PARAMS_BY_TYPE",
    "RESULTS_BY_TYPE",
    "SEED_MAX",
    "TERMINAL",
    "Check4bitParams",
    "Check4bitResult",
    "ExportParams",
    "ExportResult",
    "JobAccess",
    "JobInfo",
    "JobKind",
    "JobParams",
    "JobRequest",
    "JobResult",
    "JobStatus",
    "JobType",
    "MergeInputSpec",
    "MergeParams",
    "MergeResult",
    "kind_of",
    "parse_params",
    "parse_size",
]
