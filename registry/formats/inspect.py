"""Validate a set of adapter files and extract the facts a version records.

The same code runs on the client (reading a local folder) and on the server (reading stored blobs):
only the `ReadRange` callable differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from registry.bounds import ADAPTER_HEADER_BYTES, ADAPTER_TENSORS_MAX, loads_strict
from registry.errors import (
    InvalidAdapter,
    MissingAdapterConfig,
    MissingWeights,
    PickleRefused,
    PushTooLarge,
    UnsafePath,
)
from registry.formats.manifest import FileEntry
from registry.formats.paths import (
    CONFIG_NAME,
    CONVERT_HINT,
    check_allowed,
    check_not_pickle,
    normalize_path,
    path_key,
)
from registry.formats.peft_config import PeftConfigFacts, parse_config
from registry.formats.pickle_scan import pickle_imports
from registry.formats.safetensors_header import SafetensorsHeader, TensorInfo, header_length, parse_header
from registry.formats.weights import LoraModule, check_lora_tensors

ReadRange = Callable[[FileEntry, int, int], bytes]
"""read(entry, start, length) -> bytes"""

WEIGHTS_NAME = "adapter_model.safetensors"
MAX_JSON_FILE_BYTES = 64 * 1024**2
"""JSON files other than the config (tokenizer.json: Gemma's is 33 MB) are parsed to prove they
are JSON, not stored in the database: a cap of their own, above ADAPTERS_MAX_JSON_BYTES."""


@dataclass(frozen=True)
class Limits:
    max_total_bytes: int
    max_header_bytes: int
    max_json_bytes: int


@dataclass(frozen=True)
class AdapterFacts:
    config: PeftConfigFacts
    trainable_params: int
    adapter_bytes: int
    total_bytes: int
    tensor_count: int
    lora_modules: list[LoraModule] = field(default_factory=list)
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    """The header of adapter_model.safetensors: names, dtypes, shapes."""


def inspect_files(files: list[FileEntry], read: ReadRange, limits: Limits) -> AdapterFacts:
    """Run every push check, cheapest first. The file-level refusals (names, allowlist, pickles,
    JSON that does not parse, a missing config or weights file) are collected and raised together
    (`refuse_all`); the checks that need the config and weights then raise the first they find."""
    problems: list[InvalidAdapter] = []
    seen: set[str] = set()
    named: list[FileEntry] = []
    for entry in files:
        try:
            normal = normalize_path(entry.path)
            if normal != entry.path:
                raise UnsafePath(f"path {entry.path!r} is not in NFC form", path=entry.path)
            key = path_key(normal)
            if key in seen:
                raise UnsafePath(
                    f"path {entry.path!r} appears twice (ignoring case and compatibility forms)",
                    path=entry.path,
                )
            seen.add(key)
            check_allowed(normal)
        except InvalidAdapter as err:
            problems.append(err)
        else:
            named.append(entry)
    total = sum(f.size for f in files)
    if total > limits.max_total_bytes:  # refused before any file is read
        problems.append(
            PushTooLarge(
                f"adapter is {total} bytes; the limit is {limits.max_total_bytes} (ADAPTERS_MAX_PUSH_BYTES)",
                size=total,
                limit=limits.max_total_bytes,
            )
        )
        refuse_all(problems)
    for entry in named:  # a file refused by its name is not read
        try:
            check_file_content(entry, read, limits)
        except InvalidAdapter as err:
            problems.append(err)
    by_path = {f.path: f for f in files}
    if CONFIG_NAME not in by_path:
        problems.append(MissingAdapterConfig(f"no {CONFIG_NAME} at the top of the adapter folder"))
    if WEIGHTS_NAME not in by_path:
        problems.append(
            MissingWeights(
                f"no {WEIGHTS_NAME}; save the adapter with `save_pretrained(dir)` "
                "(safetensors is PEFT's default)"
            )
        )
    refuse_all(problems)
    cfg_entry = by_path[CONFIG_NAME]
    config = parse_config(CONFIG_NAME, read_json_bytes(cfg_entry, read, limits.max_json_bytes))
    headers = {
        f.path: read_header(f, read, limits.max_header_bytes)
        for f in files
        if f.path.endswith(".safetensors")
    }
    weights = headers[WEIGHTS_NAME]
    modules = check_lora_tensors(WEIGHTS_NAME, config, weights.tensors)
    return AdapterFacts(
        config=config,
        trainable_params=sum(t.numel for t in weights.tensors.values()),
        adapter_bytes=sum(t.end - t.start for t in weights.tensors.values()),
        total_bytes=total,
        tensor_count=len(weights.tensors),
        lora_modules=modules,
        tensors=weights.tensors,
    )


def check_file_content(entry: FileEntry, read: ReadRange, limits: Limits) -> None:
    """The checks of one file's bytes: no pickle (by magic or by stream), JSON metadata parses."""
    check_not_pickle(entry.path, read(entry, 0, 8) if entry.size else b"")
    if not entry.path.endswith(".safetensors"):
        check_no_pickle_stream(entry, read)
    if entry.path.endswith(".json") and entry.path != CONFIG_NAME:
        raw = read_json_bytes(entry, read, max(limits.max_json_bytes, MAX_JSON_FILE_BYTES))
        loads_strict(raw, entry.path, InvalidAdapter, max_depth=64, storable=False)


def refuse_all(problems: list[InvalidAdapter]) -> None:
    """Raise nothing, the one refusal, or every refusal in one error: the first one's class (so
    its code), path and fields, the message listing them all, `problems` holding each."""
    if not problems:
        return
    if len(problems) == 1:
        raise problems[0]
    first = problems[0]
    lines = "; ".join(f"[{p.code}] {p.message}" for p in problems)
    raise type(first)(
        f"{len(problems)} problems, all refused: {lines}",
        **{
            **first.fields,
            "problems": [
                {"code": p.code, "path": p.fields.get("path"), "message": p.message} for p in problems
            ],
        },
    )


def check_no_pickle_stream(entry: FileEntry, read: ReadRange) -> None:
    """Refuse a file that is a pickle without magic bytes (protocol 0/1) and imports a name."""
    found = pickle_imports(lambda start, n: read(entry, start, n), entry.size)
    if found is not None:
        raise PickleRefused(
            f"{entry.path} is a pickle stream that imports code when loaded ({found}): {CONVERT_HINT}",
            path=entry.path,
        )


def read_json_bytes(entry: FileEntry, read: ReadRange, max_json_bytes: int) -> bytes:
    if entry.size > max_json_bytes:
        raise PushTooLarge(
            f"{entry.path} is larger than {max_json_bytes} bytes (ADAPTERS_MAX_JSON_BYTES)",
            path=entry.path,
            size=entry.size,
            limit=max_json_bytes,
        )
    return read(entry, 0, entry.size)


def read_header(entry: FileEntry, read: ReadRange, max_header_bytes: int) -> SafetensorsHeader:
    n = header_length(entry.path, read(entry, 0, 8), entry.size, min(max_header_bytes, ADAPTER_HEADER_BYTES))
    return parse_header(entry.path, read(entry, 8, n), entry.size, ADAPTER_TENSORS_MAX)
