"""A bounded, thread-safe least-recently-used map: per-process memory of facts that never change,
kept to a size (a server's request threads share it)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """At most `size` in total `weight` (by default, entries); the least recently used go first.
    A value heavier than `size` alone is not kept."""

    def __init__(self, size: int, weight: Callable[[V], int] = lambda _: 1) -> None:
        self.size = size
        self.weight = weight
        self.total = 0
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            self._items.move_to_end(key)
            return found[0]

    def put(self, key: K, value: V) -> None:
        w = self.weight(value)
        with self._lock:
            self._drop(key)
            if w > self.size:
                return
            self._items[key] = (value, w)
            self.total += w
            while self.total > self.size:
                _, (_, old) = self._items.popitem(last=False)
                self.total -= old

    def pop(self, key: K) -> None:
        with self._lock:
            self._drop(key)

    def _drop(self, key: K) -> None:
        found = self._items.pop(key, None)
        if found is not None:
            self.total -= found[1]

    def __len__(self) -> int:
        return len(self._items)
