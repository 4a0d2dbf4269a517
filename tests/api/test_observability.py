"""What an operator watches, on a real `adapters serve` process: /metrics after real traffic
(checked by Prometheus' own `promtool check metrics`), one JSON object a log line with no secret
in any of them, and the drain after SIGTERM (/readyz 503 while an upload in flight finishes)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from registry.access.principal import OPERATOR
from registry.config import Settings
from registry.observability.logs import redact
from registry.services import accounts
from registry.services.context import Registry
from tests.conftest import db_url_for, free_port, make_settings

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[2]
PRIVATE = "hiddenteam/secretproject"
"""A repository nobody may see: its name must reach neither the metrics page nor a log line."""


def promtool() -> str:
    """promtool's path; skipped only where it is missing outside CI (.ci/run installs it)."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing in CI: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool (Debian's prometheus package) is not installed")
    return found


class Serve:
    """`adapters serve --no-worker` in its own process, stderr kept in a file."""

    def __init__(self, settings: Settings, log: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        full = {
            **os.environ,
            "ADAPTERS_HOME": str(settings.home),
            "ADAPTERS_DATABASE_URL": settings.effective_database_url,
            "ADAPTERS_BLOB_URL": settings.effective_blob_url,
            "ADAPTERS_LOG_FORMAT": "json",
            **env,
        }
        full.pop("ADAPTERS_URL", None)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "serve", "--no-worker", "--port", str(self.port)],
                cwd=ROOT,
                env=full,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"adapters serve did not start:\n{log.read_text()}")
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def records(self) -> list[dict[str, object]]:
        """Every line of the server's output, each of which must be one JSON object."""
        lines = [line for line in self.log.read_text().splitlines() if line.strip()]
        return [json.loads(line) for line in lines]


@pytest.fixture
def home(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Settings, str]]:
    """A registry on SQLite and a file store, with an admin `tester` and their token."""
    settings = make_settings(tmp_path / "server", db_url_for("sqlite", tmp_path, request), "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    try:
        accounts.add_user(reg, "tester", admin=True, principal=OPERATOR)
        token, _ = accounts.create_token(reg, "tester", name="tests", principal=OPERATOR)
    finally:
        reg.close()
    yield settings, token


def test_metrics_after_real_traffic_pass_promtool_and_logs_keep_no_secret(
    home: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, token = home
    server = Serve(settings, tmp_path / "serve.log")
    try:
        http = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {token}"})
        bare = httpx.Client(base_url=server.url, timeout=30)
        # ---- real traffic: a blob upload, a Hub LFS upload through its signed URL, refusals
        body = os.urandom(70_000)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        assert http.put(f"/v1/blobs/{digest}", content=body).status_code == 201
        assert http.get(f"/v1/blobs/{digest}").content == body
        weights = os.urandom(5000)
        oid = hashlib.sha256(weights).hexdigest()
        batch = http.post(
            "/acme/hubbed.git/info/lfs/objects/batch",
            json={
                "operation": "upload",
                "transfers": ["basic"],
                "objects": [{"oid": oid, "size": len(weights)}],
            },
        )
        assert batch.status_code == 200, batch.text
        href = batch.json()["objects"][0]["actions"]["upload"]["href"]
        signature = urlsplit(href).query
        assert "sig=" in signature
        assert bare.put(href, content=weights).status_code in (200, 201)
        wrong = bare.get("/v1/repos", headers={"Authorization": "Bearer adreg_" + "x" * 43})
        assert wrong.status_code == 401
        assert http.get(f"/v1/repos/{PRIVATE}/versions/1").status_code == 404
        assert bare.get(f"/no/such/{PRIVATE}/page/at/all").status_code == 404
        for n in range(30):  # raw paths never become labels
            bare.get(f"/random-{n}/{PRIVATE}")

        page = bare.get("/metrics")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/plain")
        text = page.text
        check = subprocess.run(
            [promtool(), "check", "metrics"], input=page.content, capture_output=True, timeout=60, check=False
        )
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()

        def sample(name: str, **labels: str) -> float:
            for line in text.splitlines():
                if line.startswith(name + "{") or line.startswith(name + " "):
                    got = dict(
                        part.split("=", 1)
                        for part in line[line.find("{") + 1 : line.rfind("}")].split(",")
                        if "=" in part
                    )
                    if all(got.get(k) == f'"{v}"' for k, v in labels.items()):
                        return float(line.rsplit(" ", 1)[1])
            raise AssertionError(f"no sample {name} {labels} in:\n{text}")

        assert (
            sample("adapters_http_requests_total", method="PUT", route="/v1/blobs/{digest}", status="201")
            == 1
        )
        assert sample("adapters_http_request_body_bytes_total", route="/v1/blobs/{digest}") >= len(body)
        assert sample("adapters_http_response_body_bytes_total", route="/v1/blobs/{digest}") >= len(body)
        assert (
            sample("adapters_http_request_duration_seconds_count", method="PUT", route="/v1/blobs/{digest}")
            == 1
        )
        assert sample("adapters_http_requests_total", method="GET", route="unmatched", status="404") >= 31
        assert sample("adapters_auth_failures_total", via="bearer") >= 1
        assert sample("adapters_upload_slots") == settings.upload_concurrency
        assert sample("adapters_upload_slots_in_use") == 0
        assert sample("adapters_jobs_query_up") == 1
        assert sample("adapters_jobs", type="merge", status="queued") == 0
        assert sample("adapters_jobs_oldest_queued_age_seconds", type="export") == 0
        assert sample("adapters_gc_runs_total", outcome="ok") == 0
        assert "random-" not in text and "secretproject" not in text and "hiddenteam" not in text
        assert token not in text and "sig=" not in text

        # A metrics token, when set, is needed (checked on a second server below is not needed:
        # the same middleware reads it; see test_metrics_token).
    finally:
        rc = server.stop()
    assert rc == 0, server.log.read_text()

    # ---- the log: one JSON object a line, requests with their fields, no secret anywhere
    raw = server.log.read_text()
    assert token not in raw and token[:20] not in raw
    assert signature not in raw and "sig=" not in raw
    assert "secretproject" not in raw
    records = server.records()
    access = [r for r in records if r.get("logger") == "registry.access"]
    put = next(r for r in access if r.get("route") == "/v1/blobs/{digest}" and r.get("method") == "PUT")
    assert put["status"] == 201 and put["user"] == "tester" and put["bytes_in"] == len(body)
    assert isinstance(put["request_id"], str) and len(put["request_id"]) >= 16
    assert isinstance(put["duration_s"], float) and put["bytes_out"] > 0
    lfs = [r for r in access if str(r.get("route", "")).startswith("/api/lfs-upload/")]
    assert lfs and all("?" not in str(r["route"]) for r in lfs)
    assert any(r.get("status") == 401 for r in access)
    assert not any(r.get("route") == "/" or "random-" in str(r.get("route")) for r in access)


def test_metrics_token(home: tuple[Settings, str], tmp_path: Path) -> None:
    settings, _ = home
    server = Serve(settings, tmp_path / "serve.log", ADAPTERS_METRICS_TOKEN="scrape-me-please")
    try:
        assert httpx.get(f"{server.url}/metrics").status_code == 401
        wrong = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer scrape-me-please"})
        assert ok.status_code == 200 and "adapters_http_requests_total" in ok.text
    finally:
        assert server.stop() == 0
    assert "scrape-me-please" not in server.log.read_text()


def test_sigterm_drains_an_upload_in_flight(home: tuple[Settings, str], tmp_path: Path) -> None:
    settings, token = home
    server = Serve(settings, tmp_path / "serve.log", ADAPTERS_SHUTDOWN_DEADLINE_S="60")
    chunks = [os.urandom(64 * 1024) for _ in range(8)]
    body = b"".join(chunks)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    sending = threading.Event()
    release = threading.Event()
    answer: dict[str, httpx.Response | BaseException] = {}

    def slow() -> Iterator[bytes]:
        yield chunks[0]
        sending.set()
        release.wait(30)  # SIGTERM arrives while the body is half sent
        for chunk in chunks[1:]:
            time.sleep(0.05)
            yield chunk

    def upload() -> None:
        try:
            answer["put"] = httpx.put(
                f"{server.url}/v1/blobs/{digest}",
                content=slow(),
                headers={"Authorization": f"Bearer {token}", "Content-Length": str(len(body))},
                timeout=60,
            )
        except BaseException as err:
            answer["put"] = err

    uploader = threading.Thread(target=upload)
    uploader.start()
    try:
        assert sending.wait(30)
        time.sleep(0.3)  # the server has the request and reads its body
        server.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while True:  # the load balancer's view: not ready, yet still answering
            ready = httpx.get(f"{server.url}/readyz", timeout=5)
            if ready.status_code == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert ready.status_code == 503 and ready.json()["draining"] is True
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        refused = httpx.get(f"{server.url}/v1/repos", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert refused.status_code == 503 and refused.json()["code"] == "server_unavailable"
        assert refused.headers["retry-after"] == "1" and refused.headers["connection"] == "close"
        assert server.proc.poll() is None  # still draining: the upload is in flight
        release.set()
        uploader.join(30)
        put = answer["put"]
        assert isinstance(put, httpx.Response), put
        assert put.status_code == 201, put.text
        assert server.proc.wait(30) == 0  # stopped by itself once nothing was in flight
    finally:
        release.set()
        uploader.join(30)
        server.stop()
    reg = Registry.from_settings(settings)
    try:
        assert reg.store.stat(digest) is not None
    finally:
        reg.close()
    # The drain's own line (a 503 it answered meanwhile may be logged first, at error level).
    warned = [r for r in server.records() if str(r.get("message")).startswith("draining:")]
    assert warned and warned[0]["level"] == "warning"


def test_redaction() -> None:
    token = "adreg_" + "A1b2" * 10 + "xyz"
    line = (
        f"GET /api/lfs-upload/abc/12?expires=1&user=u&token=t&sig=deadbeef HTTP/1.1 Authorization: Bearer {token} "
        "postgresql://reg:hunter2@db:5432/reg https://s3.example/bucket/key?X-Amz-Signature=abc&X-Amz-Date=1 "
        "password=hunter2"
    )
    out = redact(line)
    for secret in (token, "deadbeef", "hunter2", "X-Amz-Signature=abc", "token=t"):
        assert secret not in out, out
    assert "/api/lfs-upload/abc/12 " in out and "https://s3.example/bucket/key" in out and "@db:5432" in out


def add_job(reg: Registry, job_type: str, status: str, age_s: float, **params: object) -> int:
    """A job row as a submission leaves it (parameters unchecked: what a worker finds is tested)."""
    from datetime import UTC, datetime, timedelta

    from registry.db import models as m
    from registry.db.engine import unit_of_work

    with unit_of_work(reg.sessions) as session:
        job = m.Job(
            type=job_type,
            params=params,
            status=status,
            max_attempts=1,
            created_by="tester",
            created_at=datetime.now(UTC) - timedelta(seconds=age_s),
        )
        session.add(job)
        session.flush()
        return job.id


def test_job_queue_gauges_come_from_one_grouped_query(home: tuple[Settings, str]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from registry.observability.metrics import JobQueueCollector, Metrics

    settings, _ = home
    reg = Registry.from_settings(settings)
    try:
        for age in (100, 5):
            add_job(reg, "export", "queued", age)
        add_job(reg, "merge", "running", 1)
        add_job(reg, "check-4bit", "succeeded", 1000)
        page = Metrics().exposition([JobQueueCollector(reg)]).decode()
    finally:
        reg.close()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
    }
    assert samples["adapters_jobs", (("status", "queued"), ("type", "export"))] == 2
    assert samples["adapters_jobs", (("status", "running"), ("type", "merge"))] == 1
    assert samples["adapters_jobs", (("status", "queued"), ("type", "check-4bit"))] == 0
    assert 100 <= samples["adapters_jobs_oldest_queued_age_seconds", (("type", "export"),)] < 200
    assert samples["adapters_jobs_oldest_queued_age_seconds", (("type", "merge"),)] == 0


def test_worker_metrics_port(home: tuple[Settings, str], tmp_path: Path) -> None:
    """`adapters worker --metrics-port`: a job that fails is counted with its type and outcome,
    and the page passes promtool."""
    settings, _ = home
    reg = Registry.from_settings(settings)
    try:
        job_id = add_job(reg, "merge", "queued", 1, bogus=True)
    finally:
        reg.close()
    port = free_port()
    env = {
        **os.environ,
        "ADAPTERS_HOME": str(settings.home),
        "ADAPTERS_DATABASE_URL": settings.effective_database_url,
        "ADAPTERS_BLOB_URL": settings.effective_blob_url,
        "ADAPTERS_WORKER_POLL_S": "0.1",
        "ADAPTERS_LOG_FORMAT": "json",
        "ADAPTERS_URL": "",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker", "--device", "cpu", "--metrics-port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        text = ""
        while 'outcome="failed",type="merge"} 1.0' not in text:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert 'adapters_job_duration_seconds_count{outcome="failed",type="merge"} 1.0' in text
        assert 'adapters_jobs{status="queued",type="merge"}' in text
        assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=5).status_code == 404
        check = subprocess.run(
            [promtool(), "check", "metrics"],
            input=text.encode(),
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    finally:
        proc.terminate()
        proc.wait(30)
    reg = Registry.from_settings(settings)
    try:
        from registry.services import jobs

        assert jobs.get(reg, job_id, principal=OPERATOR).status == "failed"
    finally:
        reg.close()
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(json.loads(line)["logger"] == "registry.worker" for line in lines)


def test_blob_cache_lookups_are_counted(tmp_path: Path) -> None:
    """A worker's blob cache in front of a remote store: what it holds is a hit, the rest a miss."""
    from dataclasses import dataclass

    from registry.client.transfer import StoreBlobs, fetch_missing
    from registry.observability import events
    from registry.observability.metrics import Metrics
    from storage.local import LocalBlobStore

    @dataclass
    class File:
        path: str
        size: int
        sha256: str

    store, cache = LocalBlobStore(tmp_path / "store"), LocalBlobStore(tmp_path / "cache")
    blobs = [os.urandom(1000 + n) for n in range(3)]
    files = [File(f"f{n}", len(b), "sha256:" + hashlib.sha256(b).hexdigest()) for n, b in enumerate(blobs)]
    for f, b in zip(files, blobs, strict=True):
        store.put(io.BytesIO(b), f.sha256, f.size)
    cache.put(io.BytesIO(blobs[0]), files[0].sha256, files[0].size)
    metrics, before = Metrics(), events.sink()
    metrics.install()
    try:
        fetch_missing(StoreBlobs(store, cache), files, None)
        fetch_missing(StoreBlobs(store, cache), files, None)  # now all held
    finally:
        events.install(before)
    assert metrics.cache_lookups.labels("blob", "hit")._value.get() == 1 + 3
    assert metrics.cache_lookups.labels("blob", "miss")._value.get() == 2
