"""A job acts with its submitter's rights as they stand: a token revoked while the job runs stops
the job's storing and publication (worker/io.py loads the caller again before each), on SQLite
and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.access.authentication import authenticate
from registry.access.principal import OPERATOR
from registry.client.local import LocalClient
from registry.client.transfer import push_folder
from registry.errors import NotFound, RegistryError
from registry.jobspec import JobRequest
from registry.refs import parse_ref
from registry.services import accounts, aliases, jobs
from registry.services.context import Registry
from registry.worker.context import JobContext
from registry.worker.io import JobIO
from registry.worker.settings import WorkerSettings
from storage.local import local_cache
from tests.adapter_files import lora_folder


def _running_job(reg: Registry, tmp_path: Path) -> tuple[JobIO, int, LocalClient]:
    """wendy (write on acme, through a token) submits a merge; a worker claims it."""
    accounts.add_user(reg, "wendy", principal=OPERATOR)
    accounts.grant(reg, "wendy", "acme", "write", principal=OPERATOR)
    secret, token = accounts.create_token(reg, "wendy", principal=OPERATOR)
    operator = LocalClient(reg, "root", local_cache(reg.store, tmp_path / "cache"), principal=OPERATOR)
    push_folder(operator, lora_folder(tmp_path / "a"), "acme/a")
    wendy = authenticate(reg, secret)
    params = {"inputs": [{"ref": "acme/a", "weight": 1.0}], "into": "acme/out"}
    jobs.submit(reg, JobRequest(type="merge", params=params), "wendy", principal=wendy)
    claim = jobs.claim(reg, "w", lease_s=60)
    assert claim is not None
    settings = WorkerSettings(work_dir=tmp_path / "work", cache_dir=tmp_path / "wcache", lease_s=60, poll_s=1)
    ctx = JobContext(reg, settings, claim, local_cache(reg.store, settings.cache_dir))
    return JobIO(ctx), token.id, operator


def _alias(io: JobIO) -> object:
    return aliases.set_alias(io.reg, parse_ref("acme/a:1"), "prod", principal=io.principal)


def test_the_submitters_rights_are_read_again_at_publication(job_registry: Registry, tmp_path: Path) -> None:
    io, _, _ = _running_job(job_registry, tmp_path)
    assert io.version("acme/a").version == 1  # read with wendy's rights at the claim
    _alias(io)  # what publication would write: allowed while the token stands


def test_a_token_revoked_while_the_job_runs_stops_its_publication(
    job_registry: Registry, tmp_path: Path
) -> None:
    io, token_id, operator = _running_job(job_registry, tmp_path)
    io.version("acme/a")
    accounts.revoke_token(job_registry, token_id, principal=OPERATOR)
    with pytest.raises(RegistryError):
        io.publish(lambda on_commit: _alias(io), lambda _: pytest.fail("published"))
    with pytest.raises(NotFound):
        operator.resolve("acme/a@prod")
