"""The README's compose recipe, run as far as a machine without Docker allows: PostgreSQL and an S3
endpoint (moto) stand in for the postgres and minio containers, and each command runs as a process
with the environment docker-compose.yml gives the container it runs in (the api service's for
`adapters serve` and for `docker compose exec -T api ...`; the host's for `adapters login` and
`adapters push`). Only the hosts (postgres:5432, minio:9000), the database's user (this machine's
PostgreSQL trusts `postgres`), the bucket (what create-bucket makes) and the volume's folder change.

Without a .env the api refuses the example passwords; with the trial file it starts; with the
README's .env the first admin is made inside the api container, its token is piped into
`adapters login` on the host, and `adapters push` works (no 401). The secret key the api made is
kept on its ADAPTERS_HOME volume and is the same after a restart."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from minio import Minio
from sqlalchemy.engine import make_url

from tests.access.test_matrix import tiny_adapter
from tests.conftest import free_port
from tests.deploy import compose
from tests.deploy.compose import ROOT
from tests.deploy.test_compose_files import DOT_ENV

pytestmark = pytest.mark.server

RECIPE = [
    "docker compose up -d",
    "docker compose exec -T api adapters user add admin --admin",
    "export ADAPTERS_URL=http://127.0.0.1:8000",
    "docker compose exec -T api adapters token create --user admin | adapters login",
    "adapters push ./my-adapter acme/legal",
]
"""The documented commands, in order, as they stand in the README."""
TRIAL = "docker compose -f docker-compose.yml -f docker-compose.trial.yml up -d"


def test_the_readme_documents_these_commands() -> None:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    text = "\n".join(p.read_text(encoding="utf-8") for p in docs if p.exists())
    for line in [*RECIPE, TRIAL, "printf 'POSTGRES_PASSWORD=%s\\nMINIO_ROOT_PASSWORD=%s\\n'"]:
        assert line in text, line


class Stand:
    """The containers' stand-ins and the environments compose gives each process."""

    def __init__(self, pg_url: str, s3_endpoint: str, bucket: str, tmp: Path) -> None:
        self.pg, self.s3, self.bucket, self.tmp = make_url(pg_url), s3_endpoint, bucket, tmp
        self.port = free_port()
        self.base = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTERS_")}

    def api_env(self, *files: str, dot_env: dict[str, str]) -> dict[str, str]:
        env = compose.environment(compose.project(*files, env=dot_env)["services"]["api"])
        url = make_url(env["ADAPTERS_DATABASE_URL"])
        assert (url.host, url.port, url.database) == ("postgres", 5432, "registry")
        env["ADAPTERS_DATABASE_URL"] = url.set(
            username=self.pg.username, host=self.pg.host, port=self.pg.port, database=self.pg.database
        ).render_as_string(hide_password=False)
        assert (
            env["ADAPTERS_S3_ENDPOINT"] == "minio:9000" and env["ADAPTERS_BLOB_URL"] == "s3://adapters/blobs"
        )
        env["ADAPTERS_S3_ENDPOINT"] = self.s3
        env["ADAPTERS_BLOB_URL"] = f"s3://{self.bucket}/blobs"
        env["ADAPTERS_HOME"] = str(self.tmp / "registry-home")  # the api's volume
        return {**self.base, **env}

    def host_env(self) -> dict[str, str]:
        return {
            **self.base,
            "ADAPTERS_URL": f"http://127.0.0.1:{self.port}",
            "ADAPTERS_HOME": str(self.tmp / "host-home"),
            "ADAPTERS_CONFIG_DIR": str(self.tmp / "host-config"),
        }

    def serve_command(self) -> list[str]:
        """The api service's command, on loopback and a free port instead of 0.0.0.0:8000."""
        command = compose.project("docker-compose.yml")["services"]["api"]["command"]
        assert command == ["adapters", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-worker"]
        return adapters("serve", "--host", "127.0.0.1", "--port", str(self.port), "--no-worker")

    @contextmanager
    def api(self, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
        """`docker compose up -d`, as far as the api goes: its command, until /readyz answers."""
        proc = subprocess.Popen(
            self.serve_command(), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, proc.communicate()
                try:
                    if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the api did not become ready"
                time.sleep(0.1)
            yield proc
        finally:
            proc.terminate()
            proc.wait(20)


def adapters(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def run(args: list[str], env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT, **kw)  # type: ignore[call-overload,no-any-return]


@pytest.fixture
def stand(pg_url: str, s3_endpoint: str, tmp_path: Path) -> Stand:
    bucket = f"adapters-{uuid.uuid4().hex[:12]}"  # what the create-bucket service makes
    Minio(s3_endpoint, access_key="test", secret_key="test", secure=False, region="us-east-1").make_bucket(
        bucket
    )
    return Stand(pg_url, s3_endpoint, bucket, tmp_path)


def test_the_compose_recipe_works_as_written(stand: Stand, tmp_path: Path) -> None:
    # No .env: the example passwords, refused before anything is touched.
    refused = run(stand.serve_command(), stand.api_env("docker-compose.yml", dot_env={}))
    assert refused.returncode == 1
    assert "example_credentials" in refused.stderr and "docker-compose.trial.yml" in refused.stderr

    # The trial file: it starts.
    trial = stand.api_env("docker-compose.yml", "docker-compose.trial.yml", dot_env={})
    assert trial["ADAPTERS_ALLOW_EXAMPLE_CREDENTIALS"] == "1"
    with stand.api(trial):
        pass

    # The README's .env; `docker compose up -d`.
    api_env = stand.api_env("docker-compose.yml", dot_env=DOT_ENV)
    host = stand.host_env()
    with stand.api(api_env) as server:
        # docker compose exec -T api adapters user add admin --admin
        made = run(adapters("user", "add", "admin", "--admin"), api_env)
        assert made.returncode == 0, made.stderr
        # docker compose exec -T api adapters token create --user admin | adapters login
        token = run(adapters("token", "create", "--user", "admin"), api_env)
        assert token.returncode == 0, token.stderr
        assert token.stdout.startswith("adreg_") and token.stdout.count("\n") == 1
        login = run(adapters("login"), host, input=token.stdout)
        assert login.returncode == 0, login.stderr
        assert "logged in" in login.stdout and "as admin" in login.stdout
        # adapters push ./my-adapter acme/legal
        folder = tiny_adapter(tmp_path / "my-adapter", 1)
        pushed = run(adapters("push", str(folder), "acme/legal"), host)
        assert pushed.returncode == 0, pushed.stderr
        listed = run(adapters("list", "--json"), host)
        assert listed.returncode == 0 and "acme/legal" in listed.stdout
        anonymous = httpx.post(f"http://127.0.0.1:{stand.port}/v1/blobs/missing", json={"digests": []})
        assert anonymous.status_code == 401  # a server always authenticates
    _, err = server.communicate()
    assert "no user exists" in err  # the api told the operator how, before the admin existed

    key = (tmp_path / "registry-home" / "secret_key").read_bytes()
    with stand.api(api_env):  # the container recreated, its volume kept
        assert (tmp_path / "registry-home" / "secret_key").read_bytes() == key
        again = run(adapters("pull", "acme/legal", "-o", str(tmp_path / "pulled")), host)
        assert again.returncode == 0, again.stderr
    assert (tmp_path / "pulled" / "adapter_model.safetensors").read_bytes() == (
        folder / "adapter_model.safetensors"
    ).read_bytes()
