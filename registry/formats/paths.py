"""Path rules for files in an adapter folder: relative, NFC, no traversal, allowlisted names."""

from __future__ import annotations

import fnmatch
import unicodedata

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
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
CONVERT_HINT = (
    "pickle files can run arbitrary code when loaded and are never accepted; convert with "
    "`model.save_pretrained(dir, safe_serialization=True)` or "
    "`safetensors.torch.save_file(torch.load(path, weights_only=True), 'adapter_model.safetensors')`"
)


def normalize_path(raw: str) -> str:
    """Return the NFC form of a safe relative POSIX path, or raise UnsafePath."""
    if not raw or len(raw) > 512:
        raise UnsafePath(f"path {raw!r} is empty or longer than 512 characters", path=raw)
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise UnsafePath(f"path {raw!r} contains control characters", path=raw)
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
    return path


def check_allowed(path: str) -> None:
    """Refuse pickles by extension and anything outside the allowlist."""
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
