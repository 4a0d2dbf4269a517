"""The caller's address, in one place: the socket peer, or what `X-Forwarded-For` says when (and
only when) that peer is a proxy the operator listed in ADAPTERS_TRUSTED_PROXIES.

uvicorn believes `X-Forwarded-For` from any loopback peer by default, so anyone on the server's
host (or a proxy on it that passes the header through) could write any address into the audit log.
The registry computes the address itself, from the peer its ASGI server reports and the operator's
list, whatever server runs it; `adapters serve` runs uvicorn with the same list (`uvicorn_options`),
so X-Forwarded-Proto is believed from the same proxies and from no one else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, MutableMapping
from typing import Any

from registry.config import ProxyNetwork, Settings

UNKNOWN = "unknown"
"""Recorded when the ASGI server replaced the peer with a forwarded address although the operator
trusts no proxy (uvicorn's defaults, run without `adapters serve`): the real peer is lost."""
MAX_HOPS = 32
"""The most X-Forwarded-For entries read: a chain longer than this is no real proxy chain."""
STATE_KEY = "client_source"


def source_of(scope: MutableMapping[str, Any], settings: Settings) -> str | None:
    """The address of the request in `scope` (None: no network peer, e.g. a Unix socket), computed
    once per request and kept in its state."""
    state = scope.setdefault("state", {})
    if STATE_KEY not in state:
        state[STATE_KEY] = source_address(
            scope.get("client"), forwarded_for(scope.get("headers", ())), settings.trusted_networks
        )
    source: str | None = state[STATE_KEY]
    return source


def forwarded_for(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """The X-Forwarded-For entries of raw ASGI headers, in order (every such header, joined)."""
    hops: list[str] = []
    for name, value in headers:
        if name.lower() == b"x-forwarded-for":
            hops += [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
    return hops[-MAX_HOPS:]


def source_address(client: Any, forwarded: list[str], trusted: tuple[ProxyNetwork, ...]) -> str | None:
    """Where a request came from.

    Args:
        client: the ASGI scope's `client`, (host, port) of the peer, or None.
        forwarded: the X-Forwarded-For entries, leftmost first.
        trusted: the operator's proxies.

    The peer, unless it is a trusted proxy; then the last X-Forwarded-For entry (walking from the
    right, as each proxy appends) that is not itself a trusted proxy, or the first when all are.
    """
    if not client:
        return None
    host, port = str(client[0]), client[1] if len(client) > 1 else None
    hops = [_host_port(h) for h in forwarded]
    if not trusted:
        # A peer that is one of the forwarded entries, port included (uvicorn writes port 0 for an
        # entry without one: no TCP peer has it), is the ASGI server's substitution, not a peer.
        return UNKNOWN if (host, port) in hops else host
    if not is_trusted(host, trusted) or not hops:
        return host
    for hop, _ in reversed(hops):
        if not is_trusted(hop, trusted):
            return hop
    return hops[0][0]


def is_trusted(host: str, trusted: tuple[ProxyNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def _host_port(value: str) -> tuple[str, int]:
    """An X-Forwarded-For entry as (host, port), as uvicorn reads it: `1.2.3.4`, `1.2.3.4:5`,
    `[::1]:5`, `::1`; port 0 when it names none."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isdigit() else 0
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host, int(port) if port.isdigit() else 0
    return value, 0


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's proxy settings that follow ADAPTERS_TRUSTED_PROXIES: its proxy headers (the
    client address and the scheme) only from the listed proxies, and off when none is listed."""
    if not settings.trusted_networks:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": [str(n) for n in settings.trusted_networks]}
