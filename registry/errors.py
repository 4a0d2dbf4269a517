"""RegistryError hierarchy: each class has a stable `code`, an HTTP status and typed fields.

The API renders these as application/problem+json; HttpClient maps the codes back to the same
classes (see `error_from_problem`), so callers see one vocabulary in both modes. Every subclass
registers its code when it is defined (`ERRORS_BY_CODE`, built once, a duplicate code refused).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import storage

log = logging.getLogger(__name__)

ERRORS_BY_CODE: dict[str, type[RegistryError]] = {}
"""code -> class, filled by `RegistryError.__init_subclass__` as each class is defined."""

RESERVED = frozenset({"type", "title", "status", "detail", "code"})
"""Problem members the error itself writes: a field of the same name would overwrite them."""


class RegistryError(Exception):
    """Base of every refusal. Subclasses declare the fields they carry as annotated attributes
    (`ref: str | None = None`); a keyword argument of that name sets it and travels in the
    problem body. Other keyword arguments travel too (a newer server's fields), untyped."""

    code: ClassVar[str] = "registry_error"
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Registry error"
    _field_names: ClassVar[frozenset[str]] = frozenset({"request_id"})
    request_id: str | None = None
    """Set on errors read back from a server's problem: the id its log files the failure under."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = {
            name
            for name, ann in vars(cls).get("__annotations__", {}).items()
            if not str(ann).startswith(("ClassVar", "typing.ClassVar"))
        }
        cls._field_names = cls._field_names | own
        if "code" in vars(cls):
            known = ERRORS_BY_CODE.get(cls.code)
            if known is not None and known.__qualname__ != cls.__qualname__:
                raise TypeError(f"error code {cls.code!r} is used by {known.__name__} and {cls.__name__}")
            ERRORS_BY_CODE[cls.code] = cls

    def __init__(self, message: str, **fields: Any) -> None:
        clash = RESERVED & fields.keys()
        if clash:
            raise TypeError(f"{type(self).__name__}: {sorted(clash)} name problem members, not fields")
        super().__init__(message)
        self.message = message
        self.fields = fields
        self.headers: dict[str, str] = {}
        """Response headers that go with the problem (Content-Range on a 416)."""
        for name in self._field_names & fields.keys():
            setattr(self, name, fields[name])

    def to_problem(self) -> dict[str, Any]:
        return {
            **self.fields,
            "type": f"https://adapter-registry.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.message,
            "code": self.code,
        }


ERRORS_BY_CODE[RegistryError.code] = RegistryError


class NotFound(RegistryError, LookupError):
    code = "not_found"
    status = 404
    title = "Not found"
    ref: str | None = None
    repo: str | None = None
    alias: str | None = None
    digest: str | None = None
    base: str | None = None
    job: str | None = None


class UnknownBase(NotFound):
    """A base named by the caller (push --base, fit, export, check-4bit) that no registered base
    the caller may read has as a name or fingerprint, and that is no model folder either: a typo
    is refused, never recorded. `suggestions`: close names the caller may read."""

    code = "unknown_base"
    suggestions: list[str] | None = None


class InvalidReference(RegistryError, ValueError):
    code = "invalid_reference"
    status = 400
    title = "Invalid reference"
    ref: str | None = None
    alias: str | None = None


class Conflict(RegistryError):
    code = "conflict"
    status = 409
    title = "Conflict"


class BadRequest(RegistryError, ValueError):
    code = "bad_request"
    status = 400
    title = "Bad request"
    field: str | None = None
    path: str | None = None
    base: str | None = None


class ValidationFailed(RegistryError, ValueError):
    """A request value the registry cannot store or serve back (the code FastAPI's own body
    validation answers with, so a client sees one code for both)."""

    field: str | None = None

    code = "validation_error"
    status = 422
    title = "Request validation failed"


class DigestMismatch(RegistryError, ValueError):
    code = "digest_mismatch"
    status = 422
    title = "Digest mismatch"
    expected: str | None = None
    actual: str | None = None
    path: str | None = None


class SizeMismatch(RegistryError, ValueError):
    code = "size_mismatch"
    status = 422
    title = "Size mismatch"
    expected: int | None = None
    actual: int | None = None


class InvalidDigest(RegistryError, ValueError):
    code = "invalid_digest"
    status = 400
    title = "Invalid digest"
    digest: str | None = None


class BlobMissing(RegistryError):
    code = "blob_missing"
    status = 409
    title = "Blob missing"
    digest: str | None = None
    path: str | None = None


class OutputExists(RegistryError, FileExistsError):
    code = "output_exists"
    status = 409
    title = "Output exists"
    path: str | None = None


class ServerUnavailable(RegistryError, ConnectionError):
    code = "server_unavailable"
    status = 503
    title = "Server unavailable"
    database: str | None = None
    blobs: str | None = None


class Unauthenticated(RegistryError, PermissionError):
    """No credentials where some are needed, or credentials the server does not accept (unknown,
    expired or revoked token). Answered with `WWW-Authenticate: Bearer` (RFC 6750 3). The message
    never repeats the token."""

    code = "unauthenticated"
    status = 401
    title = "Unauthenticated"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.headers["WWW-Authenticate"] = 'Bearer realm="adapter-registry"'


class Forbidden(RegistryError, PermissionError):
    """The caller may read the resource but not do this to it. A caller who may not even read it
    gets the resource's NotFound instead, exactly as for one that does not exist."""

    code = "forbidden"
    status = 403
    title = "Forbidden"
    namespace: str | None = None
    action: str | None = None


class AuthThrottled(RegistryError, PermissionError):
    """Too many failed authentications from the caller's address lately: its credentials are not
    even looked at until `retry_after` seconds have passed (also sent as Retry-After)."""

    code = "auth_throttled"
    status = 429
    title = "Too many failed authentications"
    retry_after: int | None = None

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message, **fields)
        if self.retry_after is not None:
            self.headers["Retry-After"] = str(self.retry_after)


class InternalError(RegistryError):
    """An unexpected failure. Its message is generic: details go to the server log under the
    request id, never to the client (they carried SQL, parameters and hosts)."""

    code = "internal_error"
    status = 500
    title = "Internal error"


class SchemaNewer(RegistryError):
    """The database was migrated by a newer adapter-registry than this one: refuse to touch it."""

    code = "schema_newer"
    status = 503
    title = "Database schema is newer than this server"
    revision: str | None = None
    head: str | None = None


class UploadTimeout(RegistryError):
    code = "upload_timeout"
    status = 408
    title = "Upload timed out"


class UploadsBusy(ServerUnavailable):
    """Every upload slot the caller may take stayed held for the whole queue wait: nothing of the
    body was read. Retry after `retry_after` seconds (also sent as Retry-After)."""

    code = "uploads_busy"
    title = "Uploads busy"
    retry_after: int | None = None

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message, **fields)
        if self.retry_after is not None:
            self.headers["Retry-After"] = str(self.retry_after)


class PayloadTooLarge(RegistryError):
    code = "payload_too_large"
    status = 413
    title = "Payload too large"


class RangeNotSatisfiable(BadRequest):
    """A Range outside the blob: 416 with `Content-Range: bytes */size` (RFC 9110 15.5.17)."""

    code = "range_not_satisfiable"
    status = 416
    title = "Range not satisfiable"
    size: int | None = None

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message, **fields)
        if self.size is not None:
            self.headers["Content-Range"] = f"bytes */{self.size}"


class StorageFailed(RegistryError):
    """The blob store failed (an S3 error, a disk error): the request may succeed later. The
    store's own message stays in the server log; the client sees the store's error code."""

    code = "storage_error"
    status = 503
    title = "Blob store error"
    store_code: str | None = None


class MergeRefused(RegistryError, ValueError):
    code = "merge_refused"
    status = 422
    title = "Merge refused"
    module: str | None = None
    ref: str | None = None


class BaseMismatch(MergeRefused):
    code = "base_mismatch"
    bases: list[str] | None = None


# Refusals on push: every one is an InvalidAdapter with its own code.
class InvalidAdapter(RegistryError, ValueError):
    code = "invalid_adapter"
    status = 422
    title = "Invalid adapter"
    path: str | None = None
    field: str | None = None
    peft_type: str | None = None
    problems: list[dict[str, Any]] | None = None
    """Where a push had several file-level refusals: each as {code, path, message}; the error's
    own code and path are the first's (formats/inspect.py)."""


class MissingAdapterConfig(InvalidAdapter):
    code = "missing_adapter_config"


class UnknownPeftType(InvalidAdapter):
    code = "unknown_peft_type"


class UnsafeConfig(InvalidAdapter):
    code = "unsafe_config"


class PickleRefused(InvalidAdapter):
    code = "pickle_refused"


class MissingWeights(InvalidAdapter):
    code = "missing_weights"


class InvalidSafetensors(InvalidAdapter):
    code = "invalid_safetensors"
    tensor: str | None = None


class WeightsMismatch(InvalidAdapter):
    code = "weights_mismatch"
    module: str | None = None
    tensor: str | None = None
    expected_rank: int | None = None


class UnsafePath(InvalidAdapter):
    code = "unsafe_path"


class SymlinkRefused(InvalidAdapter):
    code = "symlink_refused"


class FileNotAllowed(InvalidAdapter):
    code = "file_not_allowed"


class InvalidSignature(InvalidAdapter):
    """A model-signing signature (model.sig) that is not a well-formed bundle, or whose DSSE
    signature does not verify with the key or certificate it names (formats/signing.py)."""

    code = "invalid_signature"
    signer: str | None = None


class SignatureMismatch(InvalidSignature):
    """A signature whose statement does not list exactly the files with their sha256 digests:
    `missing` (signed, not there), `unsigned` (there, not signed), `changed` (other digest)."""

    code = "signature_mismatch"
    missing: list[str] | None = None
    unsigned: list[str] | None = None
    changed: list[str] | None = None


class UntrustedSignature(InvalidSignature):
    """A verification the caller asked for (pull --verify, verify DIR) that found no signature,
    or one by a key or identity the caller does not trust."""

    code = "untrusted_signature"


class SignatureRequired(UntrustedSignature):
    """A namespace's signing policy refused a push, Hub commit or alias move: no signature by one
    of its trusted (unrevoked) keys (`adapters namespace set NS --require-signature`)."""

    code = "signature_required"
    status = 403
    namespace: str | None = None
    alias: str | None = None


class PushTooLarge(InvalidAdapter):
    code = "push_too_large"
    status = 413
    limit: int | None = None
    size: int | None = None


# Refusals of an adapter that cannot work on its (known) base. `--force` overrides them, recorded.
class FitRefused(InvalidAdapter):
    code = "fit_refused"
    problems: list[dict[str, Any]] | None = None
    base: str | None = None


class TargetModuleNotFound(FitRefused):
    code = "target_module_not_found"


class ShapeMismatch(FitRefused):
    code = "shape_mismatch"


class PromptShapeMismatch(FitRefused):
    code = "prompt_shape_mismatch"


class Ia3ShapeMismatch(FitRefused):
    code = "ia3_shape_mismatch"


class VocabMismatch(FitRefused):
    code = "vocab_mismatch"


class BaseNameTaken(Conflict):
    code = "base_name_taken"
    name: str | None = None


# Jobs: how a worker's run ends when it does not succeed.
class JobCancelled(RegistryError):
    code = "job_cancelled"
    status = 409
    title = "Job cancelled"


class LeaseLost(RegistryError):
    """The worker's lease was taken over (it stalled past expiry): it must not publish."""

    code = "lease_lost"
    status = 409
    title = "Lease lost"


class WorkerLost(RegistryError):
    code = "worker_lost"
    status = 500
    title = "Worker lost"


class JobFinished(Conflict):
    code = "job_finished"
    job_status: str | None = None

    def __init__(self, message: str, *, status: str | None = None, **fields: Any) -> None:
        # `status` is the problem's HTTP status: the job's own travels as `job_status`.
        if status is not None:
            fields["job_status"] = status
        super().__init__(message, **fields)


class JobFailed(RegistryError):
    """A job ended in failure for a reason that is not a RegistryError of its own (a crash)."""

    job: str | None = None

    code = "job_failed"
    status = 500
    title = "Job failed"


class ExportRefused(RegistryError, ValueError):
    code = "export_refused"
    status = 422
    title = "Export refused"
    module: str | None = None
    tensor: str | None = None
    peft_type: str | None = None


class CheckRefused(RegistryError, ValueError):
    code = "check_refused"
    status = 422
    title = "4-bit check refused"
    architectures: list[str] | None = None


class BaseNotUploaded(RegistryError):
    code = "base_not_uploaded"
    status = 409
    title = "Base weights not uploaded"
    base: str | None = None


# Serving (registry.serving): what an AdapterServer refuses.
class NotServable(RegistryError, ValueError):
    """An adapter that fits its base but that mixed-batch serving cannot run: PEFT's
    `adapter_names` serves LoRA layers only, and not DoRA."""

    code = "not_servable"
    status = 422
    title = "Adapter not servable"
    ref: str | None = None


class ServingFull(Conflict):
    """No room for an adapter: every loaded one is pinned or in use, or it alone exceeds max_bytes."""

    code = "serving_full"
    title = "Adapter server full"
    ref: str | None = None


def error_from_problem(problem: dict[str, Any], status: int) -> RegistryError:
    """Turn a problem+json body back into the RegistryError subclass named by its code."""
    code = str(problem.get("code", ""))
    cls = ERRORS_BY_CODE.get(code)
    message = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    fields = {k: v for k, v in problem.items() if k not in RESERVED}
    if cls is None:
        err = RegistryError(message, **fields)
        err.code = code or "registry_error"  # type: ignore[misc]
        return err
    return cls(message, **fields)


def store_errors() -> tuple[type[Exception], ...]:
    """What a store call may raise besides a bug: its own errors, and the S3 SDK's when an s3://
    store lets one through (imported lazily: a file:// registry never loads minio)."""
    try:
        from minio.error import S3Error
        from urllib3.exceptions import HTTPError
    except ImportError:  # pragma: no cover - minio is a dependency
        return (storage.StorageError,)
    return (storage.StorageError, S3Error, HTTPError)  # HTTPError: a connection lost mid-stream


def from_storage_error(err: Exception) -> RegistryError:
    """Translate a blob store error (a `storage.StorageError`, or an S3 SDK error that escaped
    the store) into the registry's vocabulary; never an unhandled 500."""
    if isinstance(err, storage.DigestMismatch):
        return DigestMismatch(str(err), expected=err.expected, actual=err.actual)
    if isinstance(err, storage.SizeMismatch):
        return SizeMismatch(str(err), expected=err.expected, actual=err.actual)
    if isinstance(err, storage.BlobNotFound):
        return NotFound(str(err), digest=err.digest)
    if isinstance(err, storage.InvalidDigest):
        return InvalidDigest(str(err), digest=err.digest)
    if _store_unreachable(err):  # the endpoint is down or cut off: retry, as for the database
        log.warning("blob store unreachable: %s", err)
        return ServerUnavailable("the blob store is unavailable; retry shortly")
    store_code = str(getattr(err, "code", None) or type(err).__name__)
    log.warning("blob store error: %s", err)
    return StorageFailed(f"the blob store failed ({store_code})", store_code=store_code)


def _store_unreachable(err: Exception) -> bool:
    """A connection to the S3 endpoint refused, reset or timed out (urllib3's retries spent)."""
    try:
        from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError, TimeoutError
    except ImportError:  # pragma: no cover - minio depends on urllib3
        return False
    return isinstance(
        err, MaxRetryError | NewConnectionError | ProtocolError | TimeoutError | ConnectionError
    )


# The Hugging Face Hub protocol's three "not found" answers (registry/api/hub maps them onto the
# Hub's X-Error-Code), and a name that one kind of repository already holds.
class RepoNotFound(NotFound):
    """No repository (adapter or model) by that name that the caller may read."""

    code = "repo_not_found"


class RevisionNotFound(NotFound):
    code = "revision_not_found"
    revision: str | None = None


class EntryNotFound(NotFound):
    code = "entry_not_found"
    path: str | None = None
    commit: str | None = None
    """The revision's commit id: the Hub sends it with the 404 so clients cache the absence."""


class NameTaken(Conflict):
    """An adapter repository and a base model may not share a name: the Hub protocol serves both
    at the same URL."""

    code = "name_taken"
    name: str | None = None


class UploadUrlRefused(RegistryError):
    """A one-time LFS upload URL of the Hub protocol that is tampered with, expired, or used for
    other bytes than it was issued for."""

    code = "upload_url_refused"
    status = 403
    title = "Upload URL refused"


class XetNotSupported(BadRequest):
    """An LFS batch that offers only Xet: Xet goes through the xet token route and CAS instead."""

    code = "xet_not_supported"


# Lifecycle: deleting versions, garbage collection.
class AliasInUse(Conflict):
    """A version an alias points at is deleted only with `force` (which removes those aliases)."""

    code = "alias_in_use"
    aliases: list[str] | None = None


class GcRunning(Conflict):
    code = "gc_running"


# Deployment: what a server refuses to start with (registry/startup.py).
class BadConfiguration(RegistryError, ValueError):
    """A setting a server cannot start with; `setting` names it (ADAPTERS_...)."""

    code = "bad_configuration"
    status = 500
    title = "Server misconfigured"
    setting: str | None = None


class ExampleCredentials(BadConfiguration):
    """The example credentials the compose files ship, outside a declared local trial."""

    code = "example_credentials"
    settings: list[str] | None = None
