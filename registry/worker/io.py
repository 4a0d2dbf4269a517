"""What a job body reads and writes through: one JobIO per claim.

The caller (the submitter, with their rights as they stand: a grant or token removed since the job
was submitted stops its reads, and one removed while it runs stops its storing and its
publication) is loaded when the claim begins and again before the outputs are stored and before
they are published (one query each; a run takes seconds to hours); each input
version is resolved once and pulled by the manifest resolved (before, `pull` looked it up again
by its number, and the caller was loaded three times: a merge of two inputs made 4 lookups and
94 statements, now 2 and 72, bench/job_lookups.py); the base is found, or registered from an
embedded caller's folder, once; the output is published through worker.publish, the one fenced
function.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from registry.access.authentication import job_principal
from registry.access.principal import Principal
from registry.client.bases import registration
from registry.client.interface import TransferProgress
from registry.client.local import LocalClient
from registry.client.transfer import fetch_missing, served_files, write_files
from registry.db.engine import unit_of_work
from registry.entities import BaseInfo, FileInfo, VersionInfo
from registry.errors import BadRequest, BaseNotUploaded
from registry.jobspec import JobResult
from registry.services.context import Registry
from registry.worker import provenance
from registry.worker.context import JobContext, StageProgress
from registry.worker.publish import OnCommit, Published, publish, store_outputs

T = TypeVar("T")
R = TypeVar("R", bound=JobResult)


class JobIO:
    """The registry as one claim of a job sees it: its caller, its inputs, its publication."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self._load_caller()
        self._versions: dict[str, VersionInfo] = {}

    def _load_caller(self) -> None:
        """The submitter's rights as they stand now (the service calls that follow check them)."""
        c = self.ctx.claim
        with unit_of_work(self.ctx.reg.sessions) as session:
            self.principal: Principal = job_principal(session, c.user_id, c.token_id, c.created_by)
        self.client = LocalClient(self.ctx.reg, c.created_by, self.ctx.cache, principal=self.principal)

    @property
    def reg(self) -> Registry:
        return self.ctx.reg

    @property
    def user(self) -> str:
        return self.ctx.claim.created_by

    def version(self, ref: str) -> VersionInfo:
        """The version `ref` names, resolved once for this claim."""
        if ref not in self._versions:
            self._versions[ref] = self.client.resolve(ref)
        return self._versions[ref]

    def pull(self, info: VersionInfo, folder: Path, progress: TransferProgress | None = None) -> Path:
        """The files of the version resolved (not of what its reference names now) into `folder`."""
        return write_files(self.client, served_files(info), folder, progress=progress)

    def base(self, base: str, base_path: str | None, folder: Path) -> tuple[Path, BaseInfo]:
        """(model folder, registered base) of the job: the embedded caller's own folder (registered
        by fingerprint, as `push --base PATH` does), or the base's uploaded files linked (or
        downloaded) out of the blob store into `folder`."""
        if base_path:
            from registry.formats.model_folder import inspect_model

            path = Path(base_path)
            if not path.is_dir():
                raise BadRequest(f"base folder {path} does not exist on this worker", base=base)
            self.ctx.report(0.0, "fingerprinting the base")
            return path, self.client.register_base(registration(inspect_model(path), [], None))
        info = self.client.get_base(base)
        if not info.files:
            raise BaseNotUploaded(
                f"base {base!r} was registered without its weights; register it with `adapters base add "
                "PATH --upload` so workers can read it",
                base=base,
            )
        self._materialize(info.files, folder)
        return folder, info

    def _materialize(self, files: list[FileInfo], folder: Path) -> None:
        """The base's files as a model folder: fetched into the worker's cache, then hard-linked out."""
        fetch_missing(self.client, files, StageProgress(self.ctx, {"downloading": (0.0, 0.1)}))
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            target = folder / f.path
            if not target.resolve().is_relative_to(folder.resolve()):
                raise BadRequest(f"base file path {f.path!r} leaves the model folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            source = self.ctx.cache.path_for(f.sha256)
            try:
                os.link(source, target)  # blobs are immutable: a hard link costs nothing
            except OSError:
                shutil.copyfile(source, target)

    def store(
        self, files: list[tuple[str, Path]], uploading: tuple[float, float] = (0.9, 1.0)
    ) -> list[FileInfo]:
        """The output files stored as blobs, held by the caller (worker.publish.store_outputs)."""
        self._load_caller()
        return store_outputs(self.ctx, self.principal, files, uploading)

    def publish(
        self,
        write: Callable[[OnCommit[T]], T],
        result: Callable[[T], R],
        inputs: provenance.Inputs | None = None,
    ) -> Published[R]:
        """The output recorded by `write` (reading `self.principal` when it runs) and the job's
        success, in one fenced transaction."""
        self._load_caller()
        return publish(self.ctx, write, result, inputs)
