"""Backup and restore as the README documents it, on PostgreSQL and S3 (moto standing in for MinIO):
the database dumped first (`pg_dump --format=custom`), then the blob store copied (`mc mirror`: here
every object of the bucket, key for key, into a folder and from it into a fresh bucket), restored
with `pg_restore --no-owner` into a fresh database. The restored server serves every version byte
for byte, keeps users and tokens, `adapters gc --dry-run --grace 0` finds nothing to reclaim and
`adapters fsck` reports clean; a blob then deleted from the store is reported with its version."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from minio import Minio
from sqlalchemy import text
from sqlalchemy.engine import make_url

from cli.main import cli
from registry.api import create_app
from registry.client.http import HttpClient
from registry.client.transfer import pull, push_folder
from registry.config import Settings
from registry.services.context import Registry
from tests.access.test_matrix import tiny_adapter
from tests.conftest import ServerThread, make_settings

pytestmark = pytest.mark.server

VERSIONS = {"acme/legal": [1, 2, 3], "acme/medical": [4], "lab/code": [5, 6]}
"""Repositories and the seeds of their versions, pushed in this order."""


def libpq(url: str) -> str:
    """The SQLAlchemy URL as pg_dump and pg_restore take it (no +driver)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def mirror_out(s3: Minio, bucket: str, folder: Path) -> int:
    """`mc mirror local/BUCKET FOLDER`: every object, its key as its path."""
    n = 0
    for obj in s3.list_objects(bucket, recursive=True):
        assert obj.object_name is not None
        s3.fget_object(bucket, obj.object_name, str(folder / obj.object_name))
        n += 1
    return n


def mirror_in(s3: Minio, folder: Path, bucket: str) -> None:
    """`mc mirror FOLDER local/BUCKET`."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        s3.fput_object(bucket, path.relative_to(folder).as_posix(), str(path))


def cli_json(server: ServerThread, home: Path, *args: str) -> tuple[int, dict[str, object]]:
    env = {"ADAPTERS_URL": server.url, "ADAPTERS_TOKEN": server.token, "ADAPTERS_HOME": str(home)}
    result = CliRunner().invoke(cli, [*args, "--json"], env=env, catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.s3
def test_backup_then_restore_onto_a_fresh_server(
    pg_admin: object,
    pg_url: str,
    s3_endpoint: str,
    s3_bucket: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    s3 = Minio(s3_endpoint, access_key="test", secret_key="test", secure=False, region="us-east-1")
    source = make_settings(tmp_path / "source", pg_url, "s3", request)
    folders: dict[str, Path] = {}
    reg = Registry.from_settings(source, migrate=True)
    try:
        with ServerThread(create_app(source, reg), admin="root") as srv:
            client = HttpClient(srv.url, "root", tmp_path / "cache-src", token=srv.token)
            for repo, seeds in VERSIONS.items():
                for number, seed in enumerate(seeds, 1):
                    folder = folders[f"{repo}:{number}"] = tiny_adapter(tmp_path / f"a{seed}", seed)
                    (folder / "README.md").write_text(f"# adapter {seed}\n" * seed)
                    push_folder(client, folder, repo, aliases=["prod"] if seed == seeds[-1] else [])
            old_token = srv.token
            client.close()
            # 1. the database first ...
            dump = tmp_path / "registry.dump"
            subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", libpq(pg_url)], check=True)
            # 2. ... then the blob store: every blob the dump lists is in the copy
            backup = tmp_path / "backup" / "blobs"
            assert mirror_out(s3, s3_bucket, backup) >= 2 * len(folders)
    finally:
        reg.close()

    # 3. a fresh database and bucket, restored
    restored_db = f"adapters_restore_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:  # type: ignore[attr-defined]
        conn.execute(text(f'CREATE DATABASE "{restored_db}"'))
    try:
        restored_url = make_url(pg_url).set(database=restored_db).render_as_string(hide_password=False)
        subprocess.run(["pg_restore", "--no-owner", f"--dbname={libpq(restored_url)}", str(dump)], check=True)
        fresh_bucket = f"restore-{uuid.uuid4().hex[:12]}"
        s3.make_bucket(fresh_bucket)
        mirror_in(s3, backup, fresh_bucket)
        target = Settings(
            **{
                **source.model_dump(),
                "home": tmp_path / "target",
                "database_url": restored_url,
                "blob_url": source.effective_blob_url.replace(s3_bucket, fresh_bucket),
            }
        )
        assert target.effective_blob_url == f"s3://{fresh_bucket}/adapters"
        reg = Registry.from_settings(target, migrate=True)  # `adapters serve` migrates: nothing to do
        try:
            with ServerThread(create_app(target, reg), admin="root") as srv:
                client = HttpClient(srv.url, "root", tmp_path / "cache-dst", token=old_token)
                assert client.whoami().name == "root"  # users and tokens came back with the dump
                for ref, folder in folders.items():
                    info, out = pull(client, ref, tmp_path / "pulled" / ref.replace("/", "_"))
                    assert sorted(f.path for f in info.files) == sorted(p.name for p in folder.iterdir())
                    for f in folder.iterdir():
                        assert (out / f.name).read_bytes() == f.read_bytes(), (ref, f.name)
                assert client.resolve("acme/legal@prod").version == 3
                client.close()

                code, gc = cli_json(srv, tmp_path / "h", "gc", "--dry-run", "--grace", "0s")
                assert code == 0 and gc["blobs_reclaimed"] == 0 and gc["blobs_scanned"] == gc["blobs_kept"]
                code, report = cli_json(srv, tmp_path / "h", "fsck", "--verify")
                assert code == 0 and report["clean"] is True and report["verified"] is True
                assert report["versions_checked"] == len(folders)

                # the two disagree: fsck says which version lost which blob
                lost = hashlib.sha256((folders["lab/code:2"] / "adapter_model.safetensors").read_bytes())
                s3.remove_object(fresh_bucket, f"adapters/sha256/{lost.hexdigest()[:2]}/{lost.hexdigest()}")
                code, report = cli_json(srv, tmp_path / "h", "fsck")
                assert code == 1 and report["clean"] is False
                assert report["versions_affected"] == ["lab/code:2"]
                assert report["problems"][0]["versions"] == ["lab/code:2 adapter_model.safetensors"]
        finally:
            reg.close()
    finally:
        with pg_admin.connect() as conn:  # type: ignore[attr-defined]
            conn.execute(text(f'DROP DATABASE IF EXISTS "{restored_db}" WITH (FORCE)'))
