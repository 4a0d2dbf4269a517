"""Plain entities returned by the service layer and served by the API (no ORM rows leak out)."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from registry import bounds
from registry.dtypes import DTYPES

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
    model_config = ConfigDict(from_attributes=True)  # built from manifest entries: model_validate(entry)

    path: Annotated[str, Field(min_length=1, max_length=1024)]
    """Checked by formats.paths.normalize_path where it is stored (refused as unsafe_path)."""
    size: Count64
    sha256: Digest


EVAL_SCOPE_PATTERN = r"^[^@:]+$"
"""A dataset or split name: not empty, no '@' or ':' (they separate METRIC@DATASET:SPLIT keys)."""
EvalDataset = Annotated[str, Field(min_length=1, max_length=256, pattern=EVAL_SCOPE_PATTERN), _OneLine]
EvalSplit = Annotated[str, Field(min_length=1, max_length=64, pattern=EVAL_SCOPE_PATTERN), _OneLine]


class EvalScoreIn(BaseModel):
    metric: Label
    value: FiniteFloat
    """Finite: PostgreSQL sorts NaN above every number, so a NaN would pass every --min-score."""
    dataset: EvalDataset | None = None
    split: EvalSplit | None = None
    """Only with a dataset (METRIC@DATASET:SPLIT)."""

    @model_validator(mode="after")
    def _split_needs_dataset(self) -> EvalScoreIn:
        if self.split is not None and self.dataset is None:
            raise ValueError("a split needs a dataset: METRIC=VALUE@DATASET:SPLIT")
        return self


def _unique_score_keys(scores: list[EvalScoreIn]) -> list[EvalScoreIn]:
    """Each (metric, dataset, split) once per call: two values for one key cannot both be current."""
    seen: set[tuple[str, str | None, str | None]] = set()
    for s in scores:
        key = (s.metric, s.dataset, s.split)
        if key in seen:
            scope = s.metric + (f"@{s.dataset}" if s.dataset else "") + (f":{s.split}" if s.split else "")
            raise ValueError(f"{scope} is given twice: give each metric, dataset and split once")
        seen.add(key)
    return scores


EvalScores = Annotated[list[EvalScoreIn], AfterValidator(_unique_score_keys)]
"""The scores of one push or one `eval add` (PushRequest.evals, EvalAdd.scores)."""


class BaseModelRef(BaseModel):
    name: str | None = None
    revision: str | None = None


QLORA_QUANT_TYPES = ("nf4", "fp4")
QLORA_COMPUTE_DTYPES = tuple(DTYPES.values())  # torch's names, as variant labels spell them
QLORA_VARIANT_PATTERN = r"^(nf4|fp4)(-nodq)?(-(float32|bfloat16|float16))?$"
"""A 4-bit variant's name: quant type, `-nodq` without double quantization, then the compute dtype
(`nf4`, `nf4-nodq`, `fp4-bfloat16`); left out, the parts are the defaults (double quantization;
any compute dtype when matching, float32 when naming a check)."""


class QloraCheckSummary(BaseModel):
    """The latest `check-4bit` answer for a version on one base and 4-bit variant."""

    base: str
    base_fingerprint: str | None
    variant: str = "nf4-float32"
    """registry.dtypes.qlora_variant_label of the variant checked."""
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


class SignatureInfo(BaseModel):
    """A model-signing signature among a version's files (formats/signing.py): who signed, and
    whether the server checked the signature itself (a key bundle names its key only by
    fingerprint: checked when the key came with the push)."""

    path: str
    kind: str
    """Either `key` or `certificate`."""
    fingerprint: str
    """sha256:<hex> of the signer's public key (PEM), model-signing's key hint."""
    identity: str | None = None
    """A certificate's SAN e-mail/URI or subject."""
    checked: bool = False
    attached: bool = False
    """Attached after the push (`adapters sign`, or a worker): not among the version's files, so
    its digest is unchanged; served as model.sig beside them when the version has none of its own."""
    purpose: str = "signature"
    """`signature` (model-signing, over the files) or `provenance` (a worker's in-toto statement)."""
    digest: str | None = None
    """The bundle's blob (attached ones): fetch it as any blob."""
    size: int | None = None
    created_by: str | None = None
    job_id: int | None = None
    """The job whose worker signed a provenance statement."""
    revoked: bool = False
    """Signed by a key the namespace's policy has revoked: it satisfies no policy any more."""


class TrustedKeyInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # built from database rows: model_validate(row)

    fingerprint: str
    public_key: str
    added_by: str
    added_at: datetime
    revoked_at: datetime | None = None
    """From then on its signatures satisfy no policy (the versions they signed say so)."""


class NamespacePolicy(BaseModel):
    """A namespace's signing policy: who is trusted, and what must be signed (issue 27)."""

    namespace: str
    require_signature: bool = False
    """Every push, Hub commit and alias move needs a signature by a trusted, unrevoked key."""
    signed_aliases: list[str] = Field(default_factory=list)
    """Aliases that may point only at versions signed by a trusted key."""
    trusted_keys: list[TrustedKeyInfo] = Field(default_factory=list)


class PolicyChange(BaseModel):
    """`adapters namespace set NS --require-signature --trust-key K.pub --revoke-key ...`: each
    field left None keeps what is set."""

    require_signature: bool | None = None
    signed_aliases: list[str] | None = Field(default=None, max_length=64)
    trust_keys: list[str] = Field(default_factory=list, max_length=64)
    """PEM public keys (or certificates) to trust."""
    revoke_keys: list[str] = Field(default_factory=list, max_length=64)
    """Fingerprints (sha256:<hex>) or PEM public keys to revoke."""


class SignRequest(BaseModel):
    """`adapters sign`: a model-signing bundle over a stored version's files."""

    bundle: str = Field(max_length=16 * 1024**2)
    """The bundle (model.sig) as JSON text."""
    signer_key: str | None = Field(default=None, max_length=16384)
    """The PEM public key that signed it: with it the server checks the signature too."""


class VersionInfo(VersionSummary):
    """One version whole: the summary plus its message, config, files, lineage and checks."""

    message: str | None
    files: list[FileInfo]
    config: dict[str, Any]
    lineage: dict[str, Any] | None = None
    fit_override: dict[str, Any] | None = None
    qlora_checks: list[QloraCheckSummary] = Field(default_factory=list)
    training: dict[str, Any] | None = None
    """What the pushed files said about the training run (trainer_state.json, training_args.json,
    the card's model-index; formats/training.py): global_step, epoch, best_metric, ..."""
    signatures: list[SignatureInfo] = Field(default_factory=list)
    """model-signing signatures checked against the files when the version was pushed."""


class PushRequest(BaseModel):
    files: list[FileInfo] = Field(min_length=1, max_length=bounds.MAX_VERSION_FILES)
    base: Name | None = None
    base_revision: Revision | None = None
    task: Label | None = None
    evals: Annotated[EvalScores, Field(max_length=256)] = Field(default_factory=list)
    aliases: list[Short] = Field(default_factory=list, max_length=64)
    message: Message | None = None
    lineage: JsonDoc | None = None
    """Set by the merge engine: how this version was derived from others."""
    force: bool = False
    """Record the version even if the fit check against its known base refuses it."""
    signer_key: str | None = Field(default=None, max_length=16384)
    """PEM public key (or certificate) that signed the folder's model.sig: with it the server
    checks a key signature too, not only its fingerprint and files."""


class SkippedPath(BaseModel):
    """A file or folder a push left out, and why (formats/selection.py)."""

    path: str
    reason: str
    files: int = 1


class PushResult(BaseModel):
    created: bool
    """False when the content equals the latest version: no new version was made."""
    repo: str
    version: int
    digest: str
    detail: str
    info: VersionInfo
    skipped: list[SkippedPath] = Field(default_factory=list)
    """What the client left out of the pushed folder (formats/selection.py); set by the client."""
    borrowed: dict[str, str] = Field(default_factory=dict)
    """A version path read from another file of the folder (the newest checkpoint's trainer_state.json)."""
    base_note: str | None = None
    """Which base the client linked and how (a registered name, a folder by fingerprint), or why the
    version is not linked and how to link it (registry.client.bases.push_base); set by the client."""


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


class BaseLayout(BaseModel):
    """A base with its config.json and module table: what the planner (`adapters plan`) reads."""

    base: BaseInfo
    config: dict[str, Any]
    modules: list[ModuleInfo]


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
    """Only versions whose latest 4-bit check (on any base) of the default variant (NF4, double
    quantization, any compute dtype) or of `qlora_variant` passed or warned."""
    qlora_variant: str | None = Field(default=None, pattern=QLORA_VARIANT_PATTERN)
    """The 4-bit variant `qlora_ok` asks about (implies it): `nf4`, `fp4-nodq`, `nf4-bfloat16`..."""


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
    xorbs_reclaimed: int = 0
    """Xet xorbs no kept file names (their own prefix of the store; services/xet_store.py)."""
    xorb_bytes_reclaimed: int = 0


class FsckProblem(BaseModel):
    """A blob the database lists that the store does not hold as listed."""

    digest: str
    size: int
    """The size the database lists."""
    problem: str
    """`missing`, `size_mismatch` (`stored_size` differs) or `corrupt` (its bytes hash otherwise:
    `fsck --verify`)."""
    stored_size: int | None = None
    versions: list[str] = []
    """`ns/name:N path` of each version file that lists it."""
    bases: list[str] = []
    """`base NAME path` (or the fingerprint when unnamed) of each base file that lists it."""


class FsckStray(BaseModel):
    """A blob the store holds that no version or base lists."""

    digest: str
    size: int
    modified: datetime
    recent: bool
    """Written within gc's grace period: perhaps a push or job not yet committed."""


class FsckReport(BaseModel):
    """The database against the blob store (`adapters fsck`): what one lists and the other lacks."""

    clean: bool
    """No problem and no stray blob."""
    verified: bool
    """Every listed blob's bytes were hashed (`--verify`), not only its size compared."""
    versions_checked: int
    blobs_listed: int
    """Distinct digests that versions and bases list."""
    blobs_scanned: int
    """Blobs the store holds."""
    problems: list[FsckProblem]
    versions_affected: list[str]
    """`ns/name:N` of every version with a problem blob: what to restore or delete."""
    unlisted: list[FsckStray]
    bytes_unlisted: int


class AuditEventInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # built from database rows: model_validate(row)

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


# ---------------------------------------------------------------- evaluations, rankings, lineage (issue 13)
EvalInput = EvalScoreIn
"""One score to record on an existing version (`adapters eval add`): the push-time shape."""


class EvalAdd(BaseModel):
    """The body of POST /v1/evals?ref=REF and POST /v1/repos/{namespace}/{name}/versions/{number}/evals."""

    scores: Annotated[EvalScores, Field(min_length=1, max_length=256)]
    note: Message | None = None


class EvalRecord(BaseModel):
    """One recorded score: append-only, never changed; a later one for the same key supersedes it."""

    model_config = ConfigDict(from_attributes=True)  # built from database rows: model_validate(row)

    metric: str
    value: float
    dataset: str | None = None
    split: str | None = None
    recorded_by: str
    created_at: datetime
    note: str | None = None


class EvalHistory(BaseModel):
    ref: str
    digest: str
    records: list[EvalRecord]
    """The newest records, newest first (at most the `limit` asked for; 100 unless given)."""
    total: int = 0
    """How many records the version has in all (`records` may list fewer)."""
    current: list[EvalRecord]
    """The latest record per (metric, dataset, split)."""


class LeaderboardQuery(BaseModel):
    base: Annotated[str, Field(min_length=1, max_length=4096), _OneLine]
    metric: Label
    dataset: Annotated[str, Field(max_length=256), _OneLine] | None = None
    split: Annotated[str, Field(max_length=64), _OneLine] | None = None
    """Left out, each version's best over every split (of `dataset` when given) counts."""
    task: Label | None = None
    peft_type: Annotated[str, Field(max_length=32), _OneLine] | None = None
    lower_is_better: bool = False
    limit: int = Field(default=20, ge=1, le=500)


class LeaderboardRow(BaseModel):
    rank: int
    repo: str
    number: int
    digest: str
    ref: str
    peft_type: str
    task: str | None
    r: int | None
    use_dora: bool = False
    trainable_params: int
    adapter_bytes: int
    score: float
    metric: str
    dataset: str | None
    split: str | None
    tier: str


class Leaderboard(BaseModel):
    base: str
    metric: str
    dataset: str | None = None
    split: str | None = None
    lower_is_better: bool = False
    rows: list[LeaderboardRow]


class MetricsQuery(BaseModel):
    """GET /v1/metrics: the metrics scored on the versions that fit a base."""

    base: Annotated[str, Field(min_length=1, max_length=4096), _OneLine]
    task: Label | None = None


class MetricCount(BaseModel):
    """A metric scored on the versions that fit a base, and on how many (rankings.common_metrics)."""

    metric: str
    versions: int


class ParetoQuery(BaseModel):
    base: Annotated[str, Field(min_length=1, max_length=4096), _OneLine]
    metric: Label
    dataset: Annotated[str, Field(max_length=256), _OneLine] | None = None
    split: Annotated[str, Field(max_length=64), _OneLine] | None = None
    """Left out, each version's best over every split (of `dataset` when given) counts."""
    task: Label | None = None
    cost: str = Field(default="params", pattern="^(params|bytes|rank)$")
    lower_is_better: bool = False
    front_only: bool = False
    """List only the front's points (`total` still counts every candidate)."""


class ParetoPoint(BaseModel):
    ref: str
    digest: str
    repo: str
    number: int
    peft_type: str
    score: float
    cost: int
    on_front: bool
    dominates: list[str] = Field(default_factory=list)
    """For a front point: the first versions it dominates (capped; see dominated_count)."""
    dominated_count: int = 0


class ParetoResult(BaseModel):
    base: str
    metric: str
    dataset: str | None = None
    split: str | None = None
    cost: str
    lower_is_better: bool = False
    points: list[ParetoPoint]
    """Front points first, then the others, each by cost (at most rankings.MAX_POINTS, 5,000: beyond
    it the best-scoring others; `total` counts all)."""
    total: int
    front_size: int
    datasets: list[str | None] = Field(default_factory=list)
    """The datasets the candidates' scores were taken on (None: no dataset recorded); without
    `dataset`, more than one means the best over datasets would rank incomparable scores."""


class ComparedVersion(BaseModel):
    ref: str
    digest: str
    config: dict[str, Any]
    """The compared config fields of this version."""
    trainable_params: int
    adapter_bytes: int
    scores: dict[str, float | None]
    """metric key ("metric", "metric@dataset", "metric@dataset:split") -> current value."""


class Comparison(BaseModel):
    versions: list[ComparedVersion]
    differing: list[str]
    """The config fields whose values differ between the versions."""
    metrics: list[str]
    """Every metric key any of them has, sorted."""


class LineageNode(BaseModel):
    id: str
    kind: str
    """version, base or deleted (a recorded parent that no longer exists), or hidden (unreadable)."""
    label: str
    digest: str | None = None
    ref: str | None = None


class LineageEdge(BaseModel):
    source: str
    target: str
    kind: str
    """merge (parent -> merged version), export (adapter or base -> exported model), trained_on
    (base -> version)."""
    weight: float | None = None
    method: str | None = None
    error: float | None = None
    """The merge's max relative reconstruction error."""
    unverified: bool = False
    """The child's pusher claimed this parent but could not read it (or it did not exist) when
    pushing: shown upward, never indexed as a descendant (services/lineage_edges.py)."""


class LineageGraph(BaseModel):
    root: str
    nodes: list[LineageNode]
    edges: list[LineageEdge]
    truncated: bool = False
    """True when the depth or node cap cut the graph."""
