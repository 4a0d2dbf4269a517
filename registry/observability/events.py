"""The counts services and workers report, in one vocabulary, without importing a metrics library.

Services run in the CLI too, where nothing is scraped and importing prometheus_client would cost
50-90 ms of every command's start-up (`python -X importtime`). So a service calls a function here;
each goes to the process's sink, which does nothing until a server or worker installs the
Prometheus one (`registry.observability.metrics.process_metrics().install()`). Every label value
passed here comes from a fixed set, so the sink's series stay bounded.
"""

from __future__ import annotations

from typing import Literal, Protocol

AuthVia = Literal["bearer", "cookie", "login"]
GcOutcome = Literal["ok", "dry_run", "refused", "failed"]
JobOutcome = Literal["succeeded", "failed", "retried", "cancelled", "lease_lost"]
CacheResult = Literal["hit", "miss"]


class Sink(Protocol):
    """Where the counts go (the Prometheus metrics of `registry.observability.metrics`)."""

    def auth_failed(self, via: AuthVia) -> None: ...
    def auth_throttled(self) -> None: ...
    def write_denied(self) -> None: ...
    def gc_run(self, outcome: GcOutcome, blobs: int, nbytes: int) -> None: ...
    def job_finished(self, job_type: str, outcome: JobOutcome, seconds: float) -> None: ...
    def lease_lost(self, job_type: str) -> None: ...
    def cache(self, name: str, result: CacheResult, n: int = 1) -> None: ...


class NullSink:
    """Counts nothing: the CLI's and the tests' default."""

    def auth_failed(self, via: AuthVia) -> None:
        pass

    def auth_throttled(self) -> None:
        pass

    def write_denied(self) -> None:
        pass

    def gc_run(self, outcome: GcOutcome, blobs: int, nbytes: int) -> None:
        pass

    def job_finished(self, job_type: str, outcome: JobOutcome, seconds: float) -> None:
        pass

    def lease_lost(self, job_type: str) -> None:
        pass

    def cache(self, name: str, result: CacheResult, n: int = 1) -> None:
        pass


class _Events:
    """The process's sink, swapped once by whoever serves metrics (a server, a worker)."""

    sink: Sink = NullSink()


def install(sink: Sink) -> None:
    """Send this process's counts to `sink` from now on."""
    _Events.sink = sink


def sink() -> Sink:
    """The process's sink: call its methods to count (`events.sink().auth_failed("bearer")`)."""
    return _Events.sink
