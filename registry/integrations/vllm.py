"""A vLLM `LoRAResolver` that serves registry references as LoRA names.

    pip install adapter-registry   # into vLLM's environment: the entry point below registers it
    ADAPTERS_URL=http://registry:8080 VLLM_ALLOW_RUNTIME_LORA_UPDATING=True \
        vllm serve meta-llama/Llama-3.1-8B --enable-lora
    curl .../v1/completions -d '{"model": "acme/legal@production", ...}'

`lora_name` (the request's `model`) is a registry reference. The resolver resolves it, pulls the
version into the client's content-addressed cache (verified) and a folder per digest, and returns
a `LoRARequest` named `acme/legal@sha256:<digest>`: two versions never share a name, so vLLM's
caches keyed by the adapter's name (its LoRA LRU, prefix-cache hashes) cannot hand back a stale
adapter after an alias moves (vllm#42125). It refuses (returns None, with a warning naming why) an
adapter that does not fit the served base: not LoRA, pushed with --force, or made for another base.

Entry point: `[project.entry-points."vllm.general_plugins"] adapter_registry = ...:register`.
vLLM is imported only inside `register()` and `make_resolver()`; everything else is plain Python
over the RegistryClient interface, tested without vLLM.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.client.interface import RegistryClient
from registry.entities import BaseInfo, VersionInfo
from registry.errors import BadRequest, BaseMismatch, InvalidReference, InvalidSignature, NotFound
from registry.integrations.sync import materialize
from registry.refs import ref_or_none

if TYPE_CHECKING:
    from registry.config import Settings

log = logging.getLogger(__name__)
RESOLVER_NAME = "adapter-registry"


@dataclass(frozen=True)
class Resolved:
    """What the resolver hands vLLM: a name that carries the digest, and a complete folder."""

    lora_name: str
    lora_int_id: int
    path: Path
    version: VersionInfo


def lora_name_for(info: VersionInfo) -> str:
    """`acme/legal@sha256:<hex>`: itself a registry reference, pinned to this content."""
    return f"{info.repo}@{info.digest}"


def check_fits(client: RegistryClient, info: VersionInfo, served: str) -> None:
    """Refuse what vLLM should not load on `served` (a registry base name or fingerprint, or the
    model string vLLM serves). A registered base is compared by weights fingerprint (else by its
    names); an unknown one by the exact string vLLM's own filesystem resolver compares, the
    adapter's `base_model_name_or_path`.

    Raises:
        BaseMismatch: with the reason (`fits` answers the same question for `adapters fit`).
    """
    ref = f"{info.repo}:{info.version}"
    if info.peft_type != "LORA":
        raise BaseMismatch(f"{ref} is a {info.peft_type} adapter; vLLM loads LoRA only", ref=ref)
    if info.fit_override:
        raise BaseMismatch(f"{ref} was pushed with --force over a failed fit check", ref=ref)
    base = _known_base(client, served)
    made_for = info.base_model.name
    if base is not None:
        names = {n.name for n in base.names}
        if info.base_fingerprint and base.fingerprint:
            if info.base_fingerprint == base.fingerprint:
                return
            raise BaseMismatch(
                f"{ref} was made for base {info.base_fingerprint[:19]}… ({made_for}); "
                f"vLLM serves {served} ({base.fingerprint[:19]}…)",
                ref=ref,
                bases=[info.base_fingerprint, base.fingerprint],
            )
        if made_for in names:
            return
        raise BaseMismatch(f"{ref} was made for {made_for!r}, not {served!r} ({sorted(names)})", ref=ref)
    if made_for == served:
        return
    raise BaseMismatch(
        f"{ref} was made for {made_for!r}, vLLM serves {served!r}: register the served base under that "
        "name (`adapters base add`), or set ADAPTERS_VLLM_BASE to its registry name",
        ref=ref,
    )


def _known_base(client: RegistryClient, served: str) -> BaseInfo | None:
    try:
        return client.get_base(served)
    except (NotFound, BadRequest, InvalidReference):
        return None


def resolve_adapter(
    client: RegistryClient,
    root: Path,
    base_model_name: str,
    lora_name: str,
    served_base: str | None = None,
    trusted: tuple[Any, ...] = (),
) -> Resolved | None:
    """The body of `resolve_lora`, without vLLM: None when `lora_name` is not a registry reference
    or names nothing; BaseMismatch when it does not fit; with `trusted` keys, InvalidSignature
    when its signature does not check against them (before a byte of it is fetched); else the
    version, materialised once per digest under `root` (from the client's verified cache, renamed
    into place whole)."""
    if ref_or_none(lora_name) is None:
        return None
    try:
        info = client.resolve(lora_name)
    except NotFound:
        return None
    check_fits(client, info, served_base or base_model_name)
    if trusted:
        from registry.client.verify import check_version

        check_version(client, info, list(trusted))
    path = materialize(client, info, root)
    int_id = int(info.digest.removeprefix("sha256:")[:15], 16) or 1
    return Resolved(lora_name=lora_name_for(info), lora_int_id=int_id, path=path, version=info)


class Resolver:
    """The resolver's state: the client (opened on first use, shared by vLLM's threads under a
    lock), the folder versions are materialised in, and the served base if configured."""

    def __init__(
        self,
        settings: Settings,
        root: Path | None = None,
        served_base: str | None = None,
        trusted: tuple[Any, ...] = (),
    ) -> None:
        self.settings = settings
        self.trusted = trusted
        self.root = root or settings.effective_cache_dir / "vllm"
        self.served_base = served_base
        self._client: RegistryClient | None = None
        self._lock = threading.Lock()

    def client(self) -> RegistryClient:
        if self._client is None:
            from registry.client import open_client

            self._client = open_client(self.settings)
        return self._client

    def resolve(self, base_model_name: str, lora_name: str) -> Resolved | None:
        with self._lock:
            try:
                return resolve_adapter(
                    self.client(), self.root, base_model_name, lora_name, self.served_base, self.trusted
                )
            except (BaseMismatch, InvalidSignature) as err:
                log.warning("adapter-registry refuses %s: %s", lora_name, err)
                return None


def make_resolver(resolver: Resolver) -> Any:
    """A `vllm.lora.resolver.LoRAResolver` over `resolver` (vLLM imported here)."""
    from vllm.lora.request import LoRARequest
    from vllm.lora.resolver import LoRAResolver

    class RegistryLoRAResolver(LoRAResolver):  # type: ignore[misc]
        def __init__(self) -> None:
            self.resolver = resolver

        async def resolve_lora(self, base_model_name: str, lora_name: str) -> LoRARequest | None:
            found = await asyncio.to_thread(resolver.resolve, base_model_name, lora_name)
            if found is None:
                return None
            return LoRARequest(
                lora_name=found.lora_name,
                lora_int_id=found.lora_int_id,
                lora_path=str(found.path),
                base_model_name=base_model_name,
            )

    return RegistryLoRAResolver()


def register() -> None:
    """vLLM's `vllm.general_plugins` hook: register the resolver when the environment names a
    registry (ADAPTERS_URL, or ADAPTERS_HOME for an embedded one); otherwise do nothing, like
    vLLM's filesystem resolver without VLLM_LORA_RESOLVER_CACHE_DIR. ADAPTERS_VLLM_DIR: where
    versions are materialised (default: the client cache's `vllm/`); ADAPTERS_VLLM_BASE: the served
    base's registry name or fingerprint (default: the model string vLLM serves);
    ADAPTERS_VLLM_VERIFY=1: serve only versions whose signature checks against the keys trusted
    here (ADAPTERS_TRUSTED_KEYS, the config folder's trusted_keys/), as `pull --verify` does."""
    if not (os.environ.get("ADAPTERS_URL") or os.environ.get("ADAPTERS_HOME")):
        return
    from vllm.lora.resolver import LoRAResolverRegistry

    from registry.config import Settings

    root = os.environ.get("ADAPTERS_VLLM_DIR")
    settings = Settings()
    trusted: tuple[Any, ...] = ()
    if os.environ.get("ADAPTERS_VLLM_VERIFY", "") not in ("", "0"):
        from registry.client.verify import trusted_keys

        named = os.environ.get("ADAPTERS_TRUSTED_KEYS", "")
        trusted = tuple(trusted_keys([Path(p) for p in named.split(os.pathsep) if p], settings.config_dir))
    resolver = Resolver(
        settings, Path(root) if root else None, os.environ.get("ADAPTERS_VLLM_BASE") or None, trusted
    )
    LoRAResolverRegistry.register_resolver(RESOLVER_NAME, make_resolver(resolver))
