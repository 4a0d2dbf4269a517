"""What each kind of job takes: validated when the job is submitted, again when a worker runs it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, field_validator

from registry import bounds, dtypes
from registry.errors import BadRequest
from registry.refs import check_alias, check_ref, check_repo, parse_ref

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


@dataclass(frozen=True)
class JobAccess:
    """What a job reads and writes, named as its parameters name them: the access policy checks
    these at submission and scopes the job by them (services/jobs.py), whatever its kind."""

    reads: tuple[str, ...]
    """Version references it reads."""
    base: str | None = None
    """The base it reads (a name, a fingerprint or, embedded, a folder)."""
    writes_repo: str | None = None
    """The repository it writes: a version (merge), a verdict on a version (check-4bit), or
    the default name of an exported model (under the adapter's namespace)."""
    writes_base_name: str | None = None
    """The base name it registers (export --into)."""


class JobParams(BaseModel):
    """A kind's parameters: each model says what its job reads and writes."""

    def access(self) -> JobAccess:
        raise NotImplementedError


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


class MergeParams(JobParams):
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

    def access(self) -> JobAccess:
        return JobAccess(reads=tuple(i.ref for i in self.inputs), writes_repo=self.into)


class ExportParams(JobParams):
    ref: RefText
    base: BaseText
    """A registered base (name or sha256:fingerprint) whose files were uploaded, or, in embedded
    mode only, a local model folder."""
    into: Annotated[str, Field(min_length=1, max_length=bounds.NAME_LEN), AfterValidator(_text)] | None = None
    """Name to register the exported model under (default: <adapter repo>-v<N>-merged[-dtype])."""
    dtype: Annotated[dtypes.Short, BeforeValidator(dtypes.lenient("short"))] | None = None
    """Output dtype; default: the base's own."""
    max_shard_size: int = Field(default=5 * 10**9, ge=1024, le=bounds.INT64_MAX)
    base_path: BaseText | None = None
    """Embedded mode only: the caller's model folder, read in place by the in-process worker (the
    API refuses this parameter: a server's workers never read a path a client names)."""

    def access(self) -> JobAccess:
        if self.into is not None:
            return JobAccess(reads=(self.ref,), base=self.base, writes_base_name=self.into)
        return JobAccess(reads=(self.ref,), base=self.base, writes_repo=_repo_of(self.ref))


class Check4bitParams(JobParams):
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
    compute_dtype: Annotated[dtypes.Torch, BeforeValidator(dtypes.lenient("torch"))] = "float32"

    def access(self) -> JobAccess:
        return JobAccess(reads=(self.ref,), base=self.base, writes_repo=_repo_of(self.ref))


def _repo_of(ref: str) -> str:
    return str(parse_ref(ref).repo)


def parse_size(text: str) -> int:
    """'5GB', '500MiB', '1000000' -> bytes (decimal units as transformers reads them)."""
    m = SIZE_RE.match(text)
    if m is None:
        raise BadRequest(f"size {text!r} is not like 5GB, 500MB or 2GiB")
    unit = (m[2] or "").upper()
    return int(float(m[1]) * SIZE_UNITS[unit])
