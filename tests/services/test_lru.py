"""The bounded LRU behind the Hub's per-process resolutions (services/lru.py)."""

from __future__ import annotations

from registry.services.lru import Lru


def test_the_least_recently_used_go_first_by_weight() -> None:
    lru: Lru[str, list[int]] = Lru(5, weight=len)
    lru.put("a", [1, 2])
    lru.put("b", [1, 2])
    assert lru.get("a") == [1, 2]  # now b is the least recently used
    lru.put("c", [1, 2])
    assert lru.get("b") is None and lru.get("a") == [1, 2] and lru.get("c") == [1, 2]
    assert lru.total == 4
    lru.put("a", [1])  # replaced: its old weight is given back
    assert lru.total == 3
    lru.put("huge", list(range(6)))  # heavier than the whole bound: not kept, nothing evicted
    assert lru.get("huge") is None and len(lru) == 2
    lru.pop("c")
    lru.pop("missing")
    assert lru.total == 1 and lru.get("c") is None


def test_entries_count_one_each_by_default() -> None:
    lru: Lru[int, str] = Lru(2)
    for i in range(5):
        lru.put(i, str(i))
    assert len(lru) == 2 and lru.get(3) == "3" and lru.get(4) == "4" and lru.get(2) is None
