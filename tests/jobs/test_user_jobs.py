"""A job submitted by an ordinary user (write on its namespace, no admin) publishes: the worker
records the submitter's proof of holding the output blobs it stored, so the publication, checked
as the submitter, does not find them missing."""

from __future__ import annotations

import time
from pathlib import Path

from registry.access.principal import OPERATOR
from registry.client.http import HttpClient
from registry.client.transfer import push_folder
from registry.jobspec import JobRequest
from registry.services import accounts
from registry.worker import Worker, WorkerSettings, WorkerThread
from tests.conftest import ServerThread


def test_a_non_admin_users_merge_job_publishes(
    server: ServerThread, adapters_dir: Path, tmp_path: Path
) -> None:
    reg = server.app.state.registry  # type: ignore[attr-defined]
    accounts.add_user(reg, "bob", principal=OPERATOR)
    accounts.grant(reg, "bob", "acme", "write", principal=OPERATOR)
    token, _ = accounts.create_token(reg, "bob", name="bob", principal=OPERATOR)
    bob = HttpClient(server.url, user="bob", cache_dir=tmp_path / "cache", token=token)
    push_folder(bob, adapters_dir / "lora_a", "acme/legal", base="tiny-llama")
    push_folder(bob, adapters_dir / "lora_b", "acme/medical", base="tiny-llama")

    settings = WorkerSettings.from_settings(server.app.state.settings, device="cpu")  # type: ignore[attr-defined]
    thread = WorkerThread(Worker(reg, settings)).start()
    try:
        params = {
            "inputs": [{"ref": "acme/legal", "weight": 0.7}, {"ref": "acme/medical", "weight": 0.3}],
            "into": "acme/mix",
        }
        job = bob.submit_job(JobRequest(type="merge", params=params))
        deadline = time.monotonic() + 240
        while not (job := bob.get_job(job.id)).done:
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
    finally:
        thread.stop()
    assert job.status == "succeeded", job.error
    assert job.result is not None and job.result["ref"] == "acme/mix:1"
    info = bob.resolve("acme/mix")
    assert info.version == 1 and info.lineage is not None and info.lineage["kind"] == "merge"
