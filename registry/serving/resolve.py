"""References to versions, resolved through the client and remembered: a digest or a version number
names one version for ever; an alias or a bare repository (its latest) is asked again once
`ttl_s` has passed, so a moved alias is followed by the first call after that."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from registry.client.interface import RegistryClient
from registry.entities import VersionInfo
from registry.refs import parse_ref


class RefResolver:
    def __init__(
        self, client: RegistryClient, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ttl_s < 0:
            raise ValueError("alias_ttl_s must be zero or more")
        self.client = client
        self.ttl_s = ttl_s
        self.clock = clock
        self._known: dict[str, tuple[VersionInfo, float]] = {}
        self._lock = threading.Lock()

    def resolve(self, ref: str) -> VersionInfo:
        parsed = parse_ref(ref)  # a malformed reference is refused before any request
        fixed = parsed.digest is not None or parsed.version is not None
        now = self.clock()
        with self._lock:
            hit = self._known.get(ref)
        if hit is not None and (fixed or now - hit[1] < self.ttl_s):
            return hit[0]
        info = self.client.resolve(ref)
        with self._lock:
            self._known[ref] = (info, now)
        return info
