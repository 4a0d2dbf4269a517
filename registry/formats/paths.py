"""Path rules for files in an adapter folder: relative, NFC, no traversal (in NFKC form too),
allowlisted names."""

from __future__ import annotations

import fnmatch
import unicodedata
from typing import NoReturn

from registry.bounds import text_problem
from registry.errors import FileNotAllowed, PickleRefused, UnsafePath

CONFIG_NAME = "adapter_config.json"

# Accepted files: adapter files, model card, tokenizer files and JSON metadata.
ALLOWED_PATTERNS = (
    "*.safetensors",
    "*.json",
    "README.md",
    "README",
    "*.md",
    "LICENSE",
    "LICENSE.*",
    ".gitattributes",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "vocab.txt",
    "merges.txt",
    "*.jinja",
    "*.tiktoken",
)
SIGNATURE_NAME = "model.sig"
"""model-signing's signature file, accepted at the top of a folder only."""
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
CONVERT_HINT = (
    "pickle files can run arbitrary code when loaded and are never accepted; convert with "
    "`model.save_pretrained(dir, safe_serialization=True)` or "
    "`safetensors.torch.save_file(torch.load(path, weights_only=True), 'adapter_model.safetensors')`"
)


# Device names Windows opens instead of a file, whatever the extension ("nul.txt" is NUL).
WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    | {
        f"{dev}{n}"
        for dev in ("com", "lpt")
        for n in ("1", "2", "3", "4", "5", "6", "7", "8", "9", "¹", "²", "³")
    }
)


def normalize_path(raw: str) -> str:
    """Return the NFC form of a safe relative POSIX path, or raise UnsafePath.

    Safe means: the same file on every client OS. No controls, bidi or zero-width characters;
    no component Windows would read as a drive, stream, device or a name with trailing dots or
    spaces stripped; nothing git would treat as its own directory. And the same holds for its
    NFKC form: a tool that applies compatibility normalisation (an NFKC-folding filesystem, a
    path sanitiser, a search index) must not read `．．` as `..`, `／` as `/` or `ＣＯＮ` as a device."""
    path = _checked(raw)
    compat = unicodedata.normalize("NFKC", raw)
    why = _compat_problem(path, compat) if compat != path else None
    if why is not None:
        raise UnsafePath(
            f"path {raw!r} reads as {compat!r} after compatibility normalisation (NFKC), "
            f"which is refused: {why}",
            path=raw,
        )
    return path


def _compat_problem(path: str, compat: str) -> str | None:
    """Why `compat`, the NFKC form of the safe `path`, is not safe, or None."""
    try:
        _checked(compat)
    except UnsafePath as err:
        return err.message
    if compat.count("/") != path.count("/"):
        return "a component of it would become a folder"
    return None


def path_key(path: str) -> str:
    """The key two paths of one push may not share: equal for names that differ only in case or
    compatibility form (`README.md`, `readme.md`, `ＲＥＡＤＭＥ.md`), which some filesystems fold."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", path).casefold())


def _checked(raw: str) -> str:
    """The NFC form of `raw` if it is a safe path, else UnsafePath."""
    if not raw or len(raw) > 512:
        raise UnsafePath(f"path {raw!r} is empty or longer than 512 characters", path=raw)
    why = text_problem(raw, single_line=True)
    if why is not None:
        raise UnsafePath(f"path {raw!r} {why}", path=raw)
    fmt = next((c for c in raw if unicodedata.category(c) == "Cf"), None)
    if fmt is not None:  # the rest of the invisible format characters (HFS+ ignores them in names)
        raise UnsafePath(f"path {raw!r} contains the invisible format character U+{ord(fmt):04X}", path=raw)
    if "\\" in raw:
        raise UnsafePath(f"path {raw!r} contains a backslash (Windows or UNC path)", path=raw)
    if raw.startswith("/"):
        raise UnsafePath(f"path {raw!r} is absolute", path=raw)
    if len(raw) >= 2 and raw[1] == ":" and raw[0].isalpha():
        raise UnsafePath(f"path {raw!r} names a drive", path=raw)
    path = unicodedata.normalize("NFC", raw)
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafePath(f"path {raw!r} has an empty, '.' or '..' component", path=raw)
    for part in parts:
        _check_component(raw, part)
    return path


def _check_component(raw: str, part: str) -> None:
    def refuse(why: str) -> NoReturn:
        raise UnsafePath(f"path {raw!r}: component {part!r} {why}", path=raw)

    if ":" in part:
        refuse("contains ':' (a Windows drive letter or NTFS alternate data stream)")
    if part.endswith((".", " ")):
        refuse("ends in a dot or a space, which Windows strips (it would name another file)")
    folded = part.casefold()
    if folded in (".git", "git~1"):  # git~1: the 8.3 short name of .git on Windows
        refuse("is git's own directory: written into a clone it would plant git config and hooks")
    if folded.split(".", 1)[0].rstrip(" ") in WINDOWS_DEVICES:
        refuse("is a Windows device name (CON, PRN, AUX, NUL, COM1-9, LPT1-9), with or without an extension")


def check_allowed(path: str) -> None:
    """Refuse pickles by extension and anything outside the allowlist."""
    if path == SIGNATURE_NAME:
        return  # a model-signing signature, checked against the files (formats/signing.py)
    name = path.rsplit("/", 1)[-1]
    if name.lower().endswith(PICKLE_SUFFIXES):
        raise PickleRefused(f"{path}: {CONVERT_HINT}", path=path)
    if not any(fnmatch.fnmatchcase(name, pat) for pat in ALLOWED_PATTERNS):
        raise FileNotAllowed(
            f"{path}: only adapter files (*.safetensors, adapter_config.json), README/model card, "
            "tokenizer files and JSON metadata are accepted",
            path=path,
        )


def looks_like_pickle(head: bytes) -> bool:
    """Recognise pickles and torch/zip containers by their first bytes, whatever the name."""
    if head[:4] == b"PK\x03\x04" or head[:4] == b"PK\x05\x06":
        return True  # zip: torch.save's default container, .npz, joblib archives
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True  # pickle protocol 2-5 opcode PROTO
    if head[:6] == b"\x93NUMPY":
        return True  # .npy may embed pickled objects
    return False


def check_not_pickle(path: str, head: bytes) -> None:
    if looks_like_pickle(head):
        raise PickleRefused(f"{path} is a pickle or zip container: {CONVERT_HINT}", path=path)
