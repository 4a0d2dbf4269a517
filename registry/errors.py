"""RegistryError hierarchy: each class has a stable `code` and an HTTP status.

The API renders these as application/problem+json; HttpClient maps the codes back to the same
classes (see `error_from_problem`), so callers see one vocabulary in both modes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import storage


class RegistryError(Exception):
    code: ClassVar[str] = "registry_error"
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Registry error"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def to_problem(self) -> dict[str, Any]:
        return {
            "type": f"https://adapter-registry.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.message,
            "code": self.code,
            **self.fields,
        }


class NotFound(RegistryError, LookupError):
    code = "not_found"
    status = 404
    title = "Not found"


class InvalidReference(RegistryError, ValueError):
    code = "invalid_reference"
    status = 400
    title = "Invalid reference"


class Conflict(RegistryError):
    code = "conflict"
    status = 409
    title = "Conflict"


class BadRequest(RegistryError, ValueError):
    code = "bad_request"
    status = 400
    title = "Bad request"


class ValidationFailed(RegistryError, ValueError):
    """A request value the registry cannot store or serve back (the code FastAPI's own body
    validation answers with, so a client sees one code for both)."""

    code = "validation_error"
    status = 422
    title = "Request validation failed"


class DigestMismatch(RegistryError, ValueError):
    code = "digest_mismatch"
    status = 422
    title = "Digest mismatch"


class SizeMismatch(RegistryError, ValueError):
    code = "size_mismatch"
    status = 422
    title = "Size mismatch"


class InvalidDigest(RegistryError, ValueError):
    code = "invalid_digest"
    status = 400
    title = "Invalid digest"


class BlobMissing(RegistryError):
    code = "blob_missing"
    status = 409
    title = "Blob missing"


class OutputExists(RegistryError, FileExistsError):
    code = "output_exists"
    status = 409
    title = "Output exists"


class ServerUnavailable(RegistryError, ConnectionError):
    code = "server_unavailable"
    status = 503
    title = "Server unavailable"


class InternalError(RegistryError):
    """An unexpected failure. Its message is generic: details go to the server log under the
    request id, never to the client (they carried SQL, parameters and hosts)."""

    code = "internal_error"
    status = 500
    title = "Internal error"


class UploadTimeout(RegistryError):
    code = "upload_timeout"
    status = 408
    title = "Upload timed out"


class PayloadTooLarge(RegistryError):
    code = "payload_too_large"
    status = 413
    title = "Payload too large"


class MergeRefused(RegistryError, ValueError):
    code = "merge_refused"
    status = 422
    title = "Merge refused"


class BaseMismatch(MergeRefused):
    code = "base_mismatch"


# Refusals on push: every one is an InvalidAdapter with its own code.
class InvalidAdapter(RegistryError, ValueError):
    code = "invalid_adapter"
    status = 422
    title = "Invalid adapter"


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


class WeightsMismatch(InvalidAdapter):
    code = "weights_mismatch"


class UnsafePath(InvalidAdapter):
    code = "unsafe_path"


class SymlinkRefused(InvalidAdapter):
    code = "symlink_refused"


class FileNotAllowed(InvalidAdapter):
    code = "file_not_allowed"


class PushTooLarge(InvalidAdapter):
    code = "push_too_large"
    status = 413


def _with_subclasses(cls: type[RegistryError]) -> list[type[RegistryError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_with_subclasses(sub))
    return out


ERRORS_BY_CODE: dict[str, type[RegistryError]] = {c.code: c for c in _with_subclasses(RegistryError)}


def error_from_problem(problem: dict[str, Any], status: int) -> RegistryError:
    """Turn a problem+json body back into the RegistryError subclass named by its code."""
    code = str(problem.get("code", ""))
    cls = ERRORS_BY_CODE.get(code)
    message = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    fields = {k: v for k, v in problem.items() if k not in {"type", "title", "status", "detail", "code"}}
    if cls is None:
        err = RegistryError(message, **fields)
        err.code = code or "registry_error"  # type: ignore[misc]
        return err
    return cls(message, **fields)


def from_storage_error(err: storage.StorageError) -> RegistryError:
    """Translate a blob store error into the registry's vocabulary."""
    if isinstance(err, storage.DigestMismatch):
        return DigestMismatch(str(err), expected=err.expected, actual=err.actual)
    if isinstance(err, storage.SizeMismatch):
        return SizeMismatch(str(err), expected=err.expected, actual=err.actual)
    if isinstance(err, storage.BlobNotFound):
        return NotFound(str(err), digest=err.digest)
    if isinstance(err, storage.InvalidDigest):
        return InvalidDigest(str(err), digest=err.digest)
    return RegistryError(str(err))


# Refusals of an adapter that cannot work on its (known) base. `--force` overrides them, recorded.
class FitRefused(InvalidAdapter):
    code = "fit_refused"


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


class JobFailed(RegistryError):
    """A job ended in failure for a reason that is not a RegistryError of its own (a crash)."""

    code = "job_failed"
    status = 500
    title = "Job failed"


class ExportRefused(RegistryError, ValueError):
    code = "export_refused"
    status = 422
    title = "Export refused"


class CheckRefused(RegistryError, ValueError):
    code = "check_refused"
    status = 422
    title = "4-bit check refused"


class BaseNotUploaded(RegistryError):
    code = "base_not_uploaded"
    status = 409
    title = "Base weights not uploaded"


# Every class defined above, including those after the first table was built.
ERRORS_BY_CODE.update({c.code: c for c in _with_subclasses(RegistryError)})
