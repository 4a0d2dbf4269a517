"""Workers: claim jobs from the metadata database, heartbeat, run the tensor work, publish fenced."""

from registry.worker.loop import Worker, WorkerThread

__all__ = ["Worker", "WorkerThread"]
