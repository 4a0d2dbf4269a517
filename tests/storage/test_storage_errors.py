"""A blob store failure reaches the client as `storage_error`, never as a 500."""

from __future__ import annotations

import io

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from minio.error import S3Error

import storage
from registry.api.problems import install
from registry.errors import ERRORS_BY_CODE, StorageFailed, error_from_problem, from_storage_error
from registry.services.blobs import upload_blob


def s3_error(code: str = "AccessDenied") -> S3Error:
    return S3Error(None, code, "denied", "/bucket/key", "req-1", "host-1")  # type: ignore[arg-type]


class FailingStore:
    def stat(self, digest: str) -> None:
        raise s3_error()


def test_an_s3_error_in_a_service_is_a_storage_error() -> None:
    with pytest.raises(StorageFailed) as err:
        upload_blob(FailingStore(), io.BytesIO(b"x"), "sha256:" + "0" * 64, 1)  # type: ignore[arg-type]
    assert err.value.code == "storage_error" and err.value.store_code == "AccessDenied"
    assert "req-1" not in err.value.message  # the store's details stay in the server log


def test_an_s3_error_in_a_route_is_a_storage_error_problem() -> None:
    app = FastAPI()
    install(app)

    @app.get("/boom")
    def boom() -> None:
        raise s3_error("NoSuchBucket")

    resp = TestClient(app).get("/boom")
    assert resp.status_code == 503 and resp.json()["code"] == "storage_error"
    assert isinstance(error_from_problem(resp.json(), 503), StorageFailed)


def test_storage_errors_keep_their_codes() -> None:
    assert from_storage_error(storage.BlobNotFound("sha256:" + "0" * 64)).code == "not_found"
    assert from_storage_error(storage.UnsupportedScheme("x")).code == "storage_error"
    assert ERRORS_BY_CODE["range_not_satisfiable"].status == 416
