"""Hostile names, paths and file contents are refused at the root (the formats layer, which the
client and the server share), and a refused push stores nothing.

Pickles here are built with pickle.dumps and never loaded.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from registry.access.principal import OPERATOR
from registry.entities import FileInfo, PushRequest
from registry.errors import InvalidAdapter, InvalidReference
from registry.formats.folder import hash_folder, list_folder, local_reader
from registry.formats.inspect import MAX_JSON_FILE_BYTES, Limits, inspect_files
from registry.formats.manifest import FileEntry
from registry.formats.paths import normalize_path
from registry.formats.pickle_scan import pickle_imports
from registry.refs import check_alias, parse_ref, parse_repo
from registry.services.context import Registry
from registry.services.versions import commit_version
from storage import InvalidDigest, check_digest, sha256_file
from storage.base import DIGEST_RE
from tests.formats.test_refusals import count_rows, upload_folder

LIMITS = Limits(max_total_bytes=1 << 30, max_header_bytes=1 << 20, max_json_bytes=1 << 20)
DIGEST = "sha256:" + "ab" * 32


def inspect_folder(folder: Path, extra: list[FileEntry] | None = None) -> None:
    """The client-side check of a local folder (what push runs before uploading)."""
    files = list_folder(folder)
    inspect_files(hash_folder(files) + (extra or []), local_reader(files), LIMITS)


def refusal(check: Callable[[], object]) -> InvalidAdapter:
    with pytest.raises(InvalidAdapter) as info:
        check()
    return info.value


# ---------------------------------------------------------------- names and digests
@pytest.mark.parametrize(
    "check",
    [
        lambda: parse_repo("acme/ok\n"),
        lambda: parse_repo("acme\n/ok"),
        lambda: parse_ref("acme/ok\n"),
        lambda: parse_ref("acme\n/ok:3"),
        lambda: parse_ref("acme/ok:3\n"),
        lambda: parse_ref("acme/ok@prod\n"),
        lambda: parse_ref(f"acme/ok@{DIGEST}\n"),
        lambda: check_alias("prod\n"),
    ],
    ids=["repo", "namespace", "ref", "ref-namespace", "version", "alias-ref", "digest-ref", "alias"],
)
def test_names_with_a_trailing_newline_are_refused(check: Callable[[], object]) -> None:
    with pytest.raises(InvalidReference):
        check()


def test_digests_with_a_trailing_newline_are_refused() -> None:
    assert check_digest(DIGEST) == DIGEST
    for bad in (DIGEST + "\n", "\n" + DIGEST, DIGEST + "\r"):
        with pytest.raises(InvalidDigest):
            check_digest(bad)
        assert DIGEST_RE.match(bad) is None and DIGEST_RE.fullmatch(bad) is None
    assert parse_repo("acme/ok").name == "ok" and check_alias("prod") == "prod"
    assert parse_ref(f"acme/ok@{DIGEST}").digest == DIGEST


# ---------------------------------------------------------------- paths
UNSAFE_PATHS = {
    "C1 control": "notes\x85.json",
    "C1 CSI": "a/\x9b31m.json",
    "bidi override": "evil\u202enosj.md",
    "bidi isolate": "a\u2066b.json",
    "zero-width space": "adapter_config\u200b.json",
    "zero-width joiner": "READ\u200dME.md",
    "BOM": "\ufeffREADME.md",
    "invisible format char": "a\u206ab.json",
    ".git dir": ".git/config.json",
    ".GIT dir": "sub/.GIT/hooks.json",
    "git short name": "GIT~1/config.json",
    "CON": "CON",
    "nul.txt": "nul.txt",
    "con.json": "sub/con.json",
    "COM1": "com1.json",
    "LPT9": "x/LPT9.md",
    "AUX with two extensions": "aux.tar.json",
    "drive in a component": "a/C:/x.json",
    "alternate data stream": "notes.json:hidden",
    "stream on a directory": "dir::$INDEX_ALLOCATION/x.json",
    "trailing dot": "README.md.",
    "trailing space": "notes.json ",
    "directory with trailing dot": "dir./x.json",
    "directory with trailing space": "dir /x.json",
}


@pytest.mark.parametrize("path", list(UNSAFE_PATHS.values()), ids=list(UNSAFE_PATHS))
def test_unsafe_paths_refused(path: str, lora_a: Path) -> None:
    cfg = sha256_file(str(lora_a / "adapter_config.json"))
    err = refusal(lambda: inspect_folder(lora_a, [FileEntry(path, cfg.size, cfg.digest)]))
    assert err.code == "unsafe_path", err
    assert repr(path) in err.message


@pytest.mark.parametrize("path", list(UNSAFE_PATHS.values())[:3] + [".git/config.json", "nul.json"])
def test_server_refuses_unsafe_paths_and_stores_no_version(
    path: str, lora_a: Path, registry: Registry
) -> None:
    files = upload_folder(registry, lora_a)
    cfg = next(f for f in files if f.path == "adapter_config.json")
    files.append(FileInfo(path=path, size=cfg.size, sha256=cfg.sha256))
    err = refusal(
        lambda: commit_version(registry, "acme/bad", PushRequest(files=files), "tester", principal=OPERATOR)
    )
    assert err.code == "unsafe_path"
    assert count_rows(registry)[:2] == (0, 0)


@pytest.mark.parametrize(
    "path",
    [
        "README.md",
        "sub/notes.md",
        ".gitattributes",
        "tokenizer/special_tokens_map.json",
        "café.json",
        "модель.md",
        "con_notes.md",
        "nullable.json",
        "com10.json",
        "a.b.json",
        ".github.md",
    ],
)
def test_ordinary_paths_accepted(path: str) -> None:
    assert normalize_path(path) == path


# Paths safe as given that NFKC (compatibility normalisation) turns into unsafe ones.
NFKC_UNSAFE_PATHS = {
    "fullwidth dots": "\uff0e\uff0e/adapter_config.json",
    "fullwidth dots inside": "a/\uff0e\uff0e/b.json",
    "two dot leader": "\u2025/x.json",
    "one dot leader": "a/\u2024/x.json",
    "small full stop": "\ufe52\ufe52/x.json",
    "fullwidth solidus": "..\uff0fx.json",
    "fullwidth solidus, absolute": "\uff0fetc/x.json",
    "fullwidth solidus in a name": "a\uff0fb.json",
    "fullwidth reverse solidus": "a\uff3cb.json",
    "fullwidth colon stream": "notes.json\uff1ahidden",
    "fullwidth device": "\uff23\uff2f\uff2e.json",
    "fullwidth .git": ".\uff47\uff49\uff54/config.json",
    "ellipsis at the end": "README.md\u2026",
}


@pytest.mark.parametrize("path", list(NFKC_UNSAFE_PATHS.values()), ids=list(NFKC_UNSAFE_PATHS))
def test_paths_unsafe_after_nfkc_refused(path: str, lora_a: Path, registry: Registry) -> None:
    """Refused by the client's check and by the server's commit (which stores no version)."""
    cfg = sha256_file(str(lora_a / "adapter_config.json"))
    err = refusal(lambda: inspect_folder(lora_a, [FileEntry(path, cfg.size, cfg.digest)]))
    assert err.code == "unsafe_path", err
    assert repr(path) in err.message and "NFKC" in err.message
    files = upload_folder(registry, lora_a)
    files.append(FileInfo(path=path, size=cfg.size, sha256=cfg.digest))
    err = refusal(
        lambda: commit_version(registry, "acme/bad", PushRequest(files=files), "tester", principal=OPERATOR)
    )
    assert err.code == "unsafe_path"
    assert count_rows(registry)[:2] == (0, 0)


@pytest.mark.parametrize("path", ["\uff0e\uff0e/config.json", "a\uff0fb.json"])
def test_base_files_unsafe_after_nfkc_refused(path: str, registry: Registry) -> None:
    from registry.entities import BaseRegistration
    from registry.services.bases import register_base

    data = BaseRegistration(
        names=[{"name": "acme/base"}],  # type: ignore[list-item]
        structure_signature="sha256:" + "1" * 64,
        modules=[],
        files=[FileInfo(path=path, size=2, sha256=DIGEST)],
    )
    assert refusal(lambda: register_base(registry, data, principal=OPERATOR)).code == "unsafe_path"


def test_paths_equal_after_case_and_nfkc_folding_are_one_path(lora_a: Path) -> None:
    (lora_a / "README.md").write_text("# one\n")
    readme = sha256_file(str(lora_a / "README.md"))
    err = refusal(lambda: inspect_folder(lora_a, [FileEntry("\uff32EADME.md", readme.size, readme.digest)]))
    assert err.code == "unsafe_path" and "appears twice" in err.message


@pytest.mark.parametrize(
    "path", ["\uff4e\uff4f\uff54\uff45\uff53.md", "\u65e5\u672c\uff08\u30e1\u30e2\uff09.md", "ﬁnal.md"]
)
def test_compatibility_characters_that_stay_safe_are_accepted(path: str) -> None:
    """Fullwidth letters and brackets (ordinary in Japanese names) and ligatures are not refused
    for themselves: only what their NFKC form would make unsafe is."""
    assert normalize_path(path) == path


# ---------------------------------------------------------------- pickles without magic bytes
class RunsCode:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo owned",))


PICKLE_NAMES = ["special_tokens_map.json", "tokenizer.model", "README.md"]


@pytest.mark.parametrize("protocol", [0, 1])
@pytest.mark.parametrize("name", PICKLE_NAMES)
def test_protocol_0_and_1_pickles_refused(name: str, protocol: int, lora_a: Path) -> None:
    payload = pickle.dumps(RunsCode(), protocol=protocol)
    assert payload[:1] != b"\x80"  # no PROTO opcode: the magic-byte check cannot see it
    (lora_a / name).write_bytes(payload)
    err = refusal(lambda: inspect_folder(lora_a))
    assert err.code == "pickle_refused", err
    assert err.fields["path"] == name and "GLOBAL" in err.message


def test_handwritten_protocol_0_pickle_refused(lora_a: Path) -> None:
    (lora_a / "tokenizer.model").write_bytes(b"cos\nsystem\n(S'ls'\ntR.")
    assert refusal(lambda: inspect_folder(lora_a)).code == "pickle_refused"


@pytest.mark.parametrize("name", PICKLE_NAMES)
def test_pickles_refused_by_client_and_server_storing_nothing(
    name: str,
    lora_a: Path,
    registry: Registry,
    client,  # noqa: F811
) -> None:
    from registry.client.transfer import push_folder

    (lora_a / name).write_bytes(pickle.dumps(RunsCode(), protocol=0))
    assert refusal(lambda: push_folder(client, lora_a, "acme/bad")).code == "pickle_refused"
    assert count_rows(registry) == (0, 0, 0)
    files = upload_folder(registry, lora_a)
    err = refusal(
        lambda: commit_version(registry, "acme/bad", PushRequest(files=files), "tester", principal=OPERATOR)
    )
    assert err.code == "pickle_refused"
    assert count_rows(registry)[:2] == (0, 0)


def test_pickle_after_a_large_argument_is_found_without_reading_it_whole() -> None:
    """A 5 MiB BINBYTES argument, then GLOBAL: the argument is skipped, not read."""
    arg = 5 * 1024 * 1024
    data = b"B" + struct.pack("<I", arg) + bytes(arg) + b"0" + b"cos\nsystem\n(S'ls'\ntR."
    reads: list[int] = []

    def read_at(start: int, n: int) -> bytes:
        reads.append(n)
        return data[start : start + n]

    assert pickle_imports(read_at, len(data)) == f"GLOBAL 'os system' at byte {arg + 6}"
    assert max(reads) <= 1024 * 1024 and sum(reads) < arg


BENIGN = {
    "README.md": b"---\nlibrary_name: peft\n---\n\n# Model card\n\nNote.\n",
    "notes.md": b"Note.",  # decodes as NONE OBJ TUPLE APPENDS STOP: a pickle that imports nothing
    "vocab.txt": b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n,\n.\n",
    "merges.txt": b"#version: 0.2\n\xc4\xa0 t\n\xc4\xa0 a\nh e\ni n\n",
    "tokenizer.model": b"\x0a\x0b\x0a\x05<unk>\x15\x00\x00\x00\x00\x18\x02" + bytes(range(256)),
    "chat_template.jinja": b"{% for m in messages %}{{ m['content'] }}{% endfor %}",
    "vocab.tiktoken": b"IQ== 0\nIg== 1\nIw== 2\n",
    "LICENSE": b"Apache License\nVersion 2.0, January 2004\n",
}


def test_benign_files_accepted(lora_a: Path) -> None:
    for name, content in BENIGN.items():
        (lora_a / name).write_bytes(content)
    inspect_folder(lora_a)


# ---------------------------------------------------------------- strict JSON
def nested(depth: int) -> bytes:
    return b'{"peft_type": "LORA", "x": ' + b"[" * depth + b"]" * depth + b"}"


NOT_STRICT_JSON = {
    "NaN": b'{"x": NaN}',
    "Infinity": b'{"x": -Infinity}',
    "lone surrogate": b'{"x": "\\ud800"}',
    "NUL escape": b'{"x": "a\\u0000b"}',
    "500 deep": nested(500),
    "100k deep": nested(100_000),
    "not UTF-8": b'{"x": "\xff"}',
}


@pytest.mark.parametrize("raw", list(NOT_STRICT_JSON.values()), ids=list(NOT_STRICT_JSON))
@pytest.mark.parametrize("name", ["adapter_config.json", "special_tokens_map.json"])
def test_json_files_must_be_strict_json(name: str, raw: bytes, lora_a: Path) -> None:
    if name != "adapter_config.json" and raw in (
        NOT_STRICT_JSON["lone surrogate"],
        NOT_STRICT_JSON["NUL escape"],
    ):
        # Valid JSON grammar. Only the config is stored in the database (where these cannot go);
        # other JSON files stay blobs, and real tokenizer files hold such tokens.
        (lora_a / name).write_bytes(raw)
        inspect_folder(lora_a)
        return
    if name == "adapter_config.json":
        cfg = json.loads((lora_a / name).read_text())
        raw = raw.replace(b"{", b"{" + json.dumps(cfg)[1:-1].encode() + b", ", 1)
    (lora_a / name).write_bytes(raw)
    err = refusal(lambda: inspect_folder(lora_a))
    assert type(err) is InvalidAdapter and err.code == "invalid_adapter", err
    assert err.fields["path"] == name


def test_json_file_over_the_cap_is_too_large(lora_a: Path) -> None:
    config = json.loads((lora_a / "adapter_config.json").read_text())
    (lora_a / "adapter_config.json").write_text(json.dumps({**config, "note": "a" * (1 << 20)}))
    err = refusal(lambda: inspect_folder(lora_a))
    assert err.code == "push_too_large" and err.fields["path"] == "adapter_config.json"
    (lora_a / "adapter_config.json").write_text(json.dumps(config))
    # Other JSON files are not stored in the database: they have a cap of their own, higher.
    (lora_a / "tokenizer.json").write_bytes(b'{"x": "' + b"a" * (2 << 20) + b'"}')
    inspect_folder(lora_a)
    (lora_a / "tokenizer.json").write_bytes(b'{"x": "' + b"a" * MAX_JSON_FILE_BYTES + b'"}')
    err = refusal(lambda: inspect_folder(lora_a))
    assert err.code == "push_too_large" and err.fields["path"] == "tokenizer.json"


def test_server_refuses_a_deep_json_file_storing_no_version(lora_a: Path, registry: Registry) -> None:
    (lora_a / "special_tokens_map.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    files = upload_folder(registry, lora_a)
    err = refusal(
        lambda: commit_version(registry, "acme/bad", PushRequest(files=files), "tester", principal=OPERATOR)
    )
    assert err.code == "invalid_adapter"
    assert count_rows(registry)[:2] == (0, 0)


@pytest.mark.parametrize("depth", [500, 100_000])
def test_deep_safetensors_header_is_invalid_safetensors(depth: int, lora_a: Path) -> None:
    header = b'{"__metadata__": ' + b"[" * depth + b"]" * depth + b"}"
    (lora_a / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    err = refusal(lambda: inspect_folder(lora_a))
    assert err.code == "invalid_safetensors", err
    assert err.fields["path"] == "adapter_model.safetensors"


def test_safetensors_header_with_nan_is_invalid_safetensors(lora_a: Path) -> None:
    header = b'{"x": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 0]}}'
    (lora_a / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    assert refusal(lambda: inspect_folder(lora_a)).code == "invalid_safetensors"


# ---------------------------------------------------------------- adapter_config.json fields
def edit_config(folder: Path, **changes: object) -> None:
    cfg = json.loads((folder / "adapter_config.json").read_text())
    cfg.update(changes)
    (folder / "adapter_config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("spelling", ["lora", "Lora"])
def test_peft_type_must_be_spelled_exactly(spelling: str, lora_a: Path) -> None:
    edit_config(lora_a, peft_type=spelling)
    err = refusal(lambda: inspect_folder(lora_a))
    assert err.code == "unknown_peft_type"
    assert '"LORA"' in err.message


def test_fixture_adapter_is_accepted(lora_a: Path) -> None:
    inspect_folder(lora_a)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("base_model_name_or_path", "org/" + "m" * 253),
        ("base_model_name_or_path", "org/model\x00"),
        ("base_model_name_or_path", "org/model\n"),
        ("base_model_name_or_path", "org/\u202emodel"),
        ("base_model_name_or_path", 7),
        ("revision", "r" * 129),
        ("revision", "main\x07"),
    ],
)
def test_stored_config_fields_are_bounded(field: str, value: object, lora_a: Path) -> None:
    edit_config(lora_a, **{field: value})
    err = refusal(lambda: inspect_folder(lora_a))
    assert type(err) is InvalidAdapter and err.code == "invalid_adapter"
    if isinstance(value, str) and "\x00" in value:  # strict JSON refuses NUL anywhere in the file
        assert "NUL" in err.message
    else:
        assert err.fields["field"] == field and field in err.message


def test_stored_config_fields_at_the_bounds_are_accepted(lora_a: Path) -> None:
    edit_config(lora_a, base_model_name_or_path="org/" + "m" * 252, revision="r" * 128)
    inspect_folder(lora_a)
