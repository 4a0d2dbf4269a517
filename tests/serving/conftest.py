"""A tiny Llama with a character tokenizer, real PEFT LoRA adapters for it (and for another base),
registered and pushed into an embedded registry or over HTTP to a live server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from peft import LoraConfig

from registry.access.principal import Principal
from registry.client.bases import add_base_folder
from registry.client.interface import RegistryClient
from registry.client.local import LocalClient
from registry.client.transfer import push_folder
from registry.services.context import Registry
from tests.adapters_factory import VOCAB, save_peft, sized_llama, tiny_llama
from tests.conftest import db_url_for, make_settings, resource_params

BASE = "acme/tiny-llama"
ADAPTERS = {  # name -> LoRA settings; init_lora_weights=False: random non-zero B, so outputs differ
    "a": {"r": 4, "target_modules": ["q_proj", "v_proj"]},
    "b": {"r": 8, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
    "c": {"r": 2, "target_modules": ["gate_proj", "up_proj", "down_proj"], "lora_alpha": 4},
}


def char_tokenizer(folder: Path) -> None:
    """A character-level tokenizer (printable ASCII) saved as transformers saves one."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<s>", "</s>"]
    vocab = {t: i for i, t in enumerate(specials + [chr(c) for c in range(32, 127)])}
    assert len(vocab) <= VOCAB
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    ).save_pretrained(folder)


def lora(base_seed: int, seed: int, out: Path, hidden: int = 32, **settings: object) -> Path:
    model = tiny_llama(base_seed) if hidden == 32 else sized_llama(hidden=hidden)
    torch.manual_seed(seed)  # after building the base, which seeds itself
    config = LoraConfig(task_type="CAUSAL_LM", init_lora_weights=False, lora_dropout=0.0, **settings)  # type: ignore[arg-type]
    return save_peft(model, config, out)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serving")
    tiny_llama().save_pretrained(root / "base")
    char_tokenizer(root / "base")
    for i, (name, settings) in enumerate(ADAPTERS.items()):
        lora(0, 10 + i, root / name, **settings)  # type: ignore[arg-type]
    lora(0, 20, root / "a2", r=4, target_modules=["q_proj", "v_proj"])  # a second version of a
    lora(0, 21, root / "other", hidden=64, r=4, target_modules=["q_proj", "v_proj"])  # another base
    lora(0, 22, root / "dora", r=4, target_modules=["q_proj"], use_dora=True)
    return root


@dataclass
class Pushed:
    client: RegistryClient
    models: Path
    digests: dict[str, str]
    fingerprint: str


def publish(client: RegistryClient, models: Path) -> Pushed:
    """Register the base with its files; push a, b, c (a with alias production) linked to it."""
    info = add_base_folder(client, models / "base", [BASE], upload=True)
    assert info.fingerprint is not None
    digests = {}
    for name in ADAPTERS:
        aliases = ["production"] if name == "a" else []
        digests[name] = push_folder(client, models / name, f"acme/{name}", base=BASE, aliases=aliases).digest
    return Pushed(client, models, digests, info.fingerprint)


@pytest.fixture
def embedded(tmp_path: Path, request: pytest.FixtureRequest, models: Path) -> Iterator[Pushed]:
    """An embedded registry on SQLite (file blob store) with the base and three adapters."""
    yield from _embedded(tmp_path, "sqlite", request, models)


@pytest.fixture(params=resource_params("sqlite", "postgresql"))
def embedded_any_db(tmp_path: Path, request: pytest.FixtureRequest, models: Path) -> Iterator[Pushed]:
    yield from _embedded(tmp_path, str(request.param), request, models)


def _embedded(tmp_path: Path, db: str, request: pytest.FixtureRequest, models: Path) -> Iterator[Pushed]:
    reg = Registry.from_settings(
        make_settings(tmp_path, db_url_for(db, tmp_path, request), "file", request), migrate=True
    )
    try:
        yield publish(LocalClient(reg, "tester", reg.store, principal=Principal.operator("tester")), models)
    finally:
        reg.close()
