"""The streaming safetensors writer: what it writes is what safetensors reads, in both copy paths."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from registry.formats.model_folder import read_tensors
from registry.tensors.safetensors_stream import PlannedTensor, ShardWriter, plan_shards, tensor_bytes


@pytest.mark.parametrize("in_kernel", [True, False])
def test_written_and_copied_tensors_read_back_with_their_hashes(
    tmp_path: Path, in_kernel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not in_kernel:  # an OS without copy_file_range: the writer copies through user memory
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    g = torch.Generator().manual_seed(0)
    source = {"emb": torch.randn(300, 64, generator=g), "norm": torch.ones(64, dtype=torch.bfloat16)}
    save_file(source, str(tmp_path / "src.safetensors"))
    offset, infos = read_tensors(tmp_path / "src.safetensors")
    fresh = torch.randn(40, 64, generator=g).to(torch.float16)
    plan = [
        PlannedTensor("emb", "F32", (300, 64)),
        PlannedTensor("fresh", "F16", (40, 64)),
        PlannedTensor("norm", "BF16", (64,)),
    ]
    src = tmp_path / "src.safetensors"
    writer = ShardWriter(tmp_path / "out.safetensors", plan)
    writer.copy("emb", src, offset + infos["emb"].start, offset + infos["emb"].end)
    writer.write("fresh", [tensor_bytes(fresh)])
    writer.copy("norm", src, offset + infos["norm"].start, offset + infos["norm"].end)
    written = writer.close()
    back = load_file(str(tmp_path / "out.safetensors"))
    assert torch.equal(back["emb"], source["emb"]) and torch.equal(back["norm"], source["norm"])
    assert torch.equal(back["fresh"], fresh)
    assert written.size == (tmp_path / "out.safetensors").stat().st_size
    for name, t in (("emb", source["emb"]), ("fresh", fresh), ("norm", source["norm"])):
        assert written.tensor_sha256[name] == hashlib.sha256(bytes(tensor_bytes(t))).hexdigest()


def test_out_of_order_and_missing_tensors_are_refused(tmp_path: Path) -> None:
    plan = [PlannedTensor("a", "F32", (2,)), PlannedTensor("b", "F32", (2,))]
    writer = ShardWriter(tmp_path / "x.safetensors", plan)
    with pytest.raises(RuntimeError, match="out of plan order"):
        writer.write("b", [tensor_bytes(torch.zeros(2))])
    writer.write("a", [tensor_bytes(torch.zeros(2))])
    with pytest.raises(RuntimeError, match="not written"):
        writer.close()


def test_shards_are_packed_greedily_and_a_big_tensor_goes_alone() -> None:
    plan = [PlannedTensor(n, "F32", (s,)) for n, s in (("a", 10), ("b", 10), ("big", 100), ("c", 5))]
    assert [[t.name for t in s] for s in plan_shards(plan, 80)] == [["a", "b"], ["big"], ["c"]]
