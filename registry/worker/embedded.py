"""Jobs run in this process while a command waits on them: the embedded default needs no worker
process. Over HTTP a server's workers run them, and nothing starts here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from registry.client.interface import RegistryClient
from registry.client.local import LocalClient
from registry.worker.loop import Worker, WorkerThread
from registry.worker.settings import WorkerSettings


@contextmanager
def jobs_run_here(
    client: RegistryClient, settings: WorkerSettings, enabled: bool = True
) -> Iterator[WorkerThread | None]:
    """While the block runs, a worker thread runs queued jobs on `client`'s registry if that
    registry lives in this process (a LocalClient), and `enabled`; stopped when the block ends.

    Started before the block, so a process that cannot run jobs (no torch) refuses before
    queueing one.
    """
    if not enabled or not client.in_process:
        yield None
        return
    assert isinstance(client, LocalClient)  # the one in-process client: it holds the registry
    thread = WorkerThread(Worker(client.registry, settings)).start()
    try:
        yield thread
    finally:
        thread.stop()
