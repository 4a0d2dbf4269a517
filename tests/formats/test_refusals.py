"""Every refusal on push has its own code, and a refused push stores nothing.

Refusals are checked twice: by the client on the local folder (before any upload), and by the
service on the stored blobs (the authority), here by committing a manifest directly.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import unicodedata
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from registry.access.principal import OPERATOR
from registry.db import models as m
from registry.db.engine import unit_of_work
from registry.entities import FileInfo, PushRequest
from registry.errors import BlobMissing, InvalidAdapter
from registry.formats.paths import normalize_path
from registry.services.blobs import upload_blob
from registry.services.context import Registry
from registry.services.versions import commit_version
from storage import sha256_file

Mutation = Callable[[Path], None]


def edit_config(**changes: object) -> Mutation:
    def apply(folder: Path) -> None:
        cfg = json.loads((folder / "adapter_config.json").read_text())
        cfg.update(changes)
        (folder / "adapter_config.json").write_text(json.dumps(cfg))

    return apply


def write_safetensors(
    path: Path, header: dict[str, object], data: bytes, raw_header: bytes | None = None
) -> None:
    raw = raw_header if raw_header is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def weights(header: dict[str, object], data_len: int, raw_header: bytes | None = None) -> Mutation:
    def apply(folder: Path) -> None:
        write_safetensors(folder / "adapter_model.safetensors", header, bytes(data_len), raw_header)

    return apply


def add_file(name: str, content: bytes) -> Mutation:
    def apply(folder: Path) -> None:
        (folder / name).write_bytes(content)

    return apply


def remove(name: str) -> Mutation:
    def apply(folder: Path) -> None:
        (folder / name).unlink()

    return apply


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": 1}))
    return buf.getvalue()


def lora_header(
    a_rank: int = 4, with_b: bool = True, module: str = "q_proj"
) -> tuple[dict[str, object], int]:
    prefix = f"base_model.model.model.layers.0.self_attn.{module}"
    h: dict[str, object] = {
        f"{prefix}.lora_A.weight": {
            "dtype": "F32",
            "shape": [a_rank, 32],
            "data_offsets": [0, a_rank * 32 * 4],
        }
    }
    end = a_rank * 32 * 4
    if with_b:
        h[f"{prefix}.lora_B.weight"] = {"dtype": "F32", "shape": [32, a_rank], "data_offsets": [end, end * 2]}
        end *= 2
    return h, end


CASES: dict[str, tuple[str, Mutation]] = {
    "no config": ("missing_adapter_config", remove("adapter_config.json")),
    "config not json": ("invalid_adapter", add_file("adapter_config.json", b"{not json")),
    "negative rank": ("invalid_adapter", edit_config(r=-1)),
    "bad task_type": ("invalid_adapter", edit_config(task_type="MAKE_COFFEE")),
    "unknown peft_type": ("unknown_peft_type", edit_config(peft_type="SUPER_LORA")),
    "auto_mapping import": (
        "unsafe_config",
        edit_config(auto_mapping={"base_model_class": "X", "parent_library": "evil_pkg.models"}),
    ),
    "trust_remote_code": ("unsafe_config", edit_config(tokenizer_kwargs={"trust_remote_code": True})),
    "megatron import": ("unsafe_config", edit_config(megatron_config={}, megatron_core="evil.core")),
    # (training_args.bin is a training artefact the client skips: tests/formats/test_selection.py)
    "pickle by extension": ("pickle_refused", add_file("adapter_model.bin", pickle.dumps({"lr": 1}))),
    "pickle by magic": ("pickle_refused", add_file("notes.json", pickle.dumps({"x": 1}, protocol=4))),
    "zip as safetensors": ("pickle_refused", add_file("adapter_model.safetensors", zip_bytes())),
    "no weights": ("missing_weights", remove("adapter_model.safetensors")),
    "header too large": (
        "invalid_safetensors",
        add_file("adapter_model.safetensors", struct.pack("<Q", 1 << 40) + b"{}"),
    ),
    "header not json": ("invalid_safetensors", weights({}, 0, raw_header=b"\xff\xfe garbage")),
    "bad dtype": (
        "invalid_safetensors",
        weights({"x": {"dtype": "OBJECT", "shape": [1], "data_offsets": [0, 8]}}, 8),
    ),
    "offset past end": (
        "invalid_safetensors",
        weights({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, 8),
    ),
    "overlap": (
        "invalid_safetensors",
        weights(
            {
                "x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            12,
        ),
    ),
    "gap": (
        "invalid_safetensors",
        weights(
            {
                "x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                "y": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
            },
            12,
        ),
    ),
    "duplicate names": (
        "invalid_safetensors",
        weights(
            {},
            8,
            raw_header=(
                b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                b'"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'
            ),
        ),
    ),
    "wrong rank": ("weights_mismatch", weights(*lora_header(a_rank=8))),
    "lora_A without lora_B": ("weights_mismatch", weights(*lora_header(with_b=False))),
    "untargeted module": ("weights_mismatch", weights(*lora_header(module="o_proj"))),
    "not allowed file": ("file_not_allowed", add_file("train.py", b"print('hi')\n")),
}


def count_rows(reg: Registry) -> tuple[int, int, int]:
    with unit_of_work(reg.sessions) as s:
        return (
            s.scalar(select(func.count()).select_from(m.Repository)) or 0,
            s.scalar(select(func.count()).select_from(m.Version)) or 0,
            s.scalar(select(func.count()).select_from(m.Blob)) or 0,
        )


@pytest.mark.parametrize("case", list(CASES))
def test_client_refuses_before_uploading(case: str, client, lora_a: Path, registry: Registry) -> None:  # noqa: F811
    from registry.client.transfer import push_folder

    code, mutate = CASES[case]
    mutate(lora_a)
    with pytest.raises(InvalidAdapter) as info:
        push_folder(client, lora_a, "acme/bad")
    assert info.value.code == code, info.value
    assert count_rows(registry) == (0, 0, 0)
    for f in lora_a.iterdir():
        assert registry.store.stat(sha256_file(str(f)).digest) is None


def upload_folder(reg: Registry, folder: Path, rename: dict[str, str] | None = None) -> list[FileInfo]:
    files = []
    for f in sorted(folder.iterdir()):
        info = sha256_file(str(f))
        with f.open("rb") as stream:
            upload_blob(reg.store, stream, info.digest, info.size)
        files.append(FileInfo(path=(rename or {}).get(f.name, f.name), size=info.size, sha256=info.digest))
    return files


@pytest.mark.parametrize("case", list(CASES))
def test_server_refuses_from_stored_blobs(case: str, lora_a: Path, registry: Registry) -> None:
    code, mutate = CASES[case]
    mutate(lora_a)
    files = upload_folder(registry, lora_a)
    with pytest.raises(InvalidAdapter) as info:
        commit_version(registry, "acme/bad", PushRequest(files=files), "tester", principal=OPERATOR)
    assert info.value.code == code
    assert count_rows(registry) == (0, 0, 0)


NFD = unicodedata.normalize("NFD", "é.json")


@pytest.mark.parametrize(
    "path",
    [
        "../adapter_config.json",
        "/etc/passwd.json",
        "C:/x.json",
        "a\\b.json",
        "\\\\server\\share\\x.json",
        "a/../b.json",
        "a//b.json",
        "./x.json",
        "bad\x00name.json",
        "bad\nname.json",
        NFD,
    ],
)
def test_unsafe_paths_refused(path: str, lora_a: Path, registry: Registry) -> None:
    files = upload_folder(registry, lora_a)
    cfg = next(f for f in files if f.path == "adapter_config.json")
    files.append(FileInfo(path=path, size=cfg.size, sha256=cfg.sha256))
    with pytest.raises(InvalidAdapter) as info:
        commit_version(registry, "acme/bad", PushRequest(files=files), "tester", principal=OPERATOR)
    assert info.value.code == "unsafe_path"
    assert count_rows(registry) == (0, 0, 0)


def test_nfc_is_the_normal_form() -> None:
    assert normalize_path(NFD) == unicodedata.normalize("NFC", NFD)


def test_symlink_refused(client, lora_a: Path, registry: Registry) -> None:  # noqa: F811
    from registry.client.transfer import push_folder

    os.symlink("/etc/hostname", lora_a / "README.md.json")
    with pytest.raises(InvalidAdapter) as info:
        push_folder(client, lora_a, "acme/bad")
    assert info.value.code == "symlink_refused"
    assert count_rows(registry) == (0, 0, 0)


def test_total_size_cap(lora_a: Path, registry: Registry) -> None:
    files = upload_folder(registry, lora_a)
    registry.limits = type(registry.limits)(
        max_total_bytes=1000, max_header_bytes=1 << 20, max_json_bytes=1 << 20
    )
    with pytest.raises(InvalidAdapter) as info:
        commit_version(registry, "acme/bad", PushRequest(files=files), "tester", principal=OPERATOR)
    assert info.value.code == "push_too_large" and info.value.status == 413
    assert count_rows(registry) == (0, 0, 0)


def test_listed_blob_must_be_present(lora_a: Path, registry: Registry) -> None:
    files = upload_folder(registry, lora_a)
    files.append(FileInfo(path="extra.json", size=3, sha256="sha256:" + "0" * 64))
    with pytest.raises(BlobMissing) as info:
        commit_version(registry, "acme/bad", PushRequest(files=files), "tester", principal=OPERATOR)
    assert info.value.code == "blob_missing" and info.value.path == "extra.json"
    assert count_rows(registry) == (0, 0, 0)
