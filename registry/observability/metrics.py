"""The Prometheus metrics of a server or worker process: one registry, bounded labels.

Counters and histograms live as long as the process (as loggers do): `process_metrics()` builds
them once, on first use by a server or worker, never at import. What is true of one app rather
than the process (its upload slots, the job queue in its database) is collected at scrape time by
`UploadSlotsCollector` and `JobQueueCollector`, handed to `Metrics.exposition`.

Every label value comes from a fixed set: the route template of the matched route (`unmatched`
when none matched), the method (`other` beyond the standard ones), the status code, the job type
(`other` beyond the registered kinds), an outcome. No path, repository, user or token ever
becomes a label, so the page is safe to show to whoever may scrape it (README: Metrics).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Protocol, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from registry.db import models as m
from registry.jobspec import JobType
from registry.observability.events import AuthVia, CacheResult, GcOutcome, JobOutcome, install

if TYPE_CHECKING:
    from sqlalchemy import Engine


class HasEngine(Protocol):
    """What the queue collector reads from: the services' Registry, named by its one attribute
    used here, so that this floor does not import the services (which report through
    registry.observability.events: the two packages would import each other)."""

    @property
    def engine(self) -> Engine: ...


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROUTE_UNMATCHED = "unmatched"
"""The route label of a request no route matched (404s of random paths, framing refusals)."""
ROUTE_DRAINING = "draining"
"""The route label of a request refused because the server is shutting down."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
JOB_TYPES: tuple[str, ...] = get_args(JobType)
JOB_STATES = ("queued", "running")
CACHES = ("blob",)
"""Caches whose lookups are counted: `blob`, a process's local copy of blobs from a remote store
(a worker's inputs and bases, LocalClient pulls)."""
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
"""Prometheus' defaults up to 10 s, then uploads and downloads of large blobs."""
JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


def job_type_label(job_type: str) -> str:
    return job_type if job_type in JOB_TYPES else "other"


class Metrics:
    """The process's metrics; also the `events.Sink` that services count into."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.requests = Counter(
            "adapters_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "adapters_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by method and route template",
            ["method", "route"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.bytes_in = Counter(
            "adapters_http_request_body_bytes",
            "Request body bytes received, by route template",
            ["route"],
            registry=r,
        )
        self.bytes_out = Counter(
            "adapters_http_response_body_bytes",
            "Response body bytes sent, by route template",
            ["route"],
            registry=r,
        )
        self.in_flight = Gauge(
            "adapters_http_requests_in_flight",
            "Requests being answered now (probes and /metrics excepted)",
            registry=r,
        )
        self.draining = Gauge(
            "adapters_draining", "1 while the server drains after SIGTERM (/readyz answers 503)", registry=r
        )
        self.auth_failures = Counter(
            "adapters_auth_failures",
            "Credentials that did not authenticate, by how they came (bearer token, UI cookie, UI login)",
            ["via"],
            registry=r,
        )
        self.auth_throttled_total = Counter(
            "adapters_auth_throttled",
            "Requests refused 429 auth_throttled before their credential was read",
            registry=r,
        )
        self.writes_denied = Counter("adapters_writes_denied", "Writes answered 403", registry=r)
        self.gc_runs = Counter(
            "adapters_gc_runs", "Garbage collections of the blob store, by outcome", ["outcome"], registry=r
        )
        self.gc_blobs = Counter("adapters_gc_reclaimed_blobs", "Blobs garbage collection deleted", registry=r)
        self.gc_bytes = Counter("adapters_gc_reclaimed_bytes", "Bytes garbage collection deleted", registry=r)
        self.jobs_finished = Counter(
            "adapters_jobs_finished",
            "Job runs this process ended, by type and outcome",
            ["type", "outcome"],
            registry=r,
        )
        self.job_duration = Histogram(
            "adapters_job_duration_seconds",
            "Wall time of a job run in this process, by type and outcome",
            ["type", "outcome"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.lease_losses = Counter(
            "adapters_job_lease_losses",
            "Job runs voided because another worker took the lease over",
            ["type"],
            registry=r,
        )
        self.cache_lookups = Counter(
            "adapters_cache_lookups",
            "Cache lookups by cache and result (hit, miss)",
            ["cache", "result"],
            registry=r,
        )
        # Every bounded series exists from the start: rate() and absent() work before the first event.
        for via in get_args(AuthVia):
            self.auth_failures.labels(via)
        for outcome in get_args(GcOutcome):
            self.gc_runs.labels(outcome)
        for job_type in JOB_TYPES:
            self.lease_losses.labels(job_type)
            for job_outcome in get_args(JobOutcome):
                self.jobs_finished.labels(job_type, job_outcome)
        for name in CACHES:
            for result in get_args(CacheResult):
                self.cache_lookups.labels(name, result)

    def install(self) -> Metrics:
        """Make these the sink of this process's `events` (what services count)."""
        install(self)
        return self

    def exposition(self, collectors: Iterable[Collector] = ()) -> bytes:
        """The text exposition of the process's metrics and of `collectors` (scraped now)."""
        page = CollectorRegistry(auto_describe=False)
        page.register(_Forward(self.registry))
        for c in collectors:
            page.register(c)
        return generate_latest(page)

    # ---- events.Sink
    def auth_failed(self, via: AuthVia) -> None:
        self.auth_failures.labels(via).inc()

    def auth_throttled(self) -> None:
        self.auth_throttled_total.inc()

    def write_denied(self) -> None:
        self.writes_denied.inc()

    def gc_run(self, outcome: GcOutcome, blobs: int, nbytes: int) -> None:
        self.gc_runs.labels(outcome).inc()
        if outcome == "ok":
            self.gc_blobs.inc(blobs)
            self.gc_bytes.inc(nbytes)

    def job_finished(self, job_type: str, outcome: JobOutcome, seconds: float) -> None:
        label = job_type_label(job_type)
        self.jobs_finished.labels(label, outcome).inc()
        self.job_duration.labels(label, outcome).observe(seconds)

    def lease_lost(self, job_type: str) -> None:
        self.lease_losses.labels(job_type_label(job_type)).inc()

    def cache(self, name: str, result: CacheResult, n: int = 1) -> None:
        if n:
            self.cache_lookups.labels(name if name in CACHES else "other", result).inc(n)


@cache
def process_metrics() -> Metrics:
    """This process's metrics, built on first use (a server's app factory, a worker)."""
    return Metrics()


class _Forward(Collector):
    """The process registry's metrics, as one collector of a page's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


class SlotsView(Protocol):
    """What `registry.api.uploads.UploadSlots` tells about itself."""

    @property
    def capacity(self) -> int: ...
    def usage(self) -> tuple[int, int]: ...


class UploadSlotsCollector(Collector):
    """A server's upload slots: how many bodies are read now, how many wait, of how many."""

    def __init__(self, slots: Callable[[], SlotsView | None]) -> None:
        self._slots = slots

    def collect(self) -> Iterator[Metric]:
        slots = self._slots()
        if slots is None:  # before start-up finished
            return
        reading, waiting = slots.usage()
        yield GaugeMetricFamily(
            "adapters_upload_slots", "Upload bodies the server reads at once", value=slots.capacity
        )
        yield GaugeMetricFamily("adapters_upload_slots_in_use", "Upload bodies being read now", value=reading)
        yield GaugeMetricFamily("adapters_upload_slots_waiting", "Uploads waiting for a slot", value=waiting)


class JobQueueCollector(Collector):
    """Jobs queued and running by type, and the age of the oldest queued job, from the database.

    One grouped query over the rows whose status is queued or running (the `ix_jobs_status_id`
    index), remembered for `ttl_s` so that several scrapers cost one query. Its answer has at most
    |types| x 2 rows. A database that does not answer gives `adapters_jobs_query_up 0` and no
    queue gauges rather than a failed scrape (the other metrics still matter then)."""

    def __init__(
        self, reg: HasEngine, ttl_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._reg = reg
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._at: float | None = None
        self._rows: list[tuple[str, str, int, datetime | None]] | None = None

    def _query(self) -> list[tuple[str, str, int, datetime | None]] | None:
        with self._lock:
            t = self._clock()
            if self._at is not None and t - self._at < self._ttl_s:
                return self._rows
            stmt = (
                select(m.Job.type, m.Job.status, func.count(), func.min(m.Job.created_at))
                .where(m.Job.status.in_(JOB_STATES))
                .group_by(m.Job.type, m.Job.status)
            )
            try:
                with self._reg.engine.connect() as conn:
                    rows: list[tuple[str, str, int, datetime | None]] | None = [
                        (str(a), str(b), int(c), d) for a, b, c, d in conn.execute(stmt)
                    ]
            except Exception:  # the database is down: /readyz says so; the scrape goes on
                rows = None
            self._at, self._rows = t, rows
            return rows

    def collect(self) -> Iterator[Metric]:
        rows = self._query()
        up = GaugeMetricFamily("adapters_jobs_query_up", "1 when the job queue query of this scrape answered")
        up.add_metric([], 0 if rows is None else 1)
        yield up
        if rows is None:
            return
        counts = {(t, s): 0 for t in (*JOB_TYPES, "other") for s in JOB_STATES}
        oldest: dict[str, datetime] = {}
        for job_type, status, n, first in rows:
            label = job_type_label(job_type)
            counts[label, status] += n
            if status == "queued" and first is not None:
                oldest[label] = min(first, oldest.get(label, first))
        depth = GaugeMetricFamily(
            "adapters_jobs",
            "Jobs queued or running in the database, by type and status",
            labels=["type", "status"],
        )
        for (job_type, status), n in counts.items():
            depth.add_metric([job_type, status], n)
        yield depth
        age = GaugeMetricFamily(
            "adapters_jobs_oldest_queued_age_seconds",
            "Seconds since the oldest queued job of each type was submitted (0: none queued)",
            labels=["type"],
        )
        now = datetime.now(UTC)
        for job_type in (*JOB_TYPES, "other"):
            first_at = oldest.get(job_type)
            age.add_metric([job_type], max(0.0, (now - first_at).total_seconds()) if first_at else 0.0)
        yield age
