"""Bases in the registry: linking on push, refusals that name module and shapes, fit tiers.

Runs on SQLite and PostgreSQL, with real models and adapters of every PEFT type built by PEFT, and
(linking, tiers, fine-tunes, config-only bases) with bases and LoRAs written as files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peft import (
    AdaLoraConfig,
    IA3Config,
    LoHaConfig,
    LoKrConfig,
    LoraConfig,
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptTuningConfig,
)

from registry.access.principal import Principal
from registry.client.bases import add_base_config, add_base_folder
from registry.client.local import LocalClient
from registry.client.transfer import parse_eval, push_folder
from registry.entities import FitQuery, VersionFilter
from registry.errors import InvalidAdapter, NotFound
from registry.services.context import Registry
from tests.adapter_files import TINY, Gpt2, Llama, gpt2_base, llama_base, lora_folder
from tests.adapters_factory import save_peft, sized_llama, tiny_gpt2, train_lora
from tests.bases.test_fingerprint import MINILM, flip_one_element
from tests.conftest import make_settings


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    sized_llama().save_pretrained(root / "llama")  # hidden 32, vocab 128
    sized_llama(seed=1).save_pretrained(root / "llama-instruct")  # same structure, other weights
    sized_llama(hidden=64).save_pretrained(root / "llama64")
    sized_llama(vocab=256).save_pretrained(root / "llama-vocab256")
    tiny_gpt2().save_pretrained(root / "gpt2")
    return root


WIDE = Llama(hidden=64, intermediate=128)
"""sized_llama(hidden=64)'s shape."""


@pytest.fixture(scope="module")
def base_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bases of `models` that the tests below use, written as files (tests/adapter_files.py)."""
    root = tmp_path_factory.mktemp("base-files")
    llama_base(root / "llama")  # hidden 32, vocab 128
    llama_base(root / "llama-instruct", seed=1)  # same structure, other weights
    llama_base(root / "llama64", model=WIDE)
    gpt2_base(root / "gpt2")
    return root


def file_lora(folder: Path, seed: int = 1, model: Llama = TINY) -> Path:
    """The LoRA train_lora saves (r 4, alpha 8, q_proj and v_proj), written as files."""
    return lora_folder(folder, seed=seed, model=model, r=4, lora_alpha=8)


@pytest.fixture
def client(tmp_path: Path, db_url: str, request: pytest.FixtureRequest) -> Iterator[LocalClient]:
    reg = Registry.from_settings(make_settings(tmp_path, db_url, "file", request), migrate=True)
    yield LocalClient(reg, "tester", reg.store, principal=Principal.operator("tester"))
    reg.close()


def count_versions(client: LocalClient) -> int:
    return len(client.list_versions(VersionFilter(), limit=500).items)


PEFT_TYPES: dict[str, tuple[Any, str]] = {
    "lora+rslora+pattern": (
        LoraConfig(
            r=4,
            target_modules=["q_proj", "v_proj"],
            rank_pattern={"v_proj": 2},
            alpha_pattern={"q_proj": 16},
            use_rslora=True,
        ),
        "shape_mismatch",
    ),
    "dora": (LoraConfig(r=4, target_modules=["q_proj"], use_dora=True), "shape_mismatch"),
    "loha": (LoHaConfig(r=4, target_modules=["q_proj", "v_proj"]), "shape_mismatch"),
    "lokr": (LoKrConfig(r=4, target_modules=["q_proj", "v_proj"]), "shape_mismatch"),
    "adalora": (AdaLoraConfig(r=4, target_modules=["q_proj"], total_step=10), "shape_mismatch"),
    "ia3": (
        IA3Config(target_modules=["k_proj", "down_proj"], feedforward_modules=["down_proj"]),
        "ia3_shape_mismatch",
    ),
    "prefix": (PrefixTuningConfig(num_virtual_tokens=4, task_type="CAUSAL_LM"), "prompt_shape_mismatch"),
    "prompt": (PromptTuningConfig(num_virtual_tokens=4, task_type="CAUSAL_LM"), "prompt_shape_mismatch"),
    "p-tuning": (
        PromptEncoderConfig(num_virtual_tokens=4, encoder_hidden_size=16, task_type="CAUSAL_LM"),
        "prompt_shape_mismatch",
    ),
}


@pytest.mark.parametrize("kind", list(PEFT_TYPES))
def test_every_peft_type_is_checked_against_its_base(
    kind: str, client: LocalClient, models: Path, tmp_path: Path
) -> None:
    config, code = PEFT_TYPES[kind]
    adapter = save_peft(sized_llama(), config, tmp_path / kind)
    add_base_folder(client, models / "llama", ["llama"])
    add_base_folder(client, models / "llama64", ["llama64"])
    ok = push_folder(client, adapter, "acme/good", base="llama")
    assert ok.info.base_linked and ok.info.fit_override is None
    with pytest.raises(InvalidAdapter) as err:
        push_folder(client, adapter, "acme/bad", base="llama64")
    assert err.value.code == code
    assert count_versions(client) == 1  # the refused push stored nothing
    forced = push_folder(client, adapter, "acme/bad", base="llama64", force=True)
    assert forced.info.fit_override["problems"][0]["code"] == code  # type: ignore[index]


def test_refusals_name_the_module_and_both_shapes(client: LocalClient, models: Path, tmp_path: Path) -> None:
    add_base_folder(client, models / "llama64", ["llama64"])
    add_base_folder(client, models / "llama-vocab256", ["llama-v256"])
    add_base_folder(client, models / "gpt2", ["gpt2"])
    lora = train_lora(sized_llama(), tmp_path / "lora")
    with pytest.raises(InvalidAdapter) as err:
        push_folder(client, lora, "acme/x", base="llama64")
    assert err.value.code == "shape_mismatch"
    assert "self_attn.q_proj" in err.value.message and "32" in err.value.message and "64" in err.value.message
    with pytest.raises(InvalidAdapter) as err:
        push_folder(client, lora, "acme/x", base="gpt2")
    assert err.value.code == "target_module_not_found" and "q_proj" in err.value.message
    emb = save_peft(sized_llama(), LoraConfig(r=4, target_modules=["embed_tokens"]), tmp_path / "emb")
    with pytest.raises(InvalidAdapter) as err:
        push_folder(client, emb, "acme/x", base="llama-v256")
    assert err.value.code == "vocab_mismatch" and "128" in err.value.message
    head = train_lora(sized_llama(), tmp_path / "head", modules_to_save=["lm_head"])
    with pytest.raises(InvalidAdapter) as err:
        push_folder(client, head, "acme/x", base="llama-v256")
    assert err.value.code == "vocab_mismatch" and "256" in err.value.message
    assert count_versions(client) == 0


def test_linking_by_name_fingerprint_and_adapter_config(
    client: LocalClient, base_files: Path, tmp_path: Path
) -> None:
    info = add_base_folder(client, base_files / "llama", ["meta/tiny-llama", "tiny"], revision="main")
    again = add_base_folder(client, base_files / "llama", ["tiny-alias"])
    assert again.id == info.id and {n.name for n in again.names} == {"meta/tiny-llama", "tiny", "tiny-alias"}
    lora = file_lora(tmp_path / "lora")
    cfg = json.loads((lora / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "meta/tiny-llama"  # as when trained on the hub checkpoint
    (lora / "adapter_config.json").write_text(json.dumps(cfg))
    by_config = push_folder(client, lora, "acme/a")
    assert by_config.info.base_fingerprint == info.fingerprint
    by_fp = push_folder(client, lora, "acme/b", base=info.fingerprint)
    assert by_fp.info.base_linked
    unknown = push_folder(client, lora, "acme/c", base="never-registered")
    assert not unknown.info.base_linked and unknown.info.base_model.name == "never-registered"
    with pytest.raises(NotFound):
        client.fit(FitQuery(base="never-registered"))


def test_fit_tiers_filters_and_explain(client: LocalClient, base_files: Path, tmp_path: Path) -> None:
    add_base_folder(client, base_files / "llama", ["llama"])
    add_base_folder(client, base_files / "llama-instruct", ["llama-instruct"])
    add_base_folder(client, base_files / "llama64", ["llama64"])
    add_base_folder(client, base_files / "gpt2", ["gpt2"])
    lora = file_lora(tmp_path / "lora")
    push_folder(client, lora, "acme/legal", base="llama", task="legal", evals=[parse_eval("acc=0.7")])
    push_folder(
        client,
        file_lora(tmp_path / "l2", seed=5),
        "acme/legal2",
        base="llama",
        task="legal",
        evals=[parse_eval("acc=0.9")],
    )
    push_folder(client, lora, "acme/instruct", base="llama-instruct", task="chat")
    push_folder(client, lora, "acme/unlinked")  # no base: compatible through its module table
    push_folder(client, file_lora(model=WIDE, folder=tmp_path / "big"), "acme/big", base="llama64")
    gpt = lora_folder(
        tmp_path / "g", model=Gpt2(), task_type=None, r=4, target_modules=["c_attn"], fan_in_fan_out=True
    )
    push_folder(client, gpt, "acme/gpt", base="gpt2")
    push_folder(client, file_lora(model=WIDE, folder=tmp_path / "big2"), "acme/big-unlinked")

    def refs(**kw: Any) -> list[tuple[str, str]]:
        return [(i.ref, i.tier) for i in client.fit(FitQuery(base="llama", **kw)).items]

    assert refs(tier="exact") == [("acme/legal2:1", "exact"), ("acme/legal:1", "exact")]
    assert refs(tier="compatible") == [("acme/unlinked:1", "compatible"), ("acme/instruct:1", "compatible")]
    assert len(refs()) == 4
    assert refs(task="legal", sort="acc") == [("acme/legal2:1", "exact"), ("acme/legal:1", "exact")]
    assert refs(min_scores={"acc": 0.8}) == [("acme/legal2:1", "exact")]
    assert refs(peft_type="IA3") == []
    explained = client.fit(FitQuery(base="llama", explain=True)).rejected or []
    reasons = {r.ref: " ".join(r.reasons) for r in explained}
    assert set(reasons) == {"acme/big:1", "acme/gpt:1", "acme/big-unlinked:1"}
    assert "expects 64 -> 64, base has 32 -> 32" in reasons["acme/big:1"]
    assert "c_attn is not in the base" in reasons["acme/gpt:1"]
    sorted_by = client.fit(FitQuery(base="llama", sort="acc"))
    assert sorted_by.items[0].score == 0.9


def test_one_element_finetune_is_compatible_not_exact(
    client: LocalClient, base_files: Path, tmp_path: Path
) -> None:
    import shutil

    shutil.copytree(base_files / "llama", tmp_path / "tuned")
    flip_one_element(tmp_path / "tuned")
    a = add_base_folder(client, base_files / "llama", ["llama"])
    b = add_base_folder(client, tmp_path / "tuned", ["llama-tuned"])
    assert a.fingerprint != b.fingerprint and a.structure_signature == b.structure_signature
    push_folder(client, file_lora(tmp_path / "lora"), "acme/x", base="llama-tuned")
    assert [(i.ref, i.tier) for i in client.fit(FitQuery(base="llama")).items] == [("acme/x:1", "compatible")]


def test_config_only_base_and_upload(client: LocalClient, base_files: Path) -> None:
    structure = add_base_config(client, base_files / "llama" / "config.json", ["llama-config"])
    weights = add_base_folder(client, base_files / "llama", ["llama"], upload=True)
    assert structure.fingerprint is None and structure.structure_signature == weights.structure_signature
    assert structure.module_count == weights.module_count
    shown = client.get_base("llama")
    assert shown.uploaded and shown.files
    assert {f.path for f in shown.files} >= {"config.json", "model.safetensors"}
    assert client.missing_blobs([f.sha256 for f in shown.files]) == []


@pytest.mark.slow  # trains a LoRA on real MiniLM weights
def test_real_minilm_with_a_trained_adapter(client: LocalClient, tmp_path: Path) -> None:
    import torch
    from peft import get_peft_model
    from transformers import AutoModel

    base = add_base_folder(client, MINILM, ["sentence-transformers/all-MiniLM-L6-v2"])
    model = get_peft_model(
        AutoModel.from_pretrained(MINILM),
        LoraConfig(r=4, target_modules=["query", "value"], task_type="FEATURE_EXTRACTION"),
    )
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(2):
        ids = torch.randint(0, 30522, (2, 8))
        model(input_ids=ids).last_hidden_state.pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(tmp_path / "minilm-lora")
    pushed = push_folder(
        client, tmp_path / "minilm-lora", "acme/embed", base="sentence-transformers/all-MiniLM-L6-v2"
    )
    assert pushed.info.base_fingerprint == base.fingerprint
    fit = client.fit(FitQuery(base=base.fingerprint or ""))
    assert [(i.ref, i.tier) for i in fit.items] == [("acme/embed:1", "exact")]


def test_ia3_with_regex_targets_fits_its_base(client: LocalClient, models: Path, tmp_path: Path) -> None:
    """PEFT accepts target_modules/feedforward_modules as regex strings: the feed-forward vectors
    (one per input feature of down_proj) are checked against in_features, not out_features."""
    config = IA3Config(target_modules=r".*\.(k_proj|down_proj)", feedforward_modules=r".*\.down_proj")
    adapter = save_peft(sized_llama(), config, tmp_path / "ia3-regex")
    add_base_folder(client, models / "llama", ["llama"])
    add_base_folder(client, models / "llama64", ["llama64"])
    ok = push_folder(client, adapter, "acme/ia3", base="llama")
    assert ok.info.base_linked and ok.info.fit_override is None
    with pytest.raises(InvalidAdapter) as err:
        push_folder(client, adapter, "acme/ia3-bad", base="llama64")
    assert err.value.code == "ia3_shape_mismatch"
    assert count_versions(client) == 1
