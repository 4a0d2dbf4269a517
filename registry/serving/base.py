"""The base an AdapterServer serves: a model folder, or a registered base pulled from the blob store;
and what the fit check needs to know about it (its module table, its fingerprint)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from registry.client.bases import fingerprint_folder
from registry.client.interface import RegistryClient, TransferProgress
from registry.client.transfer import write_files
from registry.errors import BaseNotUploaded
from registry.formats.compatibility import BaseView
from registry.formats.model_folder import ModelFacts, inspect_model, modules_by_name


@dataclass(frozen=True)
class ServedBase:
    folder: Path
    fingerprint: str | None
    """The weights fingerprint (registry.formats.model_folder), as `adapters base add` records it."""
    view: BaseView


def tokenizer_folder(
    client: RegistryClient, source: str | Path, work_dir: Path, progress: TransferProgress | None = None
) -> Path:
    """Where to take a tokenizer from: a local folder as it is (a tokenizer needs no weights beside
    it), or a registered base, pulled as `open_base` pulls one."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    return open_base(client, source, work_dir, progress).folder


def open_base(
    client: RegistryClient, base: str | Path, work_dir: Path, progress: TransferProgress | None = None
) -> ServedBase:
    """A local model folder (fingerprinted here), or a registered base by name or fingerprint,
    pulled through the client's content-addressed cache into `work_dir` (once per fingerprint).

    Raises:
        NotFound: no such registered base. BaseNotUploaded: registered without its weights.
    """
    path = Path(base).expanduser()
    if path.is_dir():
        facts = fingerprint_folder(path, progress)
        return ServedBase(path, facts.fingerprint, _view(facts, path.resolve().name))
    info = client.get_base(str(base))
    if not info.files:
        raise BaseNotUploaded(
            f"base {base!r} was registered without its files: serve it from a local folder "
            "(AdapterServer(PATH) / --base PATH), or upload it with `adapters base add PATH --upload`",
            base=str(base),
        )
    key = (info.fingerprint or f"base-{info.id}").removeprefix("sha256:")
    folder = work_dir / "bases" / key
    if not folder.is_dir():  # write_files verifies every blob and renames the folder into place
        write_files(client, info.files, folder, progress=progress)
    # The module table from the pulled headers; the fingerprint as registered (the bytes were
    # verified against the digests the registration lists).
    facts = inspect_model(folder, with_fingerprint=False)
    label = info.names[0].name if info.names else key[:12]
    return ServedBase(folder, info.fingerprint, _view(facts, label))


def _view(facts: ModelFacts, label: str) -> BaseView:
    return BaseView(
        label=label,
        arch=facts.arch,
        modules=modules_by_name(facts.modules),
    )
