"""Security events, and the throttle that slows a token guesser.

Two kinds of event are counted per source (the caller's address, `registry.access.addresses`; an
IPv6 caller's /64, which one host usually holds whole):

- `security.auth_failed`: a credential that does not authenticate (a bearer token on /v1 or the Hub
  routes, the UI's cookie, a token typed into the UI's login form), whatever the reason;
- `security.write_denied`: a write (POST, PUT, PATCH, DELETE) answered 403 (a permission refused,
  a form without its CSRF token, a tampered upload URL), counted by `registry.api.security`.

They reach the audit log as one row per (kind, source, actor) and window, the count and the first
and last time in its details, written when the window ends (and when the server stops): a guesser
adds a row a minute, not a row a guess. A source that fails `limit` authentications within a window
is answered 429 `auth_throttled` (Retry-After) for the next window on every request whose credential
does not authenticate; a valid token from that source still works, and other sources are not affected.

The counts live in this process: replicas behind one address count each on their own, and a
restart forgets them (a shared count is a later step). No secret is kept or logged here:
`authenticate` hands it to `authentication.authenticate` and keeps only where the request came from and
which surface refused it.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from registry.access import authentication
from registry.access.principal import Principal
from registry.config import Settings
from registry.db.engine import unit_of_work
from registry.errors import AuthThrottled, Unauthenticated
from registry.observability import events
from registry.services import audit
from registry.services.context import Registry
from registry.services.timeutil import now

log = logging.getLogger(__name__)

Kind = Literal["security.auth_failed", "security.write_denied"]
AUTH_FAILED: Kind = "security.auth_failed"
WRITE_DENIED: Kind = "security.write_denied"
Via = Literal["bearer", "cookie", "login"]
MAX_SOURCES = 10_000
"""Sources whose failures are counted at once (a few MB): when full, counts that ended go first,
then the oldest source that is not throttled."""
MAX_TALLIES = 10_000
"""Pending (kind, source, actor) counts; past this, new ones fold into one per kind, source `*`."""
MAX_PATHS = 5
"""Distinct paths a write_denied row names as examples (each cut to 200 characters)."""


def source_key(source: str | None) -> str:
    """What is counted as one source: the address; an IPv6 address's /64; `local` without one."""
    if not source:
        return audit.LOCAL
    try:
        ip = ipaddress.ip_address(source)
    except ValueError:
        return source[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass
class _Failures:
    since: float
    count: int = 0
    blocked_until: float = 0.0


@dataclass
class _Tally:
    started: float
    first_at: datetime
    last_at: datetime
    user_id: int | None = None
    count: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    paths: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SecurityEvent:
    """One audit row: `count` events of `kind` from `source` by `actor` in one window."""

    kind: Kind
    source: str
    actor: str
    user_id: int | None
    details: dict[str, Any]


class SecurityMonitor:
    """The per-process counts (thread-safe: sync routes run on a thread pool)."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, _Failures] = {}
        self._tallies: dict[tuple[Kind, str, str], _Tally] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> SecurityMonitor:
        return cls(settings.auth_failure_limit, settings.auth_failure_window_s)

    def check(self, source: str | None) -> None:
        """Call before looking at a credential from `source`.

        Raises:
            AuthThrottled: the source failed `limit` times within a window lately.
        """
        key = source_key(source)
        with self._lock:
            t = self._clock()
            entry = self._failures.get(key)
            wait = entry.blocked_until - t if entry is not None else 0.0
            if wait <= 0:
                return
            tally = self._tally(AUTH_FAILED, key, "anonymous", None, t)
            tally.counts["throttled"] += 1
        events.sink().auth_throttled()
        raise AuthThrottled(
            f"too many failed authentications from this address: retry in {math.ceil(wait)} s "
            "with a valid token (ADAPTERS_TOKEN, `adapters login`)",
            retry_after=math.ceil(wait),
        )

    def authenticate(self, reg: Registry, source: str | None, secret: str, via: Via) -> Principal:
        """The principal of `secret`, presented by `source` through `via`, counted when it does not
        authenticate. While the source is throttled a secret that does not authenticate is answered
        429, not 401: the guesser learns nothing more, and a valid token from the same address (a
        shared NAT, a proxy not listed in ADAPTERS_TRUSTED_PROXIES) still works, so guessing from an
        address never locks its honest users out. The secrets are 256 bits: the throttle spares the
        server and the log, it does not stand between a guesser and a token.

        Raises:
            AuthThrottled: the secret does not authenticate and the source failed too often lately.
            Unauthenticated: the secret is malformed, unknown, expired or revoked.
        """
        try:
            return authentication.authenticate(reg, secret)
        except Unauthenticated:
            self.check(source)
            self.auth_failed(source, via)
            raise

    def auth_failed(self, source: str | None, via: Via) -> None:
        """Count a credential from `source` that did not authenticate."""
        events.sink().auth_failed(via)
        key = source_key(source)
        with self._lock:
            t = self._clock()
            tally = self._tally(AUTH_FAILED, key, "anonymous", None, t)
            tally.count += 1
            tally.counts[via] += 1
            entry = self._failures.get(key)
            if entry is None or entry.since + self.window_s <= t:
                entry = self._new_failures(key, t)
                if entry is None:
                    return
            entry.count += 1
            if entry.count >= self.limit:
                entry.blocked_until = t + self.window_s
                entry.since, entry.count = t, 0

    def write_denied(self, source: str | None, principal: Principal | None, status: int, path: str) -> None:
        """Count a write from `source` by `principal` (None: unknown) answered `status`."""
        actor = principal.name if principal is not None else "anonymous"
        user_id = principal.user_id if principal is not None else None
        events.sink().write_denied()
        with self._lock:
            tally = self._tally(WRITE_DENIED, source_key(source), actor, user_id, self._clock())
            tally.count += 1
            tally.counts[str(status)] += 1
            if len(tally.paths) < MAX_PATHS and path[:200] not in tally.paths:
                tally.paths.append(path[:200])

    def take(self, everything: bool = False) -> list[SecurityEvent]:
        """The counts whose window ended (all of them with `everything`), removed from here."""
        with self._lock:
            t = self._clock()
            done = [k for k, v in self._tallies.items() if everything or v.started + self.window_s <= t]
            events = [self._event(k, self._tallies.pop(k)) for k in done]
            self._forget(t)
        return events

    def flush(self, reg: Registry, everything: bool = False) -> int:
        """Write the counts whose window ended to the audit log; how many rows. A database that
        fails drops them (logged): the count is a trail, never a reason to fail a request."""
        events = self.take(everything)
        if not events:
            return 0
        try:
            with unit_of_work(reg.sessions) as session:
                for e in events:
                    who = Principal(
                        "user" if e.user_id is not None else "anonymous",
                        e.actor,
                        user_id=e.user_id,
                        address=e.source,
                    )
                    audit.record(session, who, e.kind, e.source, e.details)
        except Exception as err:
            log.warning("could not write %d security events: %s", len(events), type(err).__name__)
            return 0
        return len(events)

    # ---- under the lock
    def _tally(self, kind: Kind, source: str, actor: str, user_id: int | None, t: float) -> _Tally:
        key = (kind, source, actor)
        tally = self._tallies.get(key)
        if tally is None:
            if len(self._tallies) >= MAX_TALLIES:
                key = (kind, "*", "*")
                tally = self._tallies.get(key)
            if tally is None:
                at = now()
                tally = self._tallies[key] = _Tally(started=t, first_at=at, last_at=at, user_id=user_id)
        tally.last_at = now()
        return tally

    def _new_failures(self, key: str, t: float) -> _Failures | None:
        if key not in self._failures and len(self._failures) >= MAX_SOURCES:
            self._forget(t)
            if len(self._failures) >= MAX_SOURCES:
                oldest = next((k for k, v in self._failures.items() if v.blocked_until <= t), None)
                if oldest is None:  # ten thousand sources throttled at once: count no more
                    return None
                del self._failures[oldest]
        old = self._failures.pop(key, None)  # re-inserted last: the dict stays in order of age
        blocked_until = old.blocked_until if old is not None else 0.0
        entry = self._failures[key] = _Failures(since=t, blocked_until=blocked_until)
        return entry

    def _forget(self, t: float) -> None:
        stale = [
            k for k, v in self._failures.items() if v.since + self.window_s <= t and v.blocked_until <= t
        ]
        for k in stale:
            del self._failures[k]

    def _event(self, key: tuple[Kind, str, str], tally: _Tally) -> SecurityEvent:
        kind, source, actor = key
        details: dict[str, Any] = {
            "count": tally.count,
            "first": tally.first_at.isoformat(),
            "last": tally.last_at.isoformat(),
            "window_s": self.window_s,
        }
        if kind == AUTH_FAILED:
            details["via"] = {k: v for k, v in tally.counts.items() if k != "throttled"}
            details["throttled"] = tally.counts["throttled"]
        else:
            details["status"] = dict(tally.counts)
            details["paths"] = tally.paths
        return SecurityEvent(kind, source, actor, tally.user_id, details)
