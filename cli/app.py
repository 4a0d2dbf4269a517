"""What one invocation shares: settings and the client, each built at most once, on the click
context; the decorators that hand them to commands."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

import click

from cli.output import handle_errors

if TYPE_CHECKING:
    from registry.client import RegistryClient
    from registry.client.reads import VersionReads
    from registry.config import Settings

P = ParamSpec("P")
R = TypeVar("R")


class App:
    """Settings and client of one `adapters` invocation. Both are built on first use (inside the
    command, so that a bad environment or an unreachable database is one error line, and `--help`
    builds neither); the root group closes the client when the command ends."""

    def __init__(self, jobs_here: bool = True) -> None:
        self.jobs_here = jobs_here
        """False under `adapters --no-worker`: jobs wait for a separate `adapters worker`."""
        self._settings: Settings | None = None
        self._client: RegistryClient | None = None
        self._reads: VersionReads | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from registry.config import Settings

            self._settings = Settings()
        return self._settings

    @property
    def client(self) -> RegistryClient:
        """HttpClient when ADAPTERS_URL is set, else the embedded LocalClient."""
        if self._client is None:
            from registry.client import open_client

            self._client = open_client(self.settings)
        return self._client

    @property
    def reads(self) -> VersionReads:
        """What `list` and `pull` read, as documents (registry.client.reads): on the embedded
        registry a bare sqlite3 connection when it can (no SQLAlchemy, no entities), else the
        client."""
        if self._reads is None:
            from registry.client.reads import open_reads

            self._reads = open_reads(self.settings, lambda: self.client)
        return self._reads

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    @contextmanager
    def jobs_running(self, wait: bool) -> Iterator[None]:
        """While the block waits on a job, run queued jobs in this process if the registry lives
        here (embedded) and `--no-worker` was not given; over HTTP a server's workers run them."""
        if not (wait and self.jobs_here and self.client.in_process):
            yield
            return
        from registry.worker.embedded import jobs_run_here
        from registry.worker.settings import WorkerSettings

        with jobs_run_here(self.client, WorkerSettings.from_settings(self.settings)):
            yield


def current_app() -> App:
    """The invocation's App (ctx.obj of the root group; made here for a command invoked alone)."""
    ctx = click.get_current_context()
    app = ctx.find_object(App)
    if app is None:
        root = ctx.find_root()
        app = root.obj = App()
        root.call_on_close(app.close)
    return app


def pass_app(f: Callable[Concatenate[App, P], R]) -> Callable[P, R]:
    """Hand the command the invocation's App first; its errors become one line (handle_errors)."""

    @functools.wraps(f)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return f(current_app(), *args, **kwargs)

    return handle_errors(wrapper)


def with_client(f: Callable[Concatenate[RegistryClient, P], R]) -> Callable[P, R]:
    """Hand the command the invocation's client first (opened now, closed when the command ends);
    its errors become one line (handle_errors)."""

    @functools.wraps(f)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return f(current_app().client, *args, **kwargs)

    return handle_errors(wrapper)
