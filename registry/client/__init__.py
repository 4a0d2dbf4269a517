"""One RegistryClient interface: LocalClient (embedded, in-process) and HttpClient (a server).

The names below are loaded on first use (PEP 562): importing a light submodule, such as
registry.client.reads and transfer for the embedded list and pull, must not import the interface's entities and
the access entities behind them (about 0.15 s, bench/cli_startup.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from registry.client.interface import RegistryClient, TransferProgress
    from registry.config import Settings


def open_client(settings: Settings) -> RegistryClient:
    """HttpClient when ADAPTERS_URL is set, else the embedded LocalClient (migrating on first use)."""
    if settings.url:
        from registry.client.http import HttpClient

        return HttpClient(
            settings.url,
            user=settings.user,
            cache_dir=settings.effective_cache_dir,
            token=settings.api_token(),
        )
    from registry.client.local import LocalClient

    return LocalClient.from_settings(settings)


def __getattr__(name: str) -> Any:
    if name in ("RegistryClient", "TransferProgress"):
        from registry.client import interface

        return getattr(interface, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RegistryClient", "TransferProgress", "open_client"]
