"""Settings from the environment (ADAPTERS_*), built once by the CLI entry or the app factory."""

from __future__ import annotations

import getpass
import ipaddress
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from registry.bounds import MAX_HEADER_BYTES
from storage import S3Options


def _default_home() -> Path:
    """`$XDG_DATA_HOME/adapter-registry` (`~/.local/share/adapter-registry`)"""
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "adapter-registry"


def _default_config_dir() -> Path:
    """`$XDG_CONFIG_HOME/adapter-registry` (`~/.config/adapter-registry`)"""
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "adapter-registry"


def _default_user() -> str:
    """the login name (`anonymous` when there is none)"""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "anonymous"


ENV_PREFIX = "adapters_"
ProxyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def proxy_networks(text: str) -> tuple[ProxyNetwork, ...]:
    """ADAPTERS_TRUSTED_PROXIES parsed: comma-separated addresses or CIDR networks (host bits may
    be set). Raises ValueError naming the entry that is neither."""
    nets = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        try:
            nets.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as err:
            raise ValueError(f"trusted proxy {entry!r} is not an IP address or CIDR network") from err
    return tuple(nets)


class Settings(BaseModel):
    """Values given in code, else ADAPTERS_<FIELD> (any case), else the defaults; validated."""

    model_config = ConfigDict(extra="ignore", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _environment(cls, data: Any) -> Any:
        """What pydantic-settings' BaseSettings (env_prefix ADAPTERS_, case-insensitive) did,
        without importing it: it cost 0.09 s of every command's start-up, a quarter of `adapters
        list` (bench/cli_startup.py). Every field is a plain value (no JSON-decoded env)."""
        if not isinstance(data, dict):
            return data
        env = {
            key.lower().removeprefix(ENV_PREFIX): value
            for key, value in os.environ.items()
            if key.lower().startswith(ENV_PREFIX)
        }
        return {**{k: v for k, v in env.items() if k in cls.model_fields}, **data}

    home: Path = Field(default_factory=_default_home)
    """Data directory of the embedded default (SQLite database, blobs, cache)."""
    database_url: str | None = None
    """SQLAlchemy URL; default sqlite:///$ADAPTERS_HOME/registry.db."""
    blob_url: str | None = None
    """file:///dir or s3://bucket[/prefix]; default file://$ADAPTERS_HOME/blobs."""
    s3_endpoint: str | None = None
    """`host:port` of MinIO / S3 (an `s3://` blob URL needs it)."""
    s3_access_key: str | None = None
    """S3 access key."""
    s3_secret_key: str | None = None
    """S3 secret key (a server or worker refuses the compose files' example one, see
    `allow_example_credentials`)."""
    s3_region: str | None = None
    """S3 region (`us-east-1` for MinIO)."""
    s3_secure: bool = True
    """TLS to the S3 endpoint."""
    s3_part_bytes: int = Field(default=32 * 1024**2, ge=5 * 1024**2, le=5 * 1024**3)
    """Multipart part size of S3 uploads (storage/s3.py says why 32 MiB), given to one upload per
    process at a time; uploads running meanwhile (a server's `upload_concurrency`) use S3's minimum,
    5 MiB, so a server's part buffers stay near 2 x (this + 5 MiB x (concurrency - 1)), see
    storage.s3.SMALL_PART_SIZE."""
    s3_presign_downloads: bool = False
    """Answer blob downloads with a redirect to a presigned S3 URL instead of proxying bytes."""
    url: str | None = None
    """When set (http://host:port), the CLI talks to that server instead of the embedded registry."""
    cache_dir: Path | None = None
    """Client-side content-addressed cache for pulls; default $ADAPTERS_HOME/cache."""
    token: SecretStr | None = None
    """ADAPTERS_TOKEN: the API token HttpClient sends (`Authorization: Bearer`); never printed.
    Unset: the one `adapters login` kept in `token_file`."""
    config_dir: Path = Field(default_factory=_default_config_dir)
    """Client configuration ($XDG_CONFIG_HOME/adapter-registry): `adapters login` keeps the token here."""
    user: str = Field(default_factory=_default_user)
    """Recorded as who pushed (sent as X-Adapters-User to a server)."""
    max_push_bytes: int = 20 * 1024**3
    """Total size cap of one version (413 push_too_large); a blob upload whose Content-Length is
    over it is refused before its body is read."""
    max_header_bytes: int = MAX_HEADER_BYTES
    """Cap on a safetensors header (the same cap the safetensors library applies)."""
    max_json_bytes: int = 16 * 1024**2
    """Cap on adapter_config.json (and any other JSON file of a push)."""
    max_request_bytes: int = Field(default=64 * 1024**2, ge=1024)
    """Cap on any request body but a blob upload (JSON bodies: a commit, a base's module table)."""
    upload_concurrency: int = Field(default=16, ge=1, le=1024)
    """Blob uploads the server reads at once. They have their own threads, so uploads that trickle
    in never hold the threads every other route shares; more wait their turn."""
    upload_idle_timeout_s: float = Field(default=60.0, gt=0)
    """An upload whose body makes no progress for this long is refused (408) and discarded."""
    upload_min_bytes_per_s: int = Field(default=64 * 1024, ge=1)
    """A body must end within the idle timeout plus its size at this rate, or it is refused (408):
    a body that trickles never holds its slot for ever (registry/api/uploads.py)."""
    upload_slots_per_user: int = Field(default=4, ge=1, le=1024)
    """Of `upload_concurrency`, the most one user's uploads hold at once; more queue behind them."""
    upload_queue_timeout_s: float = Field(default=30.0, gt=0)
    """An upload that finds no slot free for this long is answered 503 uploads_busy (Retry-After)."""
    stale_upload_s: float = Field(default=3600.0, ge=0)
    """At start-up the server removes partial uploads untouched for this long (killed mid-way)."""
    job_lease_s: float = 30.0
    """How long a worker's claim on a job lasts without a heartbeat (it beats every lease/4, at most
    every 2 s); a job whose worker died is retried this long after its last beat."""
    worker_poll_s: float = 0.5
    """How often an idle worker looks for a job."""
    work_dir: Path | None = None
    """Scratch space of workers (downloaded bases, export shards); default $ADAPTERS_HOME/work."""
    worker_signing_key: SecretStr | None = None
    """PEM private key (P-256/384/521) with which workers sign the provenance of what they make
    (merges, exports; issue 27). Unset, and no `worker_signing_key_file`: a key is made once and
    kept in $ADAPTERS_HOME/worker-signing-key.pem; `adapters worker key` prints its public key."""
    worker_signing_key_file: Path | None = None
    """A file holding the workers' signing key (a Docker secret); not with `worker_signing_key`."""

    # ---- Hugging Face Hub write path (registry/api/hub/write.py)
    secret_key: SecretStr | None = None
    """Signs the Hub's one-time LFS upload URLs, Xet CAS tokens and the UI's CSRF tokens
    (registry/startup.py reads it once per server). Unset, and no `secret_key_file`: a random key
    is made once and kept in $ADAPTERS_HOME/secret_key (replicas must share it: set one of these)."""
    secret_key_file: Path | None = None
    """A file holding the secret key (a Docker secret: /run/secrets/NAME); not with `secret_key`."""
    allow_example_credentials: bool = False
    """A local trial (docker-compose.trial.yml): start even with the compose files' example
    passwords. Otherwise a server or worker that is given one refuses to start."""
    hub_upload_url_ttl_s: int = Field(default=3600, ge=1)
    """How long an LFS upload URL stays valid."""
    hub_multipart_chunk_bytes: int = Field(default=64 * 1024**2, ge=1024)
    """LFS uploads larger than this go in parts of this size (the `multipart` transfer)."""

    # ---- who is calling (registry/access/addresses.py), guessers (registry/services/security.py)
    trusted_proxies: str = ""
    """Comma-separated addresses or CIDR networks of the reverse proxies in front of the server:
    X-Forwarded-For and X-Forwarded-Proto are believed only from these peers; the caller is the last
    forwarded hop that is not a listed proxy. Empty: from none, loopback included (uvicorn's own
    default; `adapters serve` and `adapters ui` run uvicorn with this list)."""
    auth_failure_limit: int = Field(default=20, ge=1)
    """Failed authentications one source may make within `auth_failure_window_s`: after that, its
    requests that carry a credential are answered 429 auth_throttled for one window, unchecked."""
    auth_failure_window_s: float = Field(default=60.0, gt=0, le=86400)
    """The window of `auth_failure_limit`, how long a source then stays throttled, and the period
    over which security events are counted into one audit row per source."""

    # ---- what an operator watches (registry/observability, registry/api/observe.py)
    log_format: Literal["text", "json"] = "text"
    """`json`: servers and workers log one JSON object per line (request id, user, route template,
    status, duration, bytes); secrets redacted in both formats."""
    metrics_token: SecretStr | None = None
    """When set, /metrics (a server's, a worker's --metrics-port) answers only `Authorization:
    Bearer <this>`. Unset: open (the page holds counts by route template, never names)."""
    shutdown_deadline_s: float = Field(default=30.0, ge=0, le=86400)
    """After SIGTERM a server answers /readyz 503 and refuses new requests, and stops once its
    requests in flight (uploads) have ended or this many seconds have passed."""

    # ---- the web UI (registry/ui)
    ui_image_hosts: str = ""
    """Comma-separated hosts (`huggingface.co`, `cdn.example.com:8443`) from which a model card
    rendered in the web UI may load images over https; `*` for any. Empty: none, and a card's remote
    images are shown as links (a reader's browser fetches nothing elsewhere without the operator's
    consent). The pages' Content-Security-Policy names the same hosts."""

    @field_validator("ui_image_hosts")
    @classmethod
    def _ui_image_hosts(cls, value: str) -> str:
        hosts = [h.strip().lower() for h in value.split(",") if h.strip()]
        for host in hosts:
            if host != "*" and not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?", host):
                raise ValueError(f"ui image host {host!r} is not a host name (host or host:port)")
        return ",".join(hosts)

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: str) -> str:
        return ",".join(str(n) for n in proxy_networks(value))

    @property
    def trusted_networks(self) -> tuple[ProxyNetwork, ...]:
        return proxy_networks(self.trusted_proxies)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'registry.db'}"

    @property
    def sqlite_file(self) -> Path | None:
        """The database's file when it is a plain SQLite file (sqlite:///relative or
        sqlite:////absolute): what the embedded reads open on a bare sqlite3 connection (registry.client.reads). None
        for anything else, and for a URL SQLAlchemy would decode or read options from (%, ?, #)."""
        rest = self.effective_database_url.removeprefix("sqlite:///")
        if (
            rest == self.effective_database_url
            or not rest
            or rest == ":memory:"
            or any(c in rest for c in "%?#")
        ):
            return None
        return Path(rest)

    @property
    def effective_blob_url(self) -> str:
        return self.blob_url or f"file://{self.home / 'blobs'}"

    @property
    def effective_work_dir(self) -> Path:
        return self.work_dir or self.home / "work"

    @property
    def effective_cache_dir(self) -> Path:
        return self.cache_dir or self.home / "cache"

    @property
    def token_file(self) -> Path:
        """Where `adapters login` keeps the token (mode 0600)."""
        return self.config_dir / "token"

    def api_token(self) -> str | None:
        """The token to send: ADAPTERS_TOKEN, else the one `adapters login` kept, else None."""
        if self.token is not None and self.token.get_secret_value():
            return self.token.get_secret_value()
        try:
            kept = self.token_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return kept or None

    def s3_options(self) -> S3Options | None:
        if not self.s3_endpoint:
            return None
        return S3Options(
            endpoint=self.s3_endpoint,
            access_key=self.s3_access_key,
            secret_key=self.s3_secret_key,
            region=self.s3_region,
            secure=self.s3_secure,
            part_size=self.s3_part_bytes,
        )
