"""Faults, with real worker processes on SQLite and PostgreSQL: kill -9 in the middle of a merge
and of an export, a SIGSTOPped worker whose lease lapsed, cancelling a running job, bad input."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from registry.access.principal import OPERATOR, Principal
from registry.client.local import LocalClient
from registry.client.transfer import push_folder
from registry.config import Settings
from registry.db import models as m
from registry.errors import NotFound
from registry.jobspec import JobInfo, JobRequest
from registry.services import jobs
from registry.services.context import Registry
from registry.tensors.synthetic import llama_config, llama_shapes, write_llama, write_lora
from registry.worker import Worker, WorkerSettings, WorkerThread
from storage.local import LocalBlobStore

pytestmark = pytest.mark.server

LEASE_S = 1.5
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Work that lasts seconds: a 300 MB bf16 base (exported to fp32) and two 56 MB adapters
    with 168 modules each (an svd merge of them)."""
    root = tmp_path_factory.mktemp("big")
    cfg = llama_config(1024, 8, 32000)
    write_llama(root / "base", cfg, shard_bytes=100 * 10**6)
    write_lora(root / "lora", llama_shapes(cfg))
    wide = llama_shapes(llama_config(2048, 24, 1000))
    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    import torch

    for seed in (1, 2):
        write_lora(root / f"wide{seed}", wide, targets, r=32, dtype=torch.float16, seed=seed)
    return root


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=db_url,
        blob_url=f"file://{tmp_path / 'blobs'}",
        user="tester",
        job_lease_s=LEASE_S,
        worker_poll_s=0.1,
    )


@pytest.fixture
def reg(settings: Settings) -> Iterator[Registry]:
    r = Registry.from_settings(settings, migrate=True)
    yield r
    r.close()


@pytest.fixture
def client(reg: Registry, settings: Settings) -> LocalClient:
    assert isinstance(reg.store, LocalBlobStore)
    return LocalClient(reg, "tester", reg.store, principal=Principal.operator("tester"))


class WorkerProcess:
    """`adapters worker` in its own process, as it runs in production."""

    def __init__(self, settings: Settings, name: str, log: Path) -> None:
        env = {
            **os.environ,
            "ADAPTERS_HOME": str(settings.home),
            "ADAPTERS_DATABASE_URL": settings.effective_database_url,
            "ADAPTERS_BLOB_URL": settings.effective_blob_url,
            "ADAPTERS_JOB_LEASE_S": str(LEASE_S),
            "ADAPTERS_WORKER_POLL_S": "0.1",
            "ADAPTERS_URL": "",
        }
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker", "--name", name, "--device", "cpu"],
            cwd=ROOT,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def spawn(settings: Settings, tmp_path: Path) -> Iterator[Callable[[str], WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(name: str) -> WorkerProcess:
        w = WorkerProcess(settings, name, tmp_path / f"worker-{name}.log")
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def wait_for(reg: Registry, job_id: int, pred: Callable[[JobInfo], bool], timeout: float = 180) -> JobInfo:
    deadline = time.monotonic() + timeout
    while True:
        job = jobs.get(reg, job_id, principal=OPERATOR)
        if pred(job):
            return job
        assert time.monotonic() < deadline, f"timed out; job is {job}"
        time.sleep(0.05)


def mid_job(job: JobInfo) -> bool:
    return job.status == "running" and 0.05 < job.progress < 0.85


def assert_no_partial_blobs(store: LocalBlobStore) -> None:
    """Every blob the store shows hashes to its name: a killed upload left nothing visible."""
    for path in (store.root / "sha256").rglob("*"):
        if path.is_file():
            assert "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == "sha256:" + path.name


def merge_job(client: LocalClient, big: Path) -> int:
    for seed in (1, 2):
        push_folder(client, big / f"wide{seed}", f"acme/wide{seed}")
    params = {
        "inputs": [{"ref": "acme/wide1", "weight": 0.6}, {"ref": "acme/wide2", "weight": 0.4}],
        "into": "acme/mix",
    }
    return client.submit_job(JobRequest(type="merge", params=params)).id


def export_job(client: LocalClient, big: Path) -> int:
    push_folder(client, big / "lora", "acme/legal")
    base = str(big / "base")
    params = {"ref": "acme/legal", "base": base, "base_path": base, "dtype": "fp32", "into": "legal-fp32"}
    return client.submit_job(JobRequest(type="export", params=params)).id


def count(reg: Registry, model: type[m.Base]) -> int:
    with reg.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize("kind", ["merge", "export"])
def test_kill_9_mid_job_reruns_on_another_worker_and_publishes_once(
    kind: str, reg: Registry, client: LocalClient, big: Path, spawn: Callable[[str], WorkerProcess]
) -> None:
    job_id = merge_job(client, big) if kind == "merge" else export_job(client, big)
    versions_before, bases_before = count(reg, m.Version), count(reg, m.BaseModel)
    a = spawn("A")
    wait_for(reg, job_id, mid_job)
    a.signal(signal.SIGKILL)
    a.proc.wait()
    assert (
        jobs.get(reg, job_id, principal=OPERATOR).status == "running"
    )  # nobody knows yet: the lease has to lapse
    assert isinstance(reg.store, LocalBlobStore)
    assert_no_partial_blobs(reg.store)
    spawn("B")
    done = wait_for(reg, job_id, lambda j: j.done)
    assert (done.status, done.attempts, done.fence) == ("succeeded", 2, 2), done
    assert done.result is not None
    if kind == "merge":
        assert count(reg, m.Version) == versions_before + 1
        assert done.result["ref"] == "acme/mix:1"
        info = client.resolve("acme/mix")
        assert info.lineage is not None and info.lineage["method"] == "svd"
    else:
        assert count(reg, m.BaseModel) == bases_before + 2  # the base (by fingerprint) and the export
        derived = client.get_base("legal-fp32")
        assert derived.fingerprint == done.result["fingerprint"] and derived.uploaded
    assert_no_partial_blobs(reg.store)


def test_a_stopped_worker_whose_lease_lapsed_cannot_publish(
    reg: Registry, client: LocalClient, big: Path, spawn: Callable[[str], WorkerProcess], tmp_path: Path
) -> None:
    job_id = merge_job(client, big)
    a = spawn("A")
    wait_for(reg, job_id, mid_job)
    a.signal(signal.SIGSTOP)
    spawn("B")
    done = wait_for(reg, job_id, lambda j: j.done)
    assert (done.status, done.fence, done.attempts) == ("succeeded", 2, 2)
    a.signal(signal.SIGCONT)  # A wakes up mid-merge, holding a lease that is no longer its own
    deadline = time.monotonic() + 60
    while "taken over" not in a.log.read_text(errors="replace"):
        assert time.monotonic() < deadline, a.log.read_text(errors="replace")
        time.sleep(0.1)
    after = jobs.get(reg, job_id, principal=OPERATOR)
    assert (after.status, after.fence, after.result) == ("succeeded", 2, done.result)
    with reg.sessions() as s:
        repo = s.scalars(select(m.Repository).where(m.Repository.name == "mix")).one()
        assert repo.latest_version == 1  # one publication: B's


def test_cancelling_a_running_job_stops_it(
    reg: Registry, client: LocalClient, settings: Settings, big: Path
) -> None:
    job_id = export_job(client, big)
    bases_before = count(reg, m.BaseModel)
    thread = WorkerThread(Worker(reg, WorkerSettings.from_settings(settings, device="cpu"))).start()
    try:
        wait_for(reg, job_id, mid_job)
        asked = jobs.cancel(reg, job_id, principal=OPERATOR)
        assert asked.cancel_requested and asked.status == "running"
        done = wait_for(reg, job_id, lambda j: j.done, timeout=60)
        assert done.status == "cancelled" and done.progress < 1.0
        assert count(reg, m.BaseModel) <= bases_before + 1  # the base may be registered; no export
        with pytest.raises(NotFound, match="legal-fp32"):
            client.get_base("legal-fp32")
        assert not list(settings.effective_work_dir.glob(f"job-{job_id}-*"))  # scratch cleaned
        # The worker lives on and takes the next job.
        nxt = client.submit_job(
            JobRequest(
                type="merge", params={"inputs": [{"ref": "acme/legal", "weight": 1}], "into": "acme/copy"}
            )
        )
        assert wait_for(reg, nxt.id, lambda j: j.done, timeout=60).status == "succeeded"
    finally:
        thread.stop()


def test_bad_parameters_fail_the_job_once_with_a_clear_code(
    reg: Registry, client: LocalClient, settings: Settings, big: Path, qlora_dir: Path
) -> None:
    from peft import IA3Config

    from tests.adapters_factory import save_peft, sized_llama

    push_folder(client, qlora_dir / "lora", "acme/legal", base=None)
    save_peft(
        sized_llama(hidden=64),
        IA3Config(target_modules=["k_proj"], feedforward_modules=[]),
        big.parent / "ia3x",
    )
    push_folder(client, big.parent / "ia3x", "acme/ia3")
    push_folder(client, big / "lora", "acme/other-base")

    def run(job_type: str, params: dict[str, object]) -> JobInfo:
        job = client.submit_job(JobRequest(type=job_type, params=params))  # type: ignore[arg-type]
        Worker(reg, WorkerSettings.from_settings(settings, device="cpu")).run(threading.Event(), once=True)
        return jobs.get(reg, job.id, principal=OPERATOR)

    missing = run("merge", {"inputs": [{"ref": "acme/nope", "weight": 1}], "into": "acme/out"})
    non_lora = run(
        "merge",
        {
            "inputs": [{"ref": "acme/legal", "weight": 1}, {"ref": "acme/ia3", "weight": 1}],
            "into": "acme/out",
        },
    )
    wrong_base = run(
        "export",
        {"ref": "acme/other-base", "base": str(qlora_dir / "base"), "base_path": str(qlora_dir / "base")},
    )
    for job, code in ((missing, "not_found"), (non_lora, "merge_refused"), (wrong_base, "export_refused")):
        assert (job.status, job.attempts, job.error and job.error["code"]) == ("failed", 1, code), job
    assert "q_proj" in str(wrong_base.error)  # names the module and both shapes
