"""Client side of base models: fingerprint a local folder, upload it, register it."""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.client.interface import RegistryClient, TransferProgress
from registry.client.transfer import upload_missing
from registry.entities import BaseInfo, BaseNameInfo, BaseRegistration, FileInfo, ModuleInfo
from registry.errors import BadRequest, Forbidden, NotFound, UnknownBase
from registry.formats.folder import hash_folder
from registry.formats.model_folder import (
    ModelFacts,
    ModuleShape,
    arch_facts,
    extra_files,
    inspect_model,
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
        modules=[ModuleInfo.model_validate(x, from_attributes=True) for x in facts.modules],
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
    return [FileInfo.model_validate(e) for e in entries]


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
    from registry.tensors.meta_shapes import meta_shapes  # torch and transformers, for this command only

    shapes = meta_shapes(cfg)
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


def resolve_push_base(
    client: RegistryClient, base: str | None, progress: TransferProgress | None
) -> str | None:
    """What `push --base` and `fit` send for `base`: a registered name or fingerprint as it is, a
    model folder (see `choose_base`) as the fingerprint of a base of its weights (`link_folder`).

    Raises:
        UnknownBase: neither a base the caller may read nor a model folder.
        Forbidden: see `link_folder`.
    """
    if base is None:
        return None
    choice = choose_base(client, base)
    return link_folder(client, choice.folder, progress) if choice.folder else base


def link_folder(client: RegistryClient, folder: Path, progress: TransferProgress | None) -> str:
    """Fingerprint a model folder on the fly and name a base of these weights the caller may read
    by its fingerprint (the server prefers its own); when there is none, a global admin registers
    one without a name, anyone else is told how to register it under a name of theirs.

    Raises:
        Forbidden: no base the caller may read has these weights, and it may not register
            nameless bases (the same answer whoever else registered them).
    """
    facts = fingerprint_folder(folder, progress)
    if facts.fingerprint is not None:
        try:
            found = client.get_base(facts.fingerprint).fingerprint
        except NotFound:
            found = None
        if found is not None:
            return found
    try:
        fingerprint = client.register_base(registration(facts, [], None)).fingerprint
    except Forbidden as err:
        raise Forbidden(
            f"no base you may read has the weights in {folder}: register them under a name of yours "
            f"first: adapters base add {folder} --name <namespace>/<name>",
            action="write",
        ) from err
    assert fingerprint is not None  # a folder's weights always have one
    return fingerprint


# ---- which base a user meant: a registered name wins over a folder of the same name
def written_as_path(text: str) -> bool:
    """`./name`, `../name`, `~/name`, an absolute path: a folder, never a base name (base names
    are `name` or `namespace/name`)."""
    return (
        text in (".", "..") or text.startswith(("./", "../", "~", ".\\", "..\\")) or Path(text).is_absolute()
    )


@dataclass(frozen=True)
class BaseChoice:
    """What a base argument named: a registered base (`folder` None) or a model folder."""

    text: str
    folder: Path | None
    note: str
    """Which was used, in words (the CLI prints it)."""


def choose_base(client: RegistryClient, text: str) -> BaseChoice:
    """The one rule for a base given by a user (push --base, fit, export, check-4bit): a base the
    caller may read under that name or fingerprint wins over a folder of the same name in the
    current directory; a folder is taken when written as a path (`./name`, absolute) or when no
    base has that name.

    Raises:
        UnknownBase: a path that is no folder, or a name that is neither a readable base nor a
            folder (with the close names the caller may read as suggestions).
    """
    folder = Path(text).expanduser()
    if written_as_path(text):
        if not folder.is_dir():
            raise UnknownBase(f"{text}: no such model folder", base=text)
        return BaseChoice(text, folder, f"the model folder {folder.resolve()}")
    try:
        client.get_base(text)
    except NotFound as err:
        if folder.is_dir():
            return BaseChoice(text, folder, f"the model folder ./{text} (no registered base has that name)")
        raise unknown_base(client, text) from err
    shadow = f" (not the folder ./{text}: write ./{text} to use it)" if folder.is_dir() else ""
    return BaseChoice(text, None, f"the registered base {text}{shadow}")


def unknown_base(client: RegistryClient, text: str) -> UnknownBase:
    """An UnknownBase for `text`, suggesting the close names the caller may read (difflib)."""
    names = sorted({n.name for b in client.list_bases() for n in b.names})
    close = difflib.get_close_matches(text, names, n=3, cutoff=0.6)
    if text.startswith("sha256:"):
        what = f"no registered base you may read has the fingerprint {text}"
    else:
        what = f"no registered base you may read is named {text!r}"
    hint = f"; did you mean {' or '.join(close)}? Or register" if close else "; register"
    return UnknownBase(
        f"{what}{hint} it with `adapters base add FOLDER --name NAME`, or pass the model folder (./FOLDER)",
        base=text,
        suggestions=close,
    )


@dataclass(frozen=True)
class PushBase:
    """What a push sends as its base, and the line that says which base that is, or why the
    version will not be linked and how to link it."""

    value: str | None
    note: str | None


def push_base(
    client: RegistryClient, base: str | None, folder: Path, progress: TransferProgress | None = None
) -> PushBase:
    """The base of a push of `folder`. With `base` (push --base): `choose_base`'s rule, a folder
    linked by fingerprint. Without: adapter_config.json's base_model_name_or_path (the folder's, else
    its newest checkpoint's). PEFT writes the absolute path of a local base there: a folder on this
    machine is fingerprinted and linked as --base FOLDER would; a path that is not here, or a name
    no readable base has, leaves the version unlinked, and the note says how to link it.

    Raises:
        UnknownBase: `base` names neither a readable base nor a model folder.
        Forbidden: see `link_folder`.
    """
    if base is not None:
        choice = choose_base(client, base)
        if choice.folder is None:
            return PushBase(base, f"{choice.note}")
        fingerprint = link_folder(client, choice.folder, progress)
        return PushBase(fingerprint, f"{choice.note}, linked by fingerprint {fingerprint}")
    named = configured_base(folder)
    if named is None:
        return PushBase(None, "not linked to a base: adapter_config.json names none; pass --base NAME|FOLDER")
    try:
        choice = choose_base(client, named)
    except UnknownBase as err:
        how = "pass --base NAME (a registered base) or --base FOLDER (the model folder)"
        if written_as_path(named):
            why = f"adapter_config.json names the folder {named}, which is not on this machine"
        else:
            close = f" (close: {', '.join(err.suggestions)})" if err.suggestions else ""
            why = f"no registered base you may read is named {named!r}{close}"
        return PushBase(None, f"not linked: {why}; {how}")
    if choice.folder is None:
        return PushBase(None, f"{choice.note} (from adapter_config.json)")
    fingerprint = link_folder(client, choice.folder, progress)
    return PushBase(
        fingerprint, f"{choice.note} (from adapter_config.json), linked by fingerprint {fingerprint}"
    )


def configured_base(folder: Path) -> str | None:
    """adapter_config.json's base_model_name_or_path in `folder`, else in its newest checkpoint-N."""
    from registry.formats.selection import checkpoint_folders

    candidates = [folder / "adapter_config.json"]
    candidates += [c / "adapter_config.json" for _, c in reversed(checkpoint_folders(folder))]
    for path in candidates:
        if path.is_file():
            try:
                doc = json.loads(path.read_text("utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                return None  # the push itself says what is wrong with it
            value = doc.get("base_model_name_or_path") if isinstance(doc, dict) else None
            return value if isinstance(value, str) and value.strip() else None
    return None


def job_base_params(
    client: RegistryClient, base: str, progress: TransferProgress | None = None
) -> dict[str, Any]:
    """A job's base (export, check-4bit) by `choose_base`'s rule. A model folder stays where it is
    when the registry runs in this process (its workers read this disk); a server's workers cannot,
    so the folder is uploaded and named by fingerprint."""
    choice = choose_base(client, base)
    if choice.folder is None:
        return {"base": base}
    if client.in_process:
        return {"base": str(choice.folder.resolve()), "base_path": str(choice.folder.resolve())}
    info = add_base_folder(client, choice.folder, names=[], upload=True, progress=progress)
    assert info.fingerprint is not None
    return {"base": info.fingerprint}
