"""The worker loop: claim, run with a heartbeat thread beside it, record how it ended."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import socket
import threading
import time
import uuid

from registry.access.principal import OPERATOR
from registry.errors import BadRequest, JobCancelled, LeaseLost, RegistryError, ServerUnavailable
from registry.jobspec import JobInfo
from registry.observability import events
from registry.services import jobs
from registry.services.context import Registry
from registry.worker.context import JobContext
from registry.worker.kinds import BODIES
from registry.worker.settings import WorkerSettings
from storage import StorageError
from storage.local import local_cache

log = logging.getLogger("registry.worker")
RETRYABLE: tuple[type[RegistryError], ...] = (ServerUnavailable,)


class Heartbeat(threading.Thread):
    """Extends the lease while the job runs (tensor work holds no GIL-free pauses for us to beat
    from, so this is its own thread), carries progress, and notices cancellation and takeover."""

    def __init__(self, reg: Registry, ctx: JobContext, lease_s: float) -> None:
        super().__init__(name=f"heartbeat-{ctx.claim.job_id}", daemon=True)
        self.reg = reg
        self.ctx = ctx
        self.lease_s = lease_s
        self.interval = max(0.1, min(2.0, lease_s / 4))
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                if jobs.heartbeat(self.reg, self.ctx.claim, self.lease_s, self.ctx.progress, self.ctx.stage):
                    self.ctx.cancelled.set()
            except LeaseLost:
                self.ctx.lost.set()
                return
            except Exception:  # the database may be briefly away: keep trying until the lease says
                log.exception("heartbeat of job %s failed", self.ctx.claim.job_id)

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def require_tensor_stack() -> None:
    """Jobs run torch code: refuse to start a worker that could only fail them."""
    if importlib.util.find_spec("torch") is None:
        raise BadRequest(
            "jobs (merge, export, check-4bit) need the tensor stack: pip install torch, then "
            "pip install 'adapter-registry[tensors]'"
        )


class Worker:
    """Runs jobs from one registry. Many workers (threads, processes, machines) share a queue."""

    def __init__(self, reg: Registry, settings: WorkerSettings) -> None:
        require_tensor_stack()
        self.reg = reg
        self.settings = settings
        self.name = settings.name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_s = settings.lease_s
        self.poll_s = settings.poll_s
        self.cache = local_cache(reg.store, settings.cache_dir)

    def run_once(self) -> JobInfo | None:
        """Claim one job and run it to its end; None when the queue had nothing for us."""
        claim = jobs.claim(self.reg, self.name, self.lease_s)
        if claim is None:
            return None
        log.info("worker %s runs job %s (%s, attempt %s)", self.name, claim.job_id, claim.type, claim.attempt)
        ctx = JobContext(self.reg, self.settings, claim, self.cache)
        beat = Heartbeat(self.reg, ctx, self.lease_s)
        started, lost = time.monotonic(), False
        beat.start()
        try:
            try:
                BODIES[claim.type](ctx)  # publishes its output with the job's success, fenced
            finally:  # before a failure is recorded: whoever sees it ended sees it cleaned up
                beat.stop()
                shutil.rmtree(ctx.scratch_path, ignore_errors=True)
        except LeaseLost:
            lost = True
            log.warning("job %s was taken over; this worker's run is void", claim.job_id)
        except JobCancelled as err:
            jobs.finish_failed(self.reg, claim, err.code, err.message, retry=False)
        except RegistryError as err:
            jobs.finish_failed(self.reg, claim, err.code, err.message, retry=isinstance(err, RETRYABLE))
        except StorageError as err:
            jobs.finish_failed(self.reg, claim, "storage_error", str(err), retry=True)
        except Exception as err:
            log.exception("job %s crashed", claim.job_id)
            jobs.finish_failed(self.reg, claim, "job_failed", f"{type(err).__name__}: {err}", retry=True)
        info = jobs.get(self.reg, claim.job_id, principal=OPERATOR)  # the worker acts for the system
        _count(claim.type, info.status, lost, time.monotonic() - started)
        return info

    def run(self, stop: threading.Event, once: bool = False) -> int:
        """Run jobs until `stop` is set (or, with `once`, until the queue is empty). Returns how
        many jobs this worker ran."""
        ran = 0
        while not stop.is_set():
            try:
                info = self.run_once()
            except Exception:  # a database hiccup must not kill a long-running worker
                log.exception("worker %s could not claim a job", self.name)
                info = None
                if once:
                    raise
            if info is not None:
                ran += 1
                continue
            if once:
                break
            stop.wait(self.poll_s)
        return ran


def _count(job_type: str, status: str, lost: bool, seconds: float) -> None:
    """One run's outcome for the metrics: how the job stands after it (queued again: retried)."""
    sink = events.sink()
    if lost:
        sink.lease_lost(job_type)
        sink.job_finished(job_type, "lease_lost", seconds)
    else:
        sink.job_finished(job_type, _OUTCOMES.get(status, "retried"), seconds)


_OUTCOMES: dict[str, events.JobOutcome] = {
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}


class WorkerThread:
    """One worker in a daemon thread: embedded mode and `adapters serve` run one by default."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.stop_event = threading.Event()
        self.thread = threading.Thread(
            target=worker.run, args=(self.stop_event,), name="adapters-worker", daemon=True
        )

    def start(self) -> WorkerThread:
        self.thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self.stop_event.set()
        self.thread.join(timeout)
