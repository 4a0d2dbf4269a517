"""/v1/jobs over real HTTP: submit, read, list, cancel, and what a server refuses."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import ServerThread

PROBLEM = "application/problem+json"
MERGE = {"inputs": [{"ref": "acme/a", "weight": 0.5}], "into": "acme/out"}


@pytest.fixture
def http(server: ServerThread) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30, headers={"X-Adapters-User": "carol", **server.auth})


def problem(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    return str(resp.json()["code"])


def test_submit_read_list_and_cancel(http: httpx.Client) -> None:
    submitted = http.post("/v1/jobs", json={"type": "merge", "params": MERGE})
    assert submitted.status_code == 202
    # The submitter is the token's user; X-Adapters-User ("carol") is never trusted by a server.
    job = submitted.json()
    assert (job["status"], job["attempts"], job["created_by"], job["progress"]) == (
        "queued",
        0,
        "tester",
        0.0,
    )
    assert http.get(f"/v1/jobs/{job['id']}").json()["params"]["into"] == "acme/out"
    assert [j["id"] for j in http.get("/v1/jobs", params={"status": "queued"}).json()] == [job["id"]]
    cancelled = http.post(f"/v1/jobs/{job['id']}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["error"]["code"] == "job_cancelled"
    assert problem(http.post(f"/v1/jobs/{job['id']}/cancel"), 409) == "job_finished"
    assert http.get("/v1/jobs", params={"status": "queued"}).json() == []
    assert "/v1/jobs/{job_id}/cancel" in http.get("/openapi.json").json()["paths"]


def test_refusals(http: httpx.Client) -> None:
    assert problem(http.get("/v1/jobs/4242"), 404) == "not_found"
    assert problem(http.post("/v1/jobs/4242/cancel"), 404) == "not_found"
    assert problem(http.post("/v1/jobs", json={"type": "rm -rf", "params": {}}), 422) == "validation_error"
    bad = http.post("/v1/jobs", json={"type": "merge", "params": {**MERGE, "method": "average"}})
    assert problem(bad, 400) == "bad_request" and "method" in bad.json()["detail"]
    # A server's workers never read a path the caller names.
    local = {"ref": "acme/a", "base": "/etc", "base_path": "/etc"}
    assert problem(http.post("/v1/jobs", json={"type": "export", "params": local}), 400) == "bad_request"
    assert http.get("/v1/jobs").json() == []  # nothing was queued
