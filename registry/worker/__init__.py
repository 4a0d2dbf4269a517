"""Workers: claim jobs from the metadata database, heartbeat, run the tensor work, publish fenced."""

from registry.worker.embedded import jobs_run_here
from registry.worker.loop import Worker, WorkerThread
from registry.worker.settings import WorkerSettings

__all__ = ["Worker", "WorkerSettings", "WorkerThread", "jobs_run_here"]
