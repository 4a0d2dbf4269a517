"""Fixtures: real SQLite and PostgreSQL databases, real file and S3 (moto server) blob stores,
a real uvicorn server on a loopback port, adapter folders written as files (tests/adapter_files.py)
and real PEFT adapters trained on tiny models for the numerical tests."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.access.principal import OPERATOR, Principal
from registry.client.local import LocalClient
from registry.config import Settings
from registry.services.context import Registry

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under xdist (make pytest: two workers on two cores) each worker and the processes it starts
    # (workers, `adapters serve`, the Hub clients) compute on one thread: two workers at two
    # threads each oversubscribe the cores. Set before torch is first imported (it reads it then).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

# ---------------------------------------------------------------- marks
# Markers by resource (pyproject.toml lists them), declared in three ways: a module's or a
# test's own mark (`pytestmark = pytest.mark.server` where a module starts servers itself); a
# parameter's marks (`resource_params` below, for database kinds, blob backends and CLI modes);
# and this table, for the fixtures that provide a resource: a test whose fixtures include one,
# directly or through another fixture, carries its marker. pg_url and s3_bucket refuse to run
# for a test without the marker, so a missing declaration fails instead of slowing the loop.
RESOURCES: dict[str, str] = {
    "adapters_dir": "models",
    "qlora_dir": "models",
    "zoo": "models",  # tests/tensors/test_merge.py
    "models": "models",  # tests/serving/conftest.py
    "pg_admin": "postgres",
    "s3_endpoint": "s3",
    "server": "server",
    "browser": "browser",  # tests/ui/conftest.py
    "cluster": "server",  # tests/cluster/conftest.py
    "site": "server",  # tests/ui/conftest.py
    "served": "server",  # a server (uvicorn, or `adapters serve` in test_crash_points) in five modules
    "s3_registry": "s3",  # tests/storage/test_pull_one_write.py
    "presigned_server": "s3",  # tests/hub/test_hub_read.py
}
RESOURCE_MARKERS = ("models", "server", "postgres", "s3", "browser")
"""`slow` is their union: `make test-fast` runs `-m "not slow"`."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Add the markers declared in RESOURCES for each test's fixtures, then `slow` to every test
    that carries a resource marker (declared anywhere)."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for fixture in names & RESOURCES.keys():
            item.add_marker(RESOURCES[fixture])
        if any(item.get_closest_marker(name) for name in RESOURCE_MARKERS):
            item.add_marker(pytest.mark.slow)


def resource_params(*values: str, server: bool = False) -> list[object]:
    """Parameters naming a database kind (`sqlite`, `postgresql`), a blob backend (`file`, `s3`)
    or both (`postgresql-s3`), each declared with what it uses: `postgres` for PostgreSQL, `s3`
    for S3, and `server` for all but `embedded` when `server` is true (the CLI's modes: every mode
    but `embedded` runs a uvicorn server)."""
    out: list[object] = []
    for value in values:
        parts = value.split("-")
        marks = [pytest.mark.postgres] if "postgresql" in parts else []
        marks += [pytest.mark.s3] if "s3" in parts else []
        marks += [pytest.mark.server] if server and value != "embedded" else []
        out.append(pytest.param(value, marks=marks))
    return out


def require_marker(request: pytest.FixtureRequest, marker: str, fixture: str) -> None:
    if request.node.get_closest_marker(marker) is None:
        pytest.fail(
            f"{request.node.nodeid} uses {fixture} without the `{marker}` marker: declare it "
            f"(tests/conftest.py: resource_params, RESOURCES, or pytestmark = pytest.mark.{marker})"
        )


PG_ADMIN_URL = os.environ.get("ADAPTERS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- databases
@pytest.fixture(scope="session")
def pg_admin() -> Iterator[object]:
    from sqlalchemy import create_engine

    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect():
            pass
    except Exception as err:  # the suite requires PostgreSQL; .ci/run starts it
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {err}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def pg_template(pg_admin: object) -> Iterator[str]:
    """A database migrated to head once per session, the template of every test's database:
    running the migrations took about 1 s per test, copying a template takes a tenth of that."""
    from sqlalchemy import text

    from registry.db.engine import make_engine, upgrade

    name = f"adapters_tmpl_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:  # type: ignore[attr-defined]
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name)
    upgrade(engine)
    engine.dispose()  # a template must have no open connection when it is copied
    yield name
    with pg_admin.connect() as conn:  # type: ignore[attr-defined]
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class DatabasePool:
    """Fresh copies of the template, made ahead by a background thread, and used databases dropped
    by others: PostgreSQL copies and drops (0.1-0.3 s each under load, the server's work) while
    the tests run, instead of in every test's setup and teardown. Each test still gets a database
    nobody has used, copied from the template at head, and every database is dropped by the end
    of the session."""

    AHEAD = 2
    DROPPERS = 3

    def __init__(self, admin: object, template: str) -> None:
        import queue

        self.admin = admin
        self.template = template
        self.ready: queue.Queue[str | BaseException] = queue.Queue(maxsize=self.AHEAD)
        self.used: queue.Queue[str | None] = queue.Queue()
        self.stop = threading.Event()
        self.failures: list[str] = []
        # Several droppers: PostgreSQL 15 checkpoints in every DROP DATABASE, and drops waiting
        # at the same time share one checkpoint.
        self.threads = [threading.Thread(target=self._make, daemon=True)] + [
            threading.Thread(target=self._drop, daemon=True) for _ in range(self.DROPPERS)
        ]
        for t in self.threads:
            t.start()

    def _execute(self, sql: str) -> None:
        from sqlalchemy import text

        with self.admin.connect() as conn:  # type: ignore[attr-defined]
            conn.execute(text(sql))

    def _make(self) -> None:
        while not self.stop.is_set():
            name = f"adapters_test_{uuid.uuid4().hex[:12]}"
            try:
                self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
            except Exception as err:  # fails the test that takes it, as a copy in its setup did
                self._offer(err)
                continue
            if not self._offer(name):
                self.used.put(name)

    def _offer(self, item: str | BaseException) -> bool:
        """Put `item` in `ready` once there is room; False if the pool closes first."""
        import queue

        while not self.stop.is_set():
            try:
                self.ready.put(item, timeout=0.2)
                return True
            except queue.Full:
                pass
        return False

    def _drop(self) -> None:
        while (name := self.used.get()) is not None:
            try:
                self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as err:  # reported when the pool closes
                self.failures.append(f"{name}: {err}")

    def take(self) -> str:
        got = self.ready.get(timeout=120)
        if isinstance(got, BaseException):  # the copy failed in the background thread
            raise got
        return got

    def give_back(self, name: str) -> None:
        self.used.put(name)

    def close(self) -> None:
        import queue

        self.stop.set()
        self.threads[0].join(30)
        while True:
            try:
                left = self.ready.get_nowait()
            except queue.Empty:
                break
            if isinstance(left, str):
                self.used.put(left)
        for _ in range(self.DROPPERS):
            self.used.put(None)
        for t in self.threads[1:]:
            t.join(120)
        assert not self.failures, f"test databases left behind: {self.failures}"


@pytest.fixture(scope="session")
def pg_pool(pg_admin: object, pg_template: str) -> Iterator[DatabasePool]:
    pool = DatabasePool(pg_admin, pg_template)
    yield pool
    pool.close()


@pytest.fixture
def pg_url(pg_pool: DatabasePool, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database for one test (the schema at head, no rows), dropped afterwards."""
    require_marker(request, "postgres", "pg_url")
    name = pg_pool.take()
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    pg_pool.give_back(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated to head once per session, copied for every test that asks for a
    SQLite registry (as pg_template is for PostgreSQL): migrating took about 0.1 s a test."""
    from registry.db.engine import make_engine, upgrade

    path = tmp_path_factory.mktemp("sqlite-template") / "registry.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # the last connection closed: the WAL is checkpointed into the file and removed
    assert not path.with_name("registry.db-wal").exists()
    return path


def db_url_for(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        import shutil

        path = tmp_path / "registry.db"
        if not path.exists():  # asked twice in one test: the same database, as before
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(params=resource_params("sqlite", "postgresql"))
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return db_url_for(str(request.param), tmp_path, request)


# ---------------------------------------------------------------- blob stores
@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 HTTP endpoint on loopback (moto server, in its own process so that its memory
    and threads stay out of our measurements); the minio SDK talks to it as to MinIO."""
    import subprocess
    import sys

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def s3_bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> str:
    from minio import Minio

    require_marker(request, "s3", "s3_bucket")
    bucket = f"blobs-{uuid.uuid4().hex[:12]}"
    Minio(s3_endpoint, access_key="test", secret_key="test", secure=False, region="us-east-1").make_bucket(
        bucket
    )
    return bucket


@pytest.fixture(params=resource_params("file", "s3"))
def blob_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_settings(tmp_path: Path, db: str, backend: str, request: pytest.FixtureRequest) -> Settings:
    env: dict[str, object] = {"home": tmp_path / "home", "database_url": db, "user": "tester"}
    # Every request of the suite comes from one source, 127.0.0.1, and the authorization tests
    # present expired and revoked tokens on purpose: the throttle has tests of its own
    # (tests/api/test_security_events.py), which set their limits.
    env["auth_failure_limit"] = 100_000
    if backend == "s3":
        env.update(
            blob_url=f"s3://{request.getfixturevalue('s3_bucket')}/adapters",
            s3_endpoint=request.getfixturevalue("s3_endpoint"),
            s3_access_key="test",
            s3_secret_key="test",
            s3_region="us-east-1",
            s3_secure=False,
        )
    return Settings(**env)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, db_url: str, blob_backend: str, request: pytest.FixtureRequest) -> Settings:
    """Every storage-facing test runs on {SQLite, PostgreSQL} x {file, S3}."""
    return make_settings(tmp_path, db_url, blob_backend, request)


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    reg = Registry.from_settings(settings, migrate=True)
    yield reg
    reg.close()


@pytest.fixture
def client(registry: Registry, tmp_path: Path) -> LocalClient:
    """The embedded client on `registry` as the operator's user `tester` (its cache is the store
    itself when that is a local folder). Directories with another kind of client override it."""
    from storage.local import LocalBlobStore

    cache = (
        registry.store if isinstance(registry.store, LocalBlobStore) else LocalBlobStore(tmp_path / "cache")
    )
    return LocalClient(registry, "tester", cache, principal=Principal.operator("tester"))


# ---------------------------------------------------------------- a real server
def quick_uvicorn() -> None:
    """uvicorn looks at its exit flag every 0.1 s, and when stopping it first waits a fixed 0.1 s
    before it waits (polling every 0.1 s) for open connections and running tasks to finish: about
    0.15 s of every test server's teardown, idle. Test servers poll every 10 ms instead; what a stop
    waits for is unchanged (uvicorn's sleeps are all polls or that fixed pause)."""
    import asyncio
    import types

    import uvicorn.server

    if getattr(uvicorn.server.asyncio, "polls_quickly", False):
        return
    quick = types.ModuleType("asyncio")
    quick.__dict__.update(vars(asyncio))

    async def sleep(delay: float, result: object = None) -> object:
        return await asyncio.sleep(min(delay, 0.01), result)

    quick.sleep = sleep  # type: ignore[attr-defined]
    quick.polls_quickly = True  # type: ignore[attr-defined]
    uvicorn.server.asyncio = quick  # type: ignore[attr-defined]


class ServerThread:
    """uvicorn serving `app` in a thread. A server always authenticates: on entry an admin user
    (`admin`) and a token for it are made through the services, as the operator would; tests send
    `token` (`auth` is its header). uvicorn runs with the proxy settings `adapters serve` gives it;
    `options` override any of uvicorn's (as another way of serving the app would)."""

    def __init__(self, app: object, admin: str = "tester", **options: object) -> None:
        import uvicorn

        from registry.access.addresses import uvicorn_options

        quick_uvicorn()
        self.app = app
        self.admin = admin
        self.token = ""
        self.auth: dict[str, str] = {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {**uvicorn_options(app.state.settings), **options}  # type: ignore[attr-defined]
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", **config)  # type: ignore[arg-type]
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        from registry.services import accounts

        reg = self.app.state.registry  # type: ignore[attr-defined]
        if self.admin not in {u.name for u in accounts.list_users(reg, principal=OPERATOR)}:
            accounts.add_user(reg, self.admin, admin=True, principal=OPERATOR)
        self.token, _ = accounts.create_token(reg, self.admin, name="tests", principal=OPERATOR)
        self.auth = {"Authorization": f"Bearer {self.token}"}
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def server(settings: Settings, registry: Registry) -> Iterator[ServerThread]:
    from registry.api import create_app

    with ServerThread(create_app(settings, registry)) as srv:
        yield srv


@pytest.fixture
def http(server: ServerThread) -> Iterator[httpx.Client]:
    """An httpx client on `server` with the admin's token (modules needing other headers override it)."""
    with httpx.Client(base_url=server.url, timeout=30, headers=server.auth) as c:
        yield c


# ---------------------------------------------------------------- adapters
@pytest.fixture(scope="session")
def adapter_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folders of `adapters_dir` (base, lora_a, lora_b, lora_dora: the same names, shapes and
    configs) written as files without torch, for tests of the registry's own logic."""
    from tests.adapter_files import adapter_set

    return adapter_set(tmp_path_factory.mktemp("adapter-files"))


@pytest.fixture(scope="session")
def adapters_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama and real LoRA adapters trained on it for a few steps (built once per session)."""
    from tests.adapters_factory import save_base, tiny_llama, train_lora

    root = tmp_path_factory.mktemp("adapters")
    save_base(tiny_llama(), root / "base")
    train_lora(tiny_llama(), root / "lora_a", seed=1)
    train_lora(
        tiny_llama(),
        root / "lora_b",
        seed=2,
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
    )
    train_lora(
        tiny_llama(), root / "lora_dora", seed=3, use_dora=True, use_rslora=True, rank_pattern={"v_proj": 2}
    )
    return root


@pytest.fixture
def lora_a(adapter_files: Path, tmp_path: Path) -> Path:
    """A private copy of adapter A (written as files) that a test may modify."""
    import shutil

    return Path(shutil.copytree(adapter_files / "lora_a", tmp_path / "lora_a"))


@pytest.fixture(scope="session")
def qlora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Llama base wide enough for bitsandbytes' 4-bit CPU kernels (blocks of 64), in several
    shards, with a LoRA adapter trained on it and a prefix-tuning adapter."""
    from peft import PrefixTuningConfig

    from tests.adapters_factory import save_peft, sized_llama, train_lora

    root = tmp_path_factory.mktemp("qlora")
    sized_llama(hidden=64).save_pretrained(root / "base", max_shard_size="60KB")
    train_lora(
        sized_llama(hidden=64),
        root / "lora",
        seed=1,
        steps=10,
        target_modules=["q_proj", "v_proj", "down_proj"],
    )
    save_peft(
        sized_llama(hidden=64),
        PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
        root / "prefix",
    )
    return root
