"""One RegistryClient interface: LocalClient (embedded, in-process) and HttpClient (a server)."""

from __future__ import annotations

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


__all__ = ["RegistryClient", "TransferProgress", "open_client"]
