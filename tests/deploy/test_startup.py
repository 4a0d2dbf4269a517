"""The server's secret key, settled once at start-up (registry/startup.py): from the environment,
from a file (a Docker secret), or made once in ADAPTERS_HOME and the same after a restart and for
every replica that shares the folder; refused when ambiguous, unreadable or short."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from registry.api import create_app
from registry.config import Settings
from registry.errors import BadConfiguration, ExampleCredentials
from registry.services.context import Registry
from registry.startup import example_credentials, load_secret_key, refuse_example_credentials

KEY = "k" * 40


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'r.db'}", **kw)  # type: ignore[arg-type]


def test_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTERS_SECRET_KEY", KEY)
    assert load_secret_key(_settings(tmp_path)) == KEY.encode()
    assert not (tmp_path / "home" / "secret_key").exists()
    assert KEY not in repr(_settings(tmp_path))  # a SecretStr: never in a log line


def test_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "run" / "secrets" / "adapters_secret_key"
    secret.parent.mkdir(parents=True)
    secret.write_text(KEY + "\n")  # as `openssl rand -hex 32 > file` leaves it
    monkeypatch.setenv("ADAPTERS_SECRET_KEY_FILE", str(secret))
    assert load_secret_key(_settings(tmp_path)) == KEY.encode()
    assert not (tmp_path / "home" / "secret_key").exists()


def test_made_once_and_kept(tmp_path: Path) -> None:
    first = load_secret_key(_settings(tmp_path))
    kept = tmp_path / "home" / "secret_key"
    assert kept.read_bytes() == first and len(first) >= 32
    assert kept.stat().st_mode & 0o777 == 0o600
    assert load_secret_key(_settings(tmp_path)) == first  # a restart: the same key
    assert list(kept.parent.iterdir()) == [kept]  # no temporary file left


def _load(home: str) -> bytes:
    return load_secret_key(Settings(home=Path(home)))


@pytest.mark.server  # four spawned processes, as replicas
def test_replicas_sharing_the_folder_agree(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        keys = pool.map(_load, [str(tmp_path / "shared")] * 8)
    assert len(set(keys)) == 1


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        (
            {"ADAPTERS_SECRET_KEY": KEY, "ADAPTERS_SECRET_KEY_FILE": "/etc/hostname"},
            "ADAPTERS_SECRET_KEY_FILE",
        ),
        ({"ADAPTERS_SECRET_KEY_FILE": "/nonexistent/secret"}, "ADAPTERS_SECRET_KEY_FILE"),
        ({"ADAPTERS_SECRET_KEY": "short"}, "ADAPTERS_SECRET_KEY"),
    ],
)
def test_refused_at_start_up(
    env: dict[str, str], setting: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = _settings(tmp_path)
    with pytest.raises(BadConfiguration) as err:
        create_app(settings, Registry.from_settings(settings, migrate=True))
    assert err.value.setting == setting and err.value.code == "bad_configuration"
    assert KEY not in str(err.value)


def test_the_app_holds_the_key_it_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path)
    reg = Registry.from_settings(settings, migrate=True)
    try:
        first = create_app(settings, reg).state.secret_key
        assert create_app(settings, reg).state.secret_key == first  # a restarted server
        monkeypatch.setenv("ADAPTERS_SECRET_KEY", KEY)
        assert create_app(Settings(home=tmp_path / "home"), reg).state.secret_key == KEY.encode()
    finally:
        reg.close()


def test_example_credentials(tmp_path: Path) -> None:
    pg = "postgresql+psycopg://registry:registry@postgres:5432/registry"
    s3 = {"s3_endpoint": "minio:9000", "s3_access_key": "registry", "s3_secret_key": "registry-secret"}
    assert example_credentials(_settings(tmp_path)) == []  # embedded SQLite: nothing to refuse
    bad = Settings(home=tmp_path, database_url=pg, **s3)  # type: ignore[arg-type]
    assert example_credentials(bad) == ["ADAPTERS_DATABASE_URL", "ADAPTERS_S3_SECRET_KEY"]
    with pytest.raises(ExampleCredentials):
        refuse_example_credentials(bad)
    with pytest.raises(ExampleCredentials):
        create_app(bad)  # before anything connects to postgres:5432
    trial = Settings(home=tmp_path, database_url=pg, allow_example_credentials=True, **s3)  # type: ignore[arg-type]
    refuse_example_credentials(trial)
    good = Settings(home=tmp_path, database_url=pg.replace(":registry@", ":9f0a1b2c3d@"))
    assert example_credentials(good) == []
