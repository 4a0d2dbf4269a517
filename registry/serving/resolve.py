"""References to versions, resolved through the client and remembered: a digest or a version number
names one version for ever; an alias or a bare repository (its latest) is asked again once
`ttl_s` has passed, so a moved alias is followed by the first call after that.

What is remembered is bounded (`max_refs`, least recently asked dropped first): a long-running
server asked for ever new reference strings keeps at most that many answers."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from registry.client.interface import RegistryClient
from registry.entities import VersionInfo
from registry.errors import BadRequest
from registry.refs import parse_ref

MAX_REFS = 4096
"""Answers remembered. One VersionInfo with a few files and its config is a few KB, so ~10 MB at
most; a server serves far fewer distinct references than this, so the bound costs no lookups."""


class RefResolver:
    def __init__(
        self,
        client: RegistryClient,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_refs: int = MAX_REFS,
    ) -> None:
        if ttl_s < 0:
            raise BadRequest("alias_ttl_s must be zero or more", field="alias_ttl_s")
        if max_refs < 1:
            raise BadRequest("max_refs must be at least 1", field="max_refs")
        self.client = client
        self.ttl_s = ttl_s
        self.clock = clock
        self.max_refs = max_refs
        self._known: OrderedDict[str, tuple[VersionInfo, float]] = OrderedDict()
        self._lock = threading.Lock()

    def resolve(self, ref: str) -> VersionInfo:
        parsed = parse_ref(ref)  # a malformed reference is refused before any request
        fixed = parsed.digest is not None or parsed.version is not None
        now = self.clock()
        with self._lock:
            hit = self._known.get(ref)
            if hit is not None:
                self._known.move_to_end(ref)
        if hit is not None and (fixed or now - hit[1] < self.ttl_s):
            return hit[0]
        info = self.client.resolve(ref)
        with self._lock:
            self._known[ref] = (info, now)
            self._known.move_to_end(ref)
            while len(self._known) > self.max_refs:
                self._known.popitem(last=False)
        return info

    def __len__(self) -> int:
        with self._lock:
            return len(self._known)
