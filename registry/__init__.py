"""adapter-registry: a self-hosted registry for LoRA/PEFT adapters.

The Python API (registry.facade) is loaded on first use (PEP 562): importing any submodule
imports this package first, and the server and the CLI's start-up must not pay for it.

    >>> import registry
    >>> reg = registry.connect()          # as the CLI: ADAPTERS_URL/ADAPTERS_TOKEN, else embedded
    >>> reg.push("output_dir", "acme/legal")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from registry.facade import AdapterRegistry, connect

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("AdapterRegistry", "connect"):
        from registry import facade

        return getattr(facade, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AdapterRegistry", "__version__", "connect"]
