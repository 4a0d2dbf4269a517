"""Serve registry adapters on one base: `AdapterServer` (LRU by count and bytes, mixed batches).

Built on the client (resolve, pull through the content-addressed cache, fit) and on
registry.tensors.multi_lora (the only part that imports torch, when a server is made)."""

from registry.serving.lru import LoadedAdapter, ServingStats
from registry.serving.server import AdapterServer, adapter_name

__all__ = ["AdapterServer", "LoadedAdapter", "ServingStats", "adapter_name"]
