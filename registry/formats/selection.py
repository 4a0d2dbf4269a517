"""Which files of a local folder make an adapter version: the one rule `adapters push`, the Python
client and the Hub's preupload (`shouldIgnore`) share.

A version is the adapter files, the model card, tokenizer files and JSON metadata. What a
transformers `Trainer` writes beside them (pickled optimizer, scheduler, RNG and argument states,
`checkpoint-*/` folders, tensorboard and wandb logs) is *skipped*: listed, never read, never
uploaded. Anything else goes on to the push checks, which refuse a pickle or a file outside the
allowlist (formats/paths.py) rather than drop it silently. Patterns use gitignore syntax through
`pathspec` (the matcher pip and black use), so `.adaptersignore`, `--exclude` and `--include`
read as a `.gitignore` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from registry.errors import BadRequest, SymlinkRefused
from registry.formats.paths import normalize_path

TRAINER_STATE = "trainer_state.json"
IGNORE_FILE = ".adaptersignore"
"""Read from the top of a pushed folder when present (gitignore syntax); never uploaded."""

TRAINING_ARTEFACTS = (
    "training_args.bin",  # TrainingArguments, pickled by torch.save
    "optimizer.pt",
    "optimizer.bin",
    "scheduler.pt",
    "scaler.pt",
    "rng_state*.pth",
    "pytorch_model_fsdp*.bin",
    "*.tfevents.*",
    "checkpoint-*/",  # each is a version of its own: push DIR/checkpoint-N or --all-checkpoints
    "runs/",  # tensorboard
    "wandb/",
    "mlruns/",
    "lightning_logs/",
)
"""What a Trainer run leaves beside the adapter, in gitignore syntax."""

TOOLING = (".git/", ".gitignore", "__pycache__/", ".ipynb_checkpoints/", ".DS_Store", IGNORE_FILE)
"""Version control and editor/tool state: never part of an adapter."""

_DEFAULT = pathspec.GitIgnoreSpec.from_lines([*TRAINING_ARTEFACTS, *TOOLING])


@dataclass(frozen=True)
class Skipped:
    """A file or folder left out of a push, and why."""

    path: str
    """Relative POSIX path; a folder ends in '/'."""
    reason: str
    files: int = 1
    """How many files a skipped folder held."""


@dataclass
class Selection:
    files: list[tuple[str, Path]] = field(default_factory=list)
    """(relative POSIX path, absolute path), sorted."""
    skipped: list[Skipped] = field(default_factory=list)
    borrowed: dict[str, str] = field(default_factory=dict)
    """path in the version -> the folder's file it is read from (see `select_folder`)."""


def is_training_artefact(path: str) -> bool:
    """Whether a relative path (a Hub upload's, a folder's file) is skipped by default."""
    return _DEFAULT.match_file(path)


@dataclass(frozen=True)
class Rules:
    """The selection: the default skips, then an ignore file, then `exclude`; `include` wins over
    all three (a pickle it takes in is then refused by the push checks, never uploaded)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    ignore_file: Path | None = None
    """Default: FOLDER/.adaptersignore when it exists."""

    def specs(self, root: Path) -> list[tuple[str, pathspec.PathSpec]]:
        out: list[tuple[str, pathspec.PathSpec]] = [("training artefact or tool state", _DEFAULT)]
        ignore = self.ignore_file or root / IGNORE_FILE
        if self.ignore_file is not None or ignore.is_file():
            try:
                lines = ignore.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as err:
                raise BadRequest(f"cannot read the ignore file {ignore}: {err}", path=str(ignore)) from err
            out.append((f"ignored by {ignore.name}", pathspec.GitIgnoreSpec.from_lines(lines)))
        if self.exclude:
            out.append(("--exclude", pathspec.GitIgnoreSpec.from_lines(self.exclude)))
        return out


def select_folder(root: Path, rules: Rules | None = None) -> Selection:
    """The files of `root` that make a version, and what was skipped. A symlink among the selected
    files is refused (copy the file in instead); inside a skipped folder it is never looked at.

    Raises:
        BadRequest: `root` is not a folder, or the ignore file cannot be read.
        SymlinkRefused: a selected file or folder is a symlink.
    """
    rules = rules or Rules()
    if not root.is_dir():
        raise BadRequest(f"{root} is not a directory")
    specs = rules.specs(root)
    include = pathspec.GitIgnoreSpec.from_lines(rules.include) if rules.include else None

    def skipped_by(rel: str) -> str | None:
        if include is not None and include.match_file(rel):
            return None
        return next((why for why, spec in specs if spec.match_file(rel)), None)

    out = Selection()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for d in sorted(dirnames):
            full = here / d
            rel = full.relative_to(root).as_posix() + "/"
            why = skipped_by(rel)
            # A folder is pruned whole unless an --include pattern may take something inside it.
            if why is not None and include is None:
                dirnames.remove(d)
                out.skipped.append(Skipped(rel, why, _count_files(full)))
            elif full.is_symlink():
                dirnames.remove(d)
                if why is None:
                    raise SymlinkRefused(f"{rel.rstrip('/')} is a symlink", path=rel.rstrip("/"))
                out.skipped.append(Skipped(rel, why, 0))
        for name in filenames:
            full = here / name
            rel = full.relative_to(root).as_posix()
            why = skipped_by(rel)
            if why is not None:
                out.skipped.append(Skipped(rel, why))
                continue
            if full.is_symlink():
                raise SymlinkRefused(f"{rel} is a symlink; copy the file into the folder instead", path=rel)
            if not full.is_file():
                raise BadRequest(f"{rel} is not a regular file", path=rel)
            out.files.append((normalize_path(rel), full))
    _borrow_trainer_state(root, out)
    out.files.sort()
    out.skipped.sort(key=lambda s: s.path)
    return out


def _borrow_trainer_state(root: Path, out: Selection) -> None:
    """`trainer.train()` writes trainer_state.json into each checkpoint, not beside the final
    adapter (only `trainer.save_state()` does): when the top has none and checkpoints were skipped,
    the newest checkpoint's is taken as the version's trainer_state.json (its log history covers
    every evaluation up to that step), and said so."""
    if any(rel == TRAINER_STATE for rel, _ in out.files) or root.name.startswith("checkpoint-"):
        return
    skipped = {s.path for s in out.skipped}
    for _, folder in reversed(checkpoint_folders(root)):
        state = folder / TRAINER_STATE
        if f"{folder.name}/" in skipped and state.is_file() and not state.is_symlink():
            out.files.append((TRAINER_STATE, state))
            out.borrowed[TRAINER_STATE] = f"{folder.name}/{TRAINER_STATE}"
            return


def _count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder, followlinks=False))


def checkpoint_folders(root: Path) -> list[tuple[int, Path]]:
    """`checkpoint-N` subfolders of a Trainer output_dir, in step order."""
    found = []
    for child in root.iterdir() if root.is_dir() else ():
        step = child.name.removeprefix("checkpoint-")
        if (
            child.name.startswith("checkpoint-")
            and step.isdigit()
            and child.is_dir()
            and not child.is_symlink()
        ):
            found.append((int(step), child))
    return sorted(found)
