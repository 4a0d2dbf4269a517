"""Faults with nothing lost, under a small steady mixed load through the load balancer (a pusher,
a puller, a Hub downloader; a merge job in the worker case): kill -9 a replica, kill -9 a worker
mid-job, the database taken away and given back, the S3 endpoint taken away and given back. After
each, the consistency check of tests/cluster/load.py: fsck --verify finds no problem and every push
a client saw succeed reads back byte for byte through each replica.

PostgreSQL is shared with other tests, so it is not restarted: the replicas and workers reach it
(and moto) through a CuttableProxy (tests/cluster/proxy.py) that the test cuts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster.harness import JOB_LEASE_S, NGINX, Cluster, Proc
from tests.cluster.load import Load, check_consistency, write_adapter

pytestmark = pytest.mark.slow

RECOVERY_S = 30.0
"""A replica must answer again by itself within this after its database or store is back."""


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed: apt-get install -y nginx (.ci/run does)")
    with Cluster(workdir=tmp_path_factory.mktemp("faults"), cuttable=True) as c:
        yield c


def _direct(cluster: Cluster, replica: Proc) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://127.0.0.1:{replica.port}",
        headers={"Authorization": f"Bearer {cluster.token}"},
        timeout=60,
    )


def _assert_nothing_lost(cluster: Cluster, load: Load) -> None:
    print(load.tally.summary())  # shown with -s, and in a failure's report
    assert load.tally.lost == [], load.tally.summary() + "\n" + cluster.logs()
    assert load.tally.ok["push"] >= 2 and load.tally.ok["pull"] >= 2 and load.tally.ok["hub"] >= 2, (
        load.tally.summary()
    )
    assert check_consistency(cluster, load.tally) == [], cluster.logs()


def test_kill_a_replica(faulty: Cluster, tmp_path: Path) -> None:
    """Only requests in flight on the killed replica fail (at most one per client thread); the
    retries land on the other; no version is half-written."""
    victim = faulty.replicas[0]
    with Load(faulty, tmp_path) as load:
        time.sleep(2)
        before = load.tally.attempts_failed
        victim.kill()
        time.sleep(5)
    threads = 3
    assert load.tally.attempts_failed - before <= threads, load.tally.summary()
    victim.start()
    faulty.wait_ready(victim)
    _assert_nothing_lost(faulty, load)


def test_kill_a_worker_mid_job(faulty: Cluster, tmp_path: Path) -> None:
    """The other worker takes the job over once its lease lapses; one output is published."""
    home = tmp_path / "home"
    for name, seed in (("jobs/m1", 101), ("jobs/m2", 102)):
        folder = tmp_path / name.split("/")[1]
        write_adapter(folder, seed)
        faulty.cli(home, "push", str(folder), name)
    with Load(faulty, tmp_path / "load") as load:
        job = faulty.cli(
            home,
            "merge",
            "jobs/m1=0.5",
            "jobs/m2=0.5",
            "--into",
            "jobs/merged",
            "--method",
            "linear",
            "--no-wait",
        )
        job_id = str(job.get("id") or job.get("job_id"))
        claimed = f"runs job {job_id} "
        deadline = time.monotonic() + 30
        victim = None
        while victim is None:
            victim = next((w for w in faulty.workers if claimed in w.log.read_text()), None)
            assert time.monotonic() < deadline, faulty.logs()
            time.sleep(0.02)
        victim.kill()
        killed_at = time.monotonic()
        http = httpx.Client(
            base_url=faulty.url, headers={"Authorization": f"Bearer {faulty.token}"}, timeout=30
        )
        while (shown := http.get(f"/v1/jobs/{job_id}").raise_for_status().json())["status"] not in (
            "succeeded",
            "failed",
            "cancelled",
        ):
            assert time.monotonic() - killed_at < 60, shown
            time.sleep(0.2)
    assert shown["status"] == "succeeded", shown
    assert time.monotonic() - killed_at >= JOB_LEASE_S * 0.5  # taken over after the lease, not before
    survivor = next(w for w in faulty.workers if w is not victim)
    assert claimed in survivor.log.read_text(), faulty.logs()
    one = http.get("/v1/resolve", params={"ref": "jobs/merged:1"})
    assert one.status_code == 200, one.text
    assert http.get("/v1/resolve", params={"ref": "jobs/merged:2"}).status_code == 404  # exactly one output
    victim.start()
    _assert_nothing_lost(faulty, load)


def _until_answers(cluster: Cluster, path: str, params: dict[str, str] | None = None) -> float:
    """Seconds until every replica answers `path` 200 again by itself."""
    started = time.monotonic()
    for replica in cluster.replicas:
        with _direct(cluster, replica) as http:
            while (r := http.get(path, params=params)).status_code != 200:
                assert r.status_code == 503, r.text
                assert time.monotonic() - started < RECOVERY_S, f"{replica.name} did not recover: {r.text}"
                time.sleep(0.2)
    return time.monotonic() - started


def test_database_away_then_back(faulty: Cluster, tmp_path: Path) -> None:
    """Every replica answers 503 server_unavailable while the database is away, and recovers by
    itself when it is back."""
    assert faulty.db_proxy is not None
    with Load(faulty, tmp_path) as load:
        time.sleep(1)
        faulty.db_proxy.cut()
        try:
            for replica in faulty.replicas:
                with _direct(faulty, replica) as http:
                    r = http.get("/v1/resolve", params={"ref": load.repo})
                    assert r.status_code == 503 and r.json()["code"] == "server_unavailable", r.text
                    assert http.get("/readyz").status_code == 503
        finally:
            faulty.db_proxy.restore()
        _until_answers(faulty, "/v1/resolve", {"ref": load.repo})
        time.sleep(1)
    kinds = {kind.split(": ", 1)[1] for kind in load.tally.failed}
    assert kinds <= {"503 server_unavailable"}, load.tally.summary()
    _assert_nothing_lost(faulty, load)


def test_store_away_then_back(faulty: Cluster, tmp_path: Path) -> None:
    """Blob routes answer 503 server_unavailable while the S3 endpoint is away (the Hub's too),
    and recover by themselves when it is back."""
    assert faulty.s3_proxy is not None
    with Load(faulty, tmp_path) as load:
        time.sleep(1)
        shown = httpx.get(
            f"{faulty.url}/v1/resolve",
            params={"ref": load.repo},
            headers={"Authorization": f"Bearer {faulty.token}"},
        ).json()
        blob = "/v1/blobs/sha256:" + shown["files"][0]["sha256"].removeprefix("sha256:")
        faulty.s3_proxy.cut()
        try:
            for replica in faulty.replicas:
                with _direct(faulty, replica) as http:
                    r = http.get(blob)
                    assert r.status_code == 503 and r.json()["code"] == "server_unavailable", r.text
            with _direct(faulty, faulty.replicas[0]) as http:
                hub = http.get(f"/{load.repo}/resolve/main/adapter_model.safetensors")
                assert hub.status_code == 503, hub.text
        finally:
            faulty.s3_proxy.restore()
        _until_answers(faulty, blob)
        time.sleep(1)
    kinds = {kind.split(": ", 1)[1] for kind in load.tally.failed}
    assert kinds <= {"503 server_unavailable"}, load.tally.summary()  # never a 500, never another code
    _assert_nothing_lost(faulty, load)
