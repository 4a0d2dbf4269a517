"""SQLAlchemy 2 models. The schema itself comes only from the Alembic migrations in migrations/."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from registry.db.types import UTCDateTime


class Base(DeclarativeBase):
    pass


class Repository(Base):
    __tablename__ = "repositories"
    __table_args__ = (UniqueConstraint("namespace", "name", name="uq_repositories_namespace_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    """Highest version number that exists (0: none, the repository reads as absent)."""
    version_counter: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Highest number ever given, bumped under the row lock: deleted numbers are never reused."""


class Blob(Base):
    __tablename__ = "blobs"

    digest: Mapped[str] = mapped_column(String(71), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Version(Base):
    __tablename__ = "versions"
    __table_args__ = (
        UniqueConstraint("repository_id", "number", name="uq_versions_repository_number"),
        Index("ix_versions_digest", "digest"),
        Index("ix_versions_task", "task"),
        Index("ix_versions_peft_type", "peft_type"),
        Index("ix_versions_base_model_name", "base_model_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(71))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    peft_type: Mapped[str] = mapped_column(String(32))
    task_type: Mapped[str | None] = mapped_column(String(32))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    r: Mapped[int | None] = mapped_column(Integer)
    lora_alpha: Mapped[float | None] = mapped_column(Float)
    target_modules: Mapped[Any] = mapped_column(JSON, nullable=True)
    lora_dropout: Mapped[float | None] = mapped_column(Float)
    use_rslora: Mapped[bool] = mapped_column(Boolean, default=False)
    use_dora: Mapped[bool] = mapped_column(Boolean, default=False)
    trainable_params: Mapped[int] = mapped_column(BigInteger)
    adapter_bytes: Mapped[int] = mapped_column(BigInteger)
    total_bytes: Mapped[int] = mapped_column(BigInteger)
    base_model_name: Mapped[str | None] = mapped_column(String(256))
    base_model_revision: Mapped[str | None] = mapped_column(String(128))
    task: Mapped[str | None] = mapped_column(String(128))
    message: Mapped[str | None] = mapped_column(Text)
    pushed_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lineage: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    base_model_id: Mapped[int | None] = mapped_column(ForeignKey("base_models.id"), nullable=True, index=True)
    """The registered base it was trained on (by fingerprint or name), if known."""
    fit_override: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    """Set when a push refused by the fit check was forced: the refusal that was overridden."""
    """For derived versions (merges): parents' digests and weights, method, parameters, error report."""

    repository: Mapped[Repository] = relationship()
    files: Mapped[list[VersionFile]] = relationship(order_by="VersionFile.path")
    evals: Mapped[list[EvalScore]] = relationship(order_by="EvalScore.id")


class VersionFile(Base):
    __tablename__ = "version_files"

    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(512), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(ForeignKey("blobs.digest"), index=True)


class EvalScore(Base):
    """One recorded score (append-only history, issue 13); `current` marks the latest per
    (version, metric, dataset, split), the one rankings read."""

    __tablename__ = "eval_scores"
    __table_args__ = (
        Index("ix_eval_scores_metric_value", "metric", "value"),
        Index("ix_eval_scores_version_metric", "version_id", "metric", "value"),
        Index(
            "ix_eval_scores_current",
            "metric",
            "version_id",
            "dataset",
            "split",
            "value",
            postgresql_where=text("current"),
            sqlite_where=text("current"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(128))
    value: Mapped[float] = mapped_column(Float)
    dataset: Mapped[str | None] = mapped_column(String(256))
    split: Mapped[str | None] = mapped_column(String(64))
    recorded_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    current: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))


class LineageEdge(Base):
    """One recorded derivation, parent -> child, kept beside the child's lineage JSON so that
    descendants are an index lookup (issue 13): a merge parent (version digest) -> the merged
    version; an export's adapter (version digest) and base (fingerprint) -> the exported base."""

    __tablename__ = "lineage_edges"
    __table_args__ = (Index("ix_lineage_edges_parent", "parent_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_key: Mapped[str] = mapped_column(String(71))
    """The parent's digest (a version) or fingerprint (a base)."""
    parent_ref: Mapped[str | None] = mapped_column(String(256), nullable=True)
    """As recorded: a version ref or a base name."""
    child_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("versions.id", ondelete="CASCADE"), nullable=True, index=True
    )
    child_base_id: Mapped[int | None] = mapped_column(
        ForeignKey("base_models.id", ondelete="CASCADE"), nullable=True, index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    weight: Mapped[float | None] = mapped_column(Float, nullable=True)


class Alias(Base):
    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("repository_id", "name", name="uq_aliases_repository_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BaseModel(Base):
    """A base model known by the content of its weights (fingerprint) and its structure."""

    __tablename__ = "base_models"
    __table_args__ = (
        Index("ix_base_models_structure", "structure_signature"),
        Index("ix_base_models_fingerprint", "fingerprint"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str | None] = mapped_column(String(71))
    """None for a base registered from config.json alone (structure only). Not unique: a fact about
    bytes that no namespace owns; each may register the same weights under its own names."""
    structure_signature: Mapped[str] = mapped_column(String(71))
    architectures: Mapped[list[str]] = mapped_column(JSON)
    model_type: Mapped[str | None] = mapped_column(String(64))
    hidden_size: Mapped[int | None] = mapped_column(Integer)
    num_layers: Mapped[int | None] = mapped_column(Integer)
    num_heads: Mapped[int | None] = mapped_column(Integer)
    num_kv_heads: Mapped[int | None] = mapped_column(Integer)
    vocab_size: Mapped[int | None] = mapped_column(Integer)
    param_count: Mapped[int] = mapped_column(BigInteger)
    dtype: Mapped[str | None] = mapped_column(String(32))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """Files in the blob store when uploaded (path, size, sha256), else None."""
    lineage: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    """For a derived model (an adapter merged into a base by export): base fingerprint, adapter digest."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BaseName(Base):
    __tablename__ = "base_names"

    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    base_model_id: Mapped[int] = mapped_column(ForeignKey("base_models.id", ondelete="CASCADE"), index=True)
    revision: Mapped[str | None] = mapped_column(String(128))


class BaseModule(Base):
    """One weight-bearing module of a base, so fit checks never need the weights again."""

    __tablename__ = "base_modules"

    base_model_id: Mapped[int] = mapped_column(
        ForeignKey("base_models.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    in_features: Mapped[int] = mapped_column(Integer)
    out_features: Mapped[int] = mapped_column(Integer)


class VersionModule(Base):
    """The base modules an adapter version touches, with the shapes it expects of them."""

    __tablename__ = "version_modules"
    __table_args__ = (
        Index(
            "ix_version_modules_unlinked_key",
            "shape_key",
            postgresql_where=text("unlinked"),
            sqlite_where=text("unlinked"),
        ),
    )

    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    in_features: Mapped[int | None] = mapped_column(Integer)
    out_features: Mapped[int | None] = mapped_column(Integer)
    rank: Mapped[int | None] = mapped_column(Integer)
    shape_key: Mapped[str] = mapped_column(String(300))
    """"name|in|out" with * for an unconstrained side: fit queries look these up by index."""
    unlinked: Mapped[bool] = mapped_column(Boolean)
    """Copy of "the version has no registered base" (versions are immutable), for a partial index."""
    module_count: Mapped[int] = mapped_column(Integer)
    """How many modules the version records (copied to each row, so the fit query needs no join)."""


class Job(Base):
    """A unit of tensor work (merge, export, check-4bit) taken by workers through a lease.

    `fence` grows at every claim: a worker publishes only while the row still carries the fence it
    claimed with, so a worker whose lease was taken over cannot publish.
    """

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_id", "status", "id"), Index("ix_jobs_user_id", "user_id", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str | None] = mapped_column(String(256))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fence: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    created_by: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The submitting user; None when the operator (embedded mode, direct database access) did."""
    token_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The token it was submitted with: its narrowing still applies when the job publishes."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class QloraCheck(Base):
    """The answer of `adapters check-4bit` for one version on one base in one 4-bit variant (the
    latest run wins)."""

    __tablename__ = "qlora_checks"
    __table_args__ = (Index("ix_qlora_checks_verdict", "verdict", "version_id"),)

    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True)
    base_model_id: Mapped[int] = mapped_column(
        ForeignKey("base_models.id", ondelete="CASCADE"), primary_key=True
    )
    # The variant checked (0008); rows from before it were NF4, double-quantized, float32 compute.
    quant_type: Mapped[str] = mapped_column(String(4), primary_key=True, default="nf4")
    double_quant: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=True)
    compute_dtype: Mapped[str] = mapped_column(String(16), primary_key=True, default="float32")
    verdict: Mapped[str] = mapped_column(String(8))
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    job_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# ---------------------------------------------------------------- access control (0005)
class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    """A global admin may do everything, everywhere."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Token(Base):
    """An API token: only the sha256 of its secret is stored (see registry/access/tokens.py)."""

    __tablename__ = "tokens"
    __table_args__ = (Index("ix_tokens_prefix", "prefix"), Index("ix_tokens_user_id", "user_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16))
    """The secret's first characters, shown in listings and used to find the row."""
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    namespaces: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    """None: every namespace the user may reach; else only these."""
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Grant(Base):
    __tablename__ = "grants"
    __table_args__ = (Index("ix_grants_namespace", "namespace"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(8))
    """read, write or admin (each includes the ones before it)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Namespace(Base):
    """A namespace's visibility. A namespace without a row is private."""

    __tablename__ = "namespaces"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    require_signature: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    """Pushes, Hub commits and alias moves need a signature by one of the namespace's trusted keys."""
    signed_aliases: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    """Aliases that may point only at versions signed by a trusted key (issue 27)."""


class TrustedKey(Base):
    """A public key a namespace's signing policy trusts; revoked keys stop satisfying it (0012)."""

    __tablename__ = "namespace_trusted_keys"

    namespace: Mapped[str] = mapped_column(String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(71), primary_key=True)
    public_key: Mapped[str] = mapped_column(Text)
    added_by: Mapped[str] = mapped_column(String(128))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class VersionSignature(Base):
    """A signature attached to a version after its push (purpose `signature`: a model-signing
    bundle over its files, like an OCI referrer), or a worker's provenance statement about a
    version or a base it made (purpose `provenance`). The bundle is a blob (0012)."""

    __tablename__ = "version_signatures"
    __table_args__ = (
        CheckConstraint("purpose IN ('signature', 'provenance')", name="ck_version_signatures_purpose"),
        CheckConstraint(
            "(version_id IS NULL) <> (base_id IS NULL)", name="ck_version_signatures_one_subject"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int | None] = mapped_column(
        ForeignKey("versions.id", ondelete="CASCADE"), index=True, nullable=True
    )
    base_id: Mapped[int | None] = mapped_column(
        ForeignKey("base_models.id", ondelete="CASCADE"), index=True, nullable=True
    )
    purpose: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(ForeignKey("blobs.digest"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    signer_kind: Mapped[str] = mapped_column(String(16))
    fingerprint: Mapped[str] = mapped_column(String(71))
    identity: Mapped[str | None] = mapped_column(String(512), nullable=True)
    checked: Mapped[bool] = mapped_column(Boolean, default=False)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BlobUpload(Base):
    """Who uploaded a blob's bytes: proof of possession. A user may reference in a commit a blob
    they uploaded or may read, never one they only know the digest of."""

    __tablename__ = "blob_uploads"

    digest: Mapped[str] = mapped_column(String(71), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# ---------------------------------------------------------------- lifecycle (0006)
class GcSweep(Base):
    """A digest a gc run is deleting from the blob store. A commit listing it is refused while the
    row exists; the run removes the row once the blob is gone (services/blob_guard.py)."""

    __tablename__ = "gc_sweeps"

    digest: Mapped[str] = mapped_column(String(71), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(32), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """One change: who (user, token), when, from which address, what (action, target, details)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_repo_id", "repo", "id"),
        Index("ix_audit_events_actor_id", "actor", "id"),
        Index("ix_audit_events_namespace_id", "namespace", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    token_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    address: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(512))
    namespace: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The namespace the change happened in (its admins read the event), if any."""
    repo: Mapped[str | None] = mapped_column(String(129), nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)


# ---------------------------------------------------------------- Hub downloads (0010)
class HubDownloads(Base):
    """Downloads of one Hub repository, an adapter repository or a base's name (exactly one is
    set), added in batches by the servers (services/downloads.py). A row goes with its repository
    or name, so a name used again starts from 0."""

    __tablename__ = "hub_downloads"
    __table_args__ = (
        UniqueConstraint("repository_id", name="uq_hub_downloads_repository_id"),
        UniqueConstraint("base_name", name="uq_hub_downloads_base_name"),
        CheckConstraint("(repository_id IS NULL) <> (base_name IS NULL)", name="ck_hub_downloads_one_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int | None] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), nullable=True
    )
    base_name: Mapped[str | None] = mapped_column(
        ForeignKey("base_names.name", ondelete="CASCADE"), nullable=True
    )
    downloads: Mapped[int] = mapped_column(BigInteger, default=0)


# ---------------------------------------------------------------- Xet (0011)
class XetXorb(Base):
    """A verified xorb, kept in the blob store's `xet/` prefix under `digest` (services/xet_store.py)."""

    __tablename__ = "xet_xorbs"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(String(71))
    size: Mapped[int] = mapped_column(BigInteger)
    chunks: Mapped[bytes] = mapped_column(LargeBinary)
    """formats.xet.pack_index: each chunk's hash, length and offset."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime)
    """Last uploaded, named by a shard or offered by a dedupe answer: gc's grace runs from here."""


class XetFile(Base):
    """A file a shard rebuilt into blob `digest`: its terms (xorb hash, first and end chunk)."""

    __tablename__ = "xet_files"

    digest: Mapped[str] = mapped_column(String(71), primary_key=True)
    hash: Mapped[str] = mapped_column(String(64))
    terms: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class XetChunk(Base):
    """The global dedupe index: an eligible chunk (a file's first, or hash % 1024 == 0) of a file."""

    __tablename__ = "xet_chunks"

    chunk: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(
        ForeignKey("xet_files.digest", ondelete="CASCADE"), primary_key=True, index=True
    )
