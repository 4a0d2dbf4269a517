"""Read a transformers model folder without torch: config facts, safetensors shards, module table,
weights fingerprint and structure signature.

Fingerprint: sha256 over the sorted lines "name<TAB>dtype<TAB>shape<TAB>sha256(tensor bytes)", so a
sharded and an unsharded copy of one model agree and any changed element changes it. Tensors are
hashed from memory-mapped files in a thread pool (hashlib releases the GIL), so memory stays bounded
whatever the model size. Structure signature: sha256 over the sorted "name<TAB>shape" lines, equal
for two models of one architecture and size (a base and its instruct fine-tune).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from registry.bounds import MAX_HEADER_BYTES
from registry.entities import BaseArchitecture
from registry.errors import BadRequest, PickleRefused
from registry.formats.paths import CONVERT_HINT
from registry.formats.safetensors_header import (
    LocatedTensor,
    TensorInfo,
    header_length,
    parse_header,
)
from registry.formats.targets import is_conv1d

HASH_CHUNK = 16 * 1024 * 1024
EMBEDDING_SUFFIXES = (
    "embed_tokens",
    "wte",
    "wpe",
    "word_embeddings",
    "position_embeddings",
    "token_type_embeddings",
    "shared",
    "embed_positions",
)
BASE_EXTRA_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "model.safetensors.index.json",
)


@dataclass(frozen=True)
class ModuleShape:
    """A weight-bearing module of the base, as PEFT sees it: in/out features of a Linear (or the
    vocabulary and dimension of an Embedding)."""

    name: str
    kind: str  # linear | conv1d | embedding | norm
    in_features: int
    out_features: int


class HasModuleShape(Protocol):
    """Anything with a module's four fields: a database row, a ModuleInfo, a ModuleShape."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def in_features(self) -> int: ...
    @property
    def out_features(self) -> int: ...


def modules_by_name(modules: Iterable[HasModuleShape]) -> dict[str, ModuleShape]:
    """The module table by module name (what the fit check looks modules up in), from stored rows
    or from a folder's headers alike."""
    return {x.name: ModuleShape(x.name, x.kind, x.in_features, x.out_features) for x in modules}


@dataclass
class ModelFacts:
    arch: BaseArchitecture
    """From config.json; its param_count is 0 (the weights' count is `param_count`)."""
    config: dict[str, Any]
    modules: list[ModuleShape]
    structure_signature: str
    param_count: int
    fingerprint: str | None = None
    tensor_bytes: int = 0
    files: list[Path] = field(default_factory=list)


def _first(cfg: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if isinstance(cfg.get(k), int | str | list):
            return cfg[k]
    return None


def arch_facts(cfg: dict[str, Any]) -> BaseArchitecture:
    """The architecture facts of a config.json.

    Raises:
        BadRequest: a value the registry cannot record (a negative size, an overlong name).
    """
    # Multimodal configs nest the language model's config.
    nested = cfg.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else cfg
    heads = _first(text, "num_attention_heads", "n_head", "num_heads")
    try:
        return BaseArchitecture(
            architectures=list(cfg.get("architectures") or []),
            model_type=cfg.get("model_type"),
            hidden_size=_first(text, "hidden_size", "n_embd", "d_model", "dim"),
            num_layers=_first(text, "num_hidden_layers", "n_layer", "num_layers", "n_layers"),
            num_heads=heads,
            num_kv_heads=_first(text, "num_key_value_heads") or heads,
            vocab_size=_first(text, "vocab_size"),
            dtype=_first(cfg, "torch_dtype", "dtype"),
        )
    except ValidationError as err:
        raise BadRequest(f"config.json has values the registry cannot record: {err}") from err


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise BadRequest(f"{folder} has no config.json: not a transformers model folder")
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRequest(f"{path} is not valid JSON: {err}") from err
    if not isinstance(doc, dict):
        raise BadRequest(f"{path} must hold a JSON object")
    return doc


def weight_files(folder: Path) -> list[Path]:
    shards = sorted(p for p in folder.glob("*.safetensors") if p.is_file() and not p.is_symlink())
    if not shards:
        pickles = [p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        if pickles:
            raise PickleRefused(f"{folder} has only pickle weights ({', '.join(pickles)}): {CONVERT_HINT}")
        raise BadRequest(f"{folder} has no *.safetensors weights")
    return shards


def read_tensors(path: Path, max_header_bytes: int = MAX_HEADER_BYTES) -> tuple[int, dict[str, TensorInfo]]:
    """(data offset, tensors) of one shard, validated like any pushed safetensors file."""
    size = path.stat().st_size
    with path.open("rb") as f:
        n = header_length(str(path), f.read(8), size, max_header_bytes)
        header = parse_header(str(path), f.read(n), size)
    return header.data_offset, header.tensors


def module_table(
    tensors: dict[str, tuple[str, tuple[int, ...]]], model_type: str | None
) -> list[ModuleShape]:
    """Modules with a 2-D `.weight` (linear, conv1d, embedding) or a 1-D one (norms)."""
    out = []
    for name, (_, shape) in sorted(tensors.items()):
        if not name.endswith(".weight"):
            continue
        module = name.removesuffix(".weight")
        leaf = module.rsplit(".", 1)[-1]
        if len(shape) == 2 and leaf in EMBEDDING_SUFFIXES:
            out.append(ModuleShape(module, "embedding", shape[0], shape[1]))
        elif len(shape) == 2 and is_conv1d(model_type, module):
            out.append(ModuleShape(module, "conv1d", shape[0], shape[1]))
        elif len(shape) == 2:
            out.append(ModuleShape(module, "linear", shape[1], shape[0]))
        elif len(shape) == 1:
            out.append(ModuleShape(module, "norm", shape[0], shape[0]))
    return out


def with_tied_head(modules: list[ModuleShape], cfg: dict[str, Any]) -> list[ModuleShape]:
    """A tied lm_head has no tensor of its own, but PEFT can still target it: add it."""
    names = {m.name for m in modules}
    if "lm_head" in names or not cfg.get("tie_word_embeddings", True):
        return modules
    emb = next(
        (
            m
            for m in modules
            if m.kind == "embedding"
            and m.name.rsplit(".", 1)[-1] in ("embed_tokens", "wte", "word_embeddings", "shared")
        ),
        None,
    )
    if emb is None or not is_causal_lm(cfg):
        return modules
    return [*modules, ModuleShape("lm_head", "linear", emb.out_features, emb.in_features)]


def locate_tensors(shards: list[Path]) -> dict[str, LocatedTensor]:
    """Every tensor of the shards, in file then offset order; a tensor in two shards is refused."""
    located: dict[str, LocatedTensor] = {}
    for shard in shards:
        offset, tensors = read_tensors(shard)
        for name, info in sorted(tensors.items(), key=lambda kv: kv[1].start):
            if name in located:
                raise BadRequest(f"tensor {name} appears in both {located[name].path.name} and {shard.name}")
            located[name] = LocatedTensor(
                name, info.dtype, info.shape, offset + info.start, offset + info.end, path=shard
            )
    return located


def is_causal_lm(cfg: dict[str, Any]) -> bool:
    return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in cfg.get("architectures") or [])


def weights_fingerprint(shapes: dict[str, tuple[str, tuple[int, ...]]], tensor_sha256: dict[str, str]) -> str:
    """sha256 over the sorted "name<TAB>dtype<TAB>shape<TAB>sha256(tensor bytes)" lines."""
    lines = "".join(
        f"{n}\t{shapes[n][0]}\t{list(shapes[n][1])}\t{tensor_sha256[n]}\n" for n in sorted(shapes)
    )
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def structure_signature(tensors: dict[str, tuple[str, tuple[int, ...]]]) -> str:
    lines = "".join(f"{n}\t{list(s)}\n" for n, (_, s) in sorted(tensors.items()))
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def _hash_range(path: Path, start: int, end: int, progress: Callable[[int], None] | None) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        if end > start:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                view = memoryview(mm)
                try:
                    for pos in range(start, end, HASH_CHUNK):
                        stop = min(end, pos + HASH_CHUNK)
                        h.update(view[pos:stop])
                        if progress is not None:
                            progress(stop - pos)
                finally:
                    view.release()
    return h.hexdigest()


def inspect_model(
    folder: Path,
    with_fingerprint: bool = True,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> ModelFacts:
    """Everything the registry records about a base model folder."""
    cfg = read_config(folder)
    arch = arch_facts(cfg)
    shards = weight_files(folder)
    located = locate_tensors(shards)
    shapes = {n: (t.dtype, t.shape) for n, t in located.items()}
    facts = ModelFacts(
        arch=arch,
        config=cfg,
        modules=with_tied_head(module_table(shapes, arch.model_type), cfg),
        structure_signature=structure_signature(shapes),
        param_count=sum(t.numel for t in located.values()),
        tensor_bytes=sum(t.end - t.start for t in located.values()),
        files=shards,
    )
    if with_fingerprint:
        # Largest tensors first so the pool is not left waiting on one big tensor at the end.
        order = sorted(located, key=lambda n: located[n].start - located[n].end)
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
            hashed = pool.map(
                lambda n: _hash_range(located[n].path, located[n].start, located[n].end, progress), order
            )
            digests = dict(zip(order, hashed, strict=True))
        facts.fingerprint = weights_fingerprint(shapes, digests)
    return facts


def extra_files(folder: Path) -> list[Path]:
    """Config, tokenizer and generation files that travel with an uploaded base."""
    return [folder / n for n in BASE_EXTRA_FILES if (folder / n).is_file() and not (folder / n).is_symlink()]
