"""AdapterServer: one base loaded once, registry adapters loaded by digest on demand (LRU), many
adapters served in one batch.

    with AdapterServer("acme/llama-3-8b", max_adapters=8) as srv:
        srv.generate(["Hello", "Bonjour"], adapters=["acme/legal@production", None])

Locking: one lock guards the bookkeeping and every use of the model. Loads (PEFT inject + copy)
and calls (forward, generate) run under it one at a time: PEFT's mixed batches reach the LoRA
layers through hooks registered on the shared modules for one call, so two calls at once would
each run with the other's adapter list. Resolving references, downloading and the fit check run
outside it, so a slow download does not stall other callers.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from registry.client.interface import RegistryClient, TransferProgress
from registry.client.transfer import write_files
from registry.entities import VersionInfo
from registry.errors import BadRequest, ServingFull
from registry.serving.base import ServedBase, open_base, tokenizer_folder
from registry.serving.fit import check_runnable, check_servable
from registry.serving.lru import AdapterLru, Entry, ServingStats
from registry.serving.resolve import RefResolver

if TYPE_CHECKING:
    import torch

    from registry.tensors.multi_lora import Generated, MultiLoraModel


class _NoRoomYet(Exception):
    """No slot free now, but calls that hold some will end: let go, wait, retry."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.label = label


def adapter_name(digest: str) -> str:
    """The PEFT adapter name of a version: its digest (PEFT names may not contain '.' or ':')."""
    return digest.replace(":", "_")


class AdapterServer:
    """Serve registry adapters on one base.

    Args:
        base: a registered base (name or fingerprint) whose files were uploaded, or a model folder.
        client: any RegistryClient (embedded or HTTP); None opens one from the environment
            (ADAPTERS_URL, ADAPTERS_HOME, ...) and closes it with the server.
        device, dtype: where and in which floating-point type the base is loaded: dtype one of
            bf16, fp16, fp32 (or torch's bfloat16, float16, float32), None or "auto" as the
            folder says; both checked (BadRequest) before the base is pulled or loaded.
        max_adapters, max_bytes: the LRU's limits, by count and by the bytes of loaded adapter weights.
        pinned: references loaded now and never evicted (a pinned alias pins what it resolves to).
        alias_ttl_s: how long an alias (or a bare repository, its latest) is trusted before it is
            resolved again; 0 resolves it on every call.
        work_dir: where a registered base is pulled (once per fingerprint); default a temporary
            folder removed by close().
        tokenizer: a folder or a registered base to take the tokenizer from, for a base that holds
            none (default: the base's own).
    """

    room_wait_s = 30.0
    """How long a call waits for other calls to free a slot before ServingFull."""

    def __init__(
        self,
        base: str | Path,
        *,
        client: RegistryClient | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        max_adapters: int = 8,
        max_bytes: int | None = None,
        pinned: Sequence[str] = (),
        alias_ttl_s: float = 30,
        work_dir: Path | None = None,
        progress: TransferProgress | None = None,
        tokenizer: str | Path | None = None,
    ) -> None:
        from registry.tensors.multi_lora import check_placement

        check_placement(device, dtype)  # BadRequest before a byte of the base is pulled or loaded
        self._own_client = client is None
        if client is None:
            from registry.client import open_client
            from registry.config import Settings

            client = open_client(Settings())
        self.client = client
        self._progress = progress
        self._lru = AdapterLru(max_adapters, max_bytes)
        self._refs = RefResolver(client, alias_ttl_s)
        self._room = threading.Condition(threading.RLock())
        self._tmp = None if work_dir is not None else Path(tempfile.mkdtemp(prefix="adapter-server-"))
        self.work_dir = work_dir or self._tmp or Path()
        try:
            self.base: ServedBase = open_base(client, base, self.work_dir, progress)
            from registry.tensors.multi_lora import MultiLoraModel

            # A tokenizer from elsewhere (a folder, or a registered base, pulled as a base is) for
            # a base folder that holds none.
            tok = None if tokenizer is None else tokenizer_folder(client, tokenizer, self.work_dir, progress)
            self._model: MultiLoraModel = MultiLoraModel(self.base.folder, device, dtype, tok)
            pins = [pinned] if isinstance(pinned, str) else list(pinned)
            self._pinned = frozenset(pins)
            for ref in pins:
                self.load(ref)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ public
    @property
    def fingerprint(self) -> str | None:
        return self.base.fingerprint

    def load(self, ref: str) -> str:
        """Resolve `ref`; refuse, from the version's record and before downloading, what mixed
        batches cannot run (not LoRA, DoRA: NotServable) and an adapter larger than max_bytes alone
        (ServingFull); pull its files through the content-addressed cache; check that it fits the
        base (config and safetensors header; the same codes as push) before any tensor is loaded;
        load it (evicting the least recently used if needed); returns its adapter name."""
        with self._using([ref]) as names:
            return names[0]

    def forward(
        self,
        input_ids: torch.Tensor,
        adapters: Sequence[str | None],
        attention_mask: torch.Tensor | None = None,
    ) -> Any:
        """The model's output for a batch whose row i runs `adapters[i]` (None: the base alone)."""
        self._check_rows(len(input_ids), adapters)
        with self._using(adapters) as names, self._room:
            return self._model.forward(input_ids, names, attention_mask)

    def generate(
        self, prompts: Sequence[str] | Sequence[Sequence[int]], adapters: Sequence[str | None], **kwargs: Any
    ) -> list[Generated]:
        """Generate for every prompt (text, or token ids) in one batch, prompt i with `adapters[i]`;
        `kwargs` go to transformers' generate (max_new_tokens, do_sample, ...)."""
        self._check_rows(len(prompts), adapters)
        rows: Any = [p if isinstance(p, str) else list(p) for p in prompts]
        with self._using(adapters) as names, self._room:
            return self._model.generate(rows, names, **kwargs)

    def stats(self) -> ServingStats:
        with self._room:
            return self._lru.stats()

    def close(self) -> None:
        self.__dict__.pop("_model", None)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        if self._own_client:
            self._own_client = False
            self.client.close()

    def __enter__(self) -> AdapterServer:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ loading
    def _acquire(self, ref: str, held: Counter[str]) -> str:
        """The adapter name of `ref`, loaded and counted as in use by one more call (`held`: what
        the calling call already holds).

        Raises:
            _NoRoomYet: every slot it could take is held by other calls; retry when they end.
        """
        info = self._refs.resolve(ref)
        name = adapter_name(info.digest)
        with self._room:
            if self._lru.use(name) is not None:
                self._pin_if(ref, name)
                return name
        # From the version's record, before a byte is downloaded: what mixed batches cannot run,
        # and an adapter larger than max_bytes on its own.
        label = f"{info.repo}:{info.version}"
        check_runnable(label, info.peft_type, info.use_dora)
        self._lru.check_size(self._model.adapter_bytes_estimate(info.trainable_params), label)
        folder = self.work_dir / "adapters" / f".{name}.{secrets.token_hex(6)}"
        try:
            write_files(self.client, info.files, folder, progress=self._progress)
            # The fit check needs the tensor shapes, in the pulled files (registry.serving.fit says
            # why): run on the config and safetensors header, before any tensor is loaded.
            facts = check_servable(info, folder, self.base.view)
            estimate = self._model.adapter_bytes_estimate(facts.trainable_params)
            with self._room:
                self._load(info, name, folder, estimate, held)
                self._pin_if(ref, name)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return name

    def _load(self, info: VersionInfo, name: str, folder: Path, estimate: int, held: Counter[str]) -> None:
        """Under the lock: make room (least recently used first) and load `folder` as `name`."""
        if self._lru.use(name) is not None:  # another call loaded it meanwhile
            return
        label = f"{info.repo}:{info.version}"
        victims = self._lru.victims(estimate, label)
        if victims is None:
            if self._lru.in_use_by_others(held):
                raise _NoRoomYet(label)
            raise self._lru.full(label)
        for victim in victims:
            self._evict(victim)
        try:
            size = self._model.add(folder, name)
        except BaseException:
            self._model.delete(name)
            raise
        self._lru.add(Entry(name, info.digest, info.repo, info.version, size, users=1))
        for victim in self._lru.over_bytes():  # the estimate was short: trim to the limit
            self._evict(victim)

    def _evict(self, name: str) -> None:
        self._model.delete(name)
        self._lru.drop(name)

    def _pin_if(self, ref: str, name: str) -> None:
        if ref in self._pinned:
            self._lru.pin(name, ref)

    def _release(self, names: Iterable[str]) -> None:
        with self._room:
            for name in names:
                self._lru.release(name)
            self._room.notify_all()

    @contextmanager
    def _using(self, adapters: Sequence[str | None]) -> Iterator[list[str]]:
        """PEFT's adapter name per row, every adapter held (not evictable) until the block ends.

        A call that finds no room while other calls hold the slots lets go of what it holds and
        starts again once one of them ends (holding while waiting would let two calls wait on each
        other for ever), up to `room_wait_s`; then ServingFull.
        """
        from registry.tensors.multi_lora import BASE_ROW

        refs = list(dict.fromkeys(a for a in adapters if a is not None))
        deadline = time.monotonic() + self.room_wait_s
        while True:
            held: Counter[str] = Counter()
            names: dict[str, str] = {}
            try:
                for ref in refs:
                    names[ref] = self._acquire(ref, held)
                    held[names[ref]] += 1
                break
            except _NoRoomYet as err:
                self._release(held.elements())
                with self._room:
                    if time.monotonic() >= deadline:
                        raise self._lru.full(err.label) from None
                    self._room.wait(min(0.05, max(0.0, deadline - time.monotonic())))
            except BaseException:
                self._release(held.elements())
                raise
        try:
            yield [BASE_ROW if a is None else names[a] for a in adapters]
        finally:
            self._release(held.elements())

    @staticmethod
    def _check_rows(rows: int, adapters: Sequence[str | None]) -> None:
        if isinstance(adapters, str) or len(adapters) != rows:
            raise BadRequest(f"adapters must list one reference (or None) per row: {rows} rows")


__all__ = ["AdapterServer", "ServingFull", "adapter_name"]
