"""Client side of base models: fingerprint a local folder, upload it, register it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from registry.client.interface import RegistryClient, TransferProgress
from registry.client.transfer import upload_missing
from registry.entities import BaseInfo, BaseNameInfo, BaseRegistration, FileInfo, ModuleInfo
from registry.errors import BadRequest, Forbidden, NotFound
from registry.formats.folder import hash_folder
from registry.formats.model_folder import (
    ModelFacts,
    ModuleShape,
    arch_facts,
    extra_files,
    inspect_model,
    is_causal_lm,
    module_table,
    structure_signature,
    with_tied_head,
)


def registration(facts: ModelFacts, names: list[str], revision: str | None) -> BaseRegistration:
    return BaseRegistration(
        **facts.arch.model_copy(update={"param_count": facts.param_count}).model_dump(),
        names=[BaseNameInfo(name=n, revision=revision) for n in names],
        fingerprint=facts.fingerprint,
        structure_signature=facts.structure_signature,
        config=facts.config,
        modules=[
            ModuleInfo(name=x.name, kind=x.kind, in_features=x.in_features, out_features=x.out_features)
            for x in facts.modules
        ],
    )


def fingerprint_folder(folder: Path, progress: TransferProgress | None = None) -> ModelFacts:
    facts = inspect_model(folder, with_fingerprint=False)
    if progress:
        progress.start("fingerprinting", facts.tensor_bytes)
    try:
        return inspect_model(folder, progress=progress.advance if progress else None)
    finally:
        if progress:
            progress.finish()


def add_base_folder(
    client: RegistryClient,
    folder: Path,
    names: list[str],
    revision: str | None = None,
    upload: bool = False,
    progress: TransferProgress | None = None,
) -> BaseInfo:
    """Fingerprint a transformers model folder and register it (uploading its files with `upload`)."""
    facts = fingerprint_folder(folder, progress)
    data = registration(facts, names, revision)
    if upload:
        data.files = _upload(client, [*facts.files, *extra_files(folder)], folder, progress)
    return client.register_base(data)


def _upload(
    client: RegistryClient, paths: list[Path], root: Path, progress: TransferProgress | None
) -> list[FileInfo]:
    files = [(p.relative_to(root).as_posix(), p) for p in sorted(set(paths))]
    entries = hash_folder(files)
    upload_missing(client, entries, dict(files), progress)
    return [FileInfo(path=e.path, size=e.size, sha256=e.sha256) for e in entries]


def add_base_config(
    client: RegistryClient, config_path: Path, names: list[str], revision: str | None = None
) -> BaseInfo:
    """Register a base from config.json alone: structure and module table, no fingerprint.

    The module table comes from instantiating the architecture on torch's meta device (no memory,
    no weights), keeping the tensors save_pretrained would write (tied weights once).
    """
    try:
        cfg: dict[str, Any] = json.loads(config_path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRequest(f"cannot read {config_path}: {err}") from err
    shapes = _meta_shapes(cfg)
    arch = arch_facts(cfg)
    modules: list[ModuleShape] = with_tied_head(module_table(shapes, arch.model_type), cfg)
    facts = ModelFacts(
        arch=arch,
        config=cfg,
        modules=modules,
        structure_signature=structure_signature(shapes),
        param_count=sum(math.prod(s) for _, s in shapes.values()),
    )
    return client.register_base(registration(facts, names, revision))


def _meta_shapes(cfg: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    config = AutoConfig.for_model(**cfg)
    auto = AutoModelForCausalLM if is_causal_lm(cfg) else AutoModel
    with torch.device("meta"):
        model = auto.from_config(config)
    state = model.state_dict()
    kept = {name for name, _ in model.named_parameters()}  # remove_duplicate: tied weights once
    kept |= {name for name, _ in model.named_buffers() if name in state}
    from registry.tensors.safetensors_stream import TORCH_TO_ST

    return {n: (TORCH_TO_ST.get(t.dtype, "F32"), tuple(t.shape)) for n, t in state.items() if n in kept}


def resolve_push_base(
    client: RegistryClient, base: str | None, progress: TransferProgress | None
) -> str | None:
    """`push --base PATH` (and `fit PATH`): fingerprint the folder on the fly and link by
    fingerprint, to a base of these weights the caller may read (the server prefers its own);
    when there is none, a global admin registers one without a name, anyone else is told how to
    register it under a name of theirs.

    Raises:
        Forbidden: no base the caller may read has these weights, and it may not register
            nameless bases (the same answer whoever else registered them).
    """
    if base is None or not Path(base).is_dir():
        return base
    facts = fingerprint_folder(Path(base), progress)
    if facts.fingerprint is not None:
        try:
            return client.get_base(facts.fingerprint).fingerprint
        except NotFound:
            pass
    try:
        return client.register_base(registration(facts, [], None)).fingerprint
    except Forbidden as err:
        raise Forbidden(
            f"no base you may read has the weights in {base}: register them under a name of yours "
            f"first: adapters base add {base} --name <namespace>/<name>",
            action="write",
        ) from err
