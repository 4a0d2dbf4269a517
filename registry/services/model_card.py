"""Model cards: the YAML front matter of a revision's README.md, as the Hub's `cardData`.

The front matter is found as huggingface_hub finds it (`repocard.REGEX_YAML_BLOCK`: a block between
`---` lines at the top) within the first CARD_BYTES of the README, parsed with `yaml.safe_load`
(no Python objects), and turned into JSON with a budget: CARD_NODES values once aliases are spelled
out, MAX_JSON_DEPTH levels. Dates become ISO strings; values JSON cannot carry (binary, NaN, lone
surrogates, integers over 64 bits) are left out. A card that is not YAML, not a mapping or over the
budget is no card: the Hub calls still answer, with the card the registry derives.

A README is named by its sha256, so a parsed card never changes: kept per process (CardCache)."""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import OrderedDict
from dataclasses import replace
from datetime import date, datetime
from typing import Any

import yaml

import storage
from registry.bounds import CARD_BYTES, CARD_NODES, INT64_MAX, LABEL_LEN, MAX_JSON_DEPTH
from registry.entities import FileInfo
from registry.services.context import Registry
from registry.services.hub import HubFile, HubRevision

log = logging.getLogger("registry.hub")

README = "README.md"
FRONT_MATTER = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")
"""huggingface_hub's REGEX_YAML_BLOCK (repocard.py): what its ModelCard reads as metadata."""
CARD_TAGS = 64
"""The most tags a card adds to a repository's tags (real cards list a handful)."""
CACHE_BYTES = 8 * 1024**2
"""Parsed cards kept per process, counted by the size of their YAML."""
_CACHE_KEY = "hub.model_cards"


class _TooLarge(Exception):
    pass


_SKIP = object()


def parse_front_matter(text: str) -> dict[str, Any] | None:
    """The card data of a README's text, or None (no front matter, not a YAML mapping, over the
    budget)."""
    found = FRONT_MATTER.search(text)
    if found is None:
        return None
    try:
        data = yaml.safe_load(found.group(2))
    except (yaml.YAMLError, RecursionError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        value = _json_value(data, 1, [CARD_NODES])
    except _TooLarge:
        return None
    return value if isinstance(value, dict) else None


def _json_value(node: Any, depth: int, budget: list[int]) -> Any:
    """`node` as a JSON value (or _SKIP), spending one unit of `budget` per value visited: an
    alias is visited each time it is named, which is what the JSON answer would spell out."""
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_JSON_DEPTH:
        raise _TooLarge
    if node is None or isinstance(node, bool):
        return node
    if isinstance(node, str):
        return node if _servable(node) else _SKIP
    if isinstance(node, int):
        return node if -INT64_MAX - 1 <= node <= INT64_MAX else _SKIP
    if isinstance(node, float):
        return node if math.isfinite(node) else _SKIP
    if isinstance(node, datetime | date):
        return node.isoformat()
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            name = _key(key)
            converted = _json_value(value, depth + 1, budget)
            if name is not None and converted is not _SKIP:
                out[name] = converted
        return out
    if isinstance(node, list | tuple | set | frozenset):
        items = (_json_value(v, depth + 1, budget) for v in node)
        return [v for v in items if v is not _SKIP]
    return _SKIP  # bytes (!!binary) and anything else JSON has no word for


def _key(key: Any) -> str | None:
    if isinstance(key, str):
        return key if _servable(key) else None
    if key is None or isinstance(key, bool | int | float | date):
        return str(key).lower() if key is None or isinstance(key, bool) else str(key)
    return None


def _servable(text: str) -> bool:
    """Text a JSON answer can carry: UTF-8 (no lone surrogate) and no NUL."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class CardCache:
    """Parsed cards by README sha256, least recently used dropped past CACHE_BYTES."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self._lock = threading.Lock()
        self._cards: OrderedDict[str, tuple[dict[str, Any] | None, int]] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes

    def get(self, sha256: str) -> tuple[bool, dict[str, Any] | None]:
        with self._lock:
            hit = self._cards.get(sha256)
            if hit is None:
                return False, None
            self._cards.move_to_end(sha256)
            return True, hit[0]

    def put(self, sha256: str, card: dict[str, Any] | None, size: int) -> None:
        with self._lock:
            if sha256 in self._cards:
                return
            self._cards[sha256] = (card, size)
            self._bytes += size
            while self._bytes > self._max and self._cards:
                _, (_, dropped) = self._cards.popitem(last=False)
                self._bytes -= dropped


def _cache(reg: Registry) -> CardCache:
    cache = reg.cache.get(_CACHE_KEY)
    if cache is None:
        cache = reg.cache.setdefault(_CACHE_KEY, CardCache())
    return cache  # type: ignore[no-any-return]


def read_card(reg: Registry, readme: HubFile) -> dict[str, Any] | None:
    """The card data of a README blob (its first CARD_BYTES). A blob the store cannot give is no
    card (logged, not remembered): model_info never fails for its card."""
    cache = _cache(reg)
    known, card = cache.get(readme.sha256)
    if known:
        return card
    try:
        raw = b"".join(reg.store.open(readme.digest, 0, min(readme.size, CARD_BYTES)))
    except storage.StorageError as err:
        log.warning("could not read the model card %s: %s", readme.digest, err)
        return None
    card = parse_front_matter(raw.decode("utf-8", errors="replace"))
    cache.put(readme.sha256, card, 256 + len(raw))
    return card


def card_tags(card: dict[str, Any]) -> list[str]:
    """The tags a card adds, as the Hub derives them: `tags`, `license:<id>`, `dataset:<id>` for
    each of `datasets`, and each `language` code."""
    found = _strings(card.get("tags"))
    found += [f"license:{v}" for v in _strings(card.get("license"))]
    found += [f"dataset:{v}" for v in _strings(card.get("datasets"))]
    found += _strings(card.get("language"))
    return [t for t in found if len(t) <= LABEL_LEN][:CARD_TAGS]


def _strings(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def merged_tags(tags: list[str], card: dict[str, Any] | None) -> list[str]:
    """The derived tags, then the card's, each once."""
    if not card:
        return tags
    return list(dict.fromkeys([*tags, *card_tags(card)]))


def with_card(reg: Registry, rev: HubRevision) -> HubRevision:
    """`rev` with its README's card (`merge`)."""
    readme = next((f for f in rev.files if f.path == README), None)
    card = read_card(reg, readme) if readme is not None else None
    if not card:
        return rev
    card_data, tags = merge(rev.card_data, rev.tags, card)
    return replace(rev, card_data=card_data, tags=tags)


def merge(derived: dict[str, Any], tags: list[str], card: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The card data and tags of a repository with a README card: `cardData` is the derived card
    updated by the front matter (its `tags` joined to the derived ones), and the card's tags
    (`card_tags`) join the repository's."""
    own = [t for t in _strings(card.get("tags")) if len(t) <= LABEL_LEN][:CARD_TAGS]
    data = {**derived, **card, "tags": list(dict.fromkeys([*derived.get("tags", []), *own]))}
    return data, merged_tags(tags, card)


def readme_text(reg: Registry, files: list[FileInfo], max_bytes: int) -> tuple[str, bool] | None:
    """A version's README.md as text (its first `max_bytes`, and whether it was cut there), for
    the web UI's card; None when it has none or the store cannot give it (logged)."""
    readme = next((f for f in files if f.path == README), None)
    if readme is None:
        return None
    try:
        raw = b"".join(reg.store.open(readme.sha256, 0, min(readme.size, max_bytes)))
    except storage.StorageError as err:
        log.warning("could not read the model card %s: %s", readme.sha256, err)
        return None
    return raw.decode("utf-8", errors="replace"), readme.size > max_bytes
