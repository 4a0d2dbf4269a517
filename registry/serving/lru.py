"""Which adapters an AdapterServer holds, in LRU order, and which of them it may evict.

Plain bookkeeping, no torch and no lock of its own: AdapterServer calls it under its lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel

from registry.errors import BadRequest, ServingFull


@dataclass
class Entry:
    name: str
    digest: str
    repo: str
    version: int
    bytes: int
    users: int = 0
    """Calls running with this adapter right now: never evicted while above zero."""
    pins: set[str] = field(default_factory=set)
    """The pinned references that resolve to this digest: never evicted while any does."""

    @property
    def evictable(self) -> bool:
        return self.users == 0 and not self.pins


class LoadedAdapter(BaseModel):
    name: str
    digest: str
    ref: str
    bytes: int
    pinned: bool
    in_use: int


class ServingStats(BaseModel):
    loaded: list[LoadedAdapter]
    """Least recently used first."""
    hits: int
    misses: int
    evictions: int
    bytes: int
    max_adapters: int
    max_bytes: int | None


class AdapterLru:
    def __init__(self, max_adapters: int, max_bytes: int | None) -> None:
        if max_adapters < 1:
            raise BadRequest("max_adapters must be at least 1", field="max_adapters")
        if max_bytes is not None and max_bytes < 1:
            raise BadRequest("max_bytes must be positive", field="max_bytes")
        self.max_adapters = max_adapters
        self.max_bytes = max_bytes
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.hits = self.misses = self.evictions = 0

    @property
    def bytes(self) -> int:
        return sum(e.bytes for e in self.entries.values())

    def use(self, name: str) -> Entry | None:
        """The loaded entry `name`, now most recently used and in use by one more call (a hit)."""
        entry = self.entries.get(name)
        if entry is not None:
            self.entries.move_to_end(name)
            entry.users += 1
            self.hits += 1
        return entry

    def release(self, name: str) -> None:
        entry = self.entries.get(name)
        if entry is not None and entry.users > 0:
            entry.users -= 1

    def pin(self, name: str, ref: str) -> None:
        """`ref` (a pinned reference) now resolves to `name`: unpin whatever it resolved to before."""
        for entry in self.entries.values():
            entry.pins.discard(ref)
        self.entries[name].pins.add(ref)

    def victims(self, incoming_bytes: int, label: str) -> list[str] | None:
        """The least recently used evictable entries to drop so that one more adapter of
        `incoming_bytes` fits both limits; None when it cannot fit now (see `any_in_use`).

        Raises:
            ServingFull: the adapter alone is larger than max_bytes.
        """
        self.check_size(incoming_bytes, label)
        count, total, out = len(self.entries), self.bytes, []
        for entry in self.entries.values():
            if self._fits(count, total + incoming_bytes):
                break
            if entry.evictable:
                out.append(entry.name)
                count -= 1
                total -= entry.bytes
        return out if self._fits(count, total + incoming_bytes) else None

    def check_size(self, incoming_bytes: int, label: str) -> None:
        """Raises ServingFull when one adapter of `incoming_bytes` alone is larger than max_bytes."""
        if self.max_bytes is not None and incoming_bytes > self.max_bytes:
            raise ServingFull(
                f"{label} needs {incoming_bytes} bytes; max_bytes is {self.max_bytes}", ref=label
            )

    def over_bytes(self) -> list[str]:
        """Evictable entries to drop, least recently used first, until the bytes are within max_bytes."""
        total, out = self.bytes, []
        for entry in self.entries.values():
            if self.max_bytes is None or total <= self.max_bytes:
                break
            if entry.evictable:
                out.append(entry.name)
                total -= entry.bytes
        return out

    def in_use_by_others(self, mine: Mapping[str, int]) -> bool:
        """Whether calls other than the one holding `mine` (name -> times held) hold an entry."""
        return any(e.users > mine.get(e.name, 0) for e in self.entries.values())

    def full(self, label: str) -> ServingFull:
        held = sum(1 for e in self.entries.values() if not e.evictable)
        return ServingFull(
            f"no room for {label}: {held} of the {len(self.entries)} loaded adapters are pinned or in use "
            f"(max_adapters={self.max_adapters}, max_bytes={self.max_bytes})",
            ref=label,
        )

    def _fits(self, count: int, total: int) -> bool:
        return count < self.max_adapters and (self.max_bytes is None or total <= self.max_bytes)

    def add(self, entry: Entry) -> None:
        self.entries[entry.name] = entry
        self.misses += 1

    def drop(self, name: str) -> None:
        del self.entries[name]
        self.evictions += 1

    def stats(self) -> ServingStats:
        return ServingStats(
            loaded=[
                LoadedAdapter(
                    name=e.name,
                    digest=e.digest,
                    ref=f"{e.repo}:{e.version}",
                    bytes=e.bytes,
                    pinned=bool(e.pins),
                    in_use=e.users,
                )
                for e in self.entries.values()
            ],
            hits=self.hits,
            misses=self.misses,
            evictions=self.evictions,
            bytes=self.bytes,
            max_adapters=self.max_adapters,
            max_bytes=self.max_bytes,
        )
