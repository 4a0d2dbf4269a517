"""What a server or worker settles once at start-up, before it serves: its secret key and the
refusal of the example credentials the compose files ship.

The secret key signs the Hub's one-time LFS upload URLs, Xet CAS tokens and the UI's CSRF tokens:
every replica behind one address must hold the same key, and it must outlive a restart, or a URL
one replica signed is refused by the next. It comes from one of, in this order:
`ADAPTERS_SECRET_KEY`; `ADAPTERS_SECRET_KEY_FILE` (a Docker secret, /run/secrets/NAME); a random
key made once in `$ADAPTERS_HOME/secret_key` (0600), which the compose file keeps on a volume.
`create_app` reads it here once and keeps it on `app.state.secret_key`; nothing reads it later.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from registry.config import Settings
from registry.errors import BadConfiguration, ExampleCredentials
from storage.atomic import write_atomic

MIN_SECRET_BYTES = 16
"""A secret key shorter than this is refused: HMAC keys guessable by brute force sign nothing."""

EXAMPLE_SECRETS = frozenset({"registry", "registry-secret", "minioadmin", "changeme", "change-me"})
"""Passwords that are published: the compose files' example defaults (POSTGRES_PASSWORD,
MINIO_ROOT_PASSWORD) and MinIO's own. A server given one refuses to start unless
ADAPTERS_ALLOW_EXAMPLE_CREDENTIALS=1 says this is a local trial (docker-compose.trial.yml)."""


def load_secret_key(settings: Settings) -> bytes:
    """The server's secret key (see the module for where it comes from).

    Raises:
        BadConfiguration: both sources are set, the file cannot be read, or the key is too short.
    """
    given = settings.secret_key.get_secret_value() if settings.secret_key is not None else ""
    if given and settings.secret_key_file is not None:
        raise BadConfiguration(
            "ADAPTERS_SECRET_KEY and ADAPTERS_SECRET_KEY_FILE are both set: keep one",
            setting="ADAPTERS_SECRET_KEY_FILE",
        )
    if given:
        return _checked(given.encode(), "ADAPTERS_SECRET_KEY")
    if settings.secret_key_file is not None:
        try:
            key = settings.secret_key_file.read_bytes().strip()
        except OSError as err:
            raise BadConfiguration(
                f"ADAPTERS_SECRET_KEY_FILE {settings.secret_key_file}: {err.strerror or err}",
                setting="ADAPTERS_SECRET_KEY_FILE",
            ) from err
        return _checked(key, "ADAPTERS_SECRET_KEY_FILE")
    return _kept_key(settings.home / "secret_key")


def _checked(key: bytes, setting: str) -> bytes:
    if len(key) < MIN_SECRET_BYTES:
        raise BadConfiguration(
            f"{setting}: the secret key has {len(key)} bytes, fewer than {MIN_SECRET_BYTES}; "
            "make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`",
            setting=setting,
        )
    return key


def _kept_key(path: Path) -> bytes:
    """The key kept at `path`, made there (0600, written whole before anyone reads it) if absent."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32).encode()
    try:
        write_atomic(path, key, mode=0o600, exclusive=True)
    except FileExistsError:  # another replica made it first: theirs wins
        return path.read_bytes().strip()
    return key


def example_credentials(settings: Settings) -> list[str]:
    """The settings that hold a published example password (EXAMPLE_SECRETS), by variable name."""
    found = []
    try:
        password = make_url(settings.effective_database_url).password
    except ArgumentError:
        password = None  # not a URL at all: the engine says so when it connects
    if password in EXAMPLE_SECRETS:
        found.append("ADAPTERS_DATABASE_URL")
    if settings.s3_endpoint and settings.s3_secret_key in EXAMPLE_SECRETS:
        found.append("ADAPTERS_S3_SECRET_KEY")
    if settings.secret_key is not None and settings.secret_key.get_secret_value() in EXAMPLE_SECRETS:
        found.append("ADAPTERS_SECRET_KEY")
    return found


def refuse_example_credentials(settings: Settings) -> None:
    """Refuse to start with a published password, unless ADAPTERS_ALLOW_EXAMPLE_CREDENTIALS is set.

    Raises:
        ExampleCredentials: naming the settings that hold one.
    """
    found = example_credentials(settings)
    if found and not settings.allow_example_credentials:
        raise ExampleCredentials(
            f"{', '.join(found)} use the example passwords the compose files ship: set "
            "POSTGRES_PASSWORD and MINIO_ROOT_PASSWORD in .env before the first `docker compose up` "
            "(README: Running a server), or, for a local trial only, add -f docker-compose.trial.yml "
            "(ADAPTERS_ALLOW_EXAMPLE_CREDENTIALS=1)",
            settings=found,
        )
