"""The Xet CAS endpoints hf_xet uploads through (token, dedupe query, xorbs, shards)."""

from __future__ import annotations

from registry.api.hub.xet.routes import CAS_PREFIX, router

__all__ = ["CAS_PREFIX", "router"]
