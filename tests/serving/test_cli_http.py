"""`adapters generate` (embedded, and against a live server), and AdapterServer over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from registry.api import create_app
from registry.client.http import HttpClient
from registry.client.transfer import push_folder
from registry.errors import ShapeMismatch
from registry.services.context import Registry
from registry.serving import AdapterServer
from tests.cli.conftest import Cli
from tests.conftest import ServerThread, db_url_for, make_settings
from tests.serving.conftest import BASE, publish
from tests.serving.test_server import ATOL, IDS, alone


@pytest.fixture
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    settings = make_settings(tmp_path / "server", db_url_for("sqlite", tmp_path, request), "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    try:
        with ServerThread(create_app(settings, reg)) as srv:
            yield srv
    finally:
        reg.close()


@pytest.fixture
def http(served: ServerThread, tmp_path: Path) -> Iterator[HttpClient]:
    client = HttpClient(served.url, user="tester", cache_dir=tmp_path / "client-cache", token=served.token)
    yield client
    client.close()


def test_over_http_from_an_empty_cache(http: HttpClient, models: Path, tmp_path: Path) -> None:
    pushed = publish(http, models)
    blobs = [f.sha256 for f in http.resolve("acme/b").files]
    assert all(http.cache.stat(d) is None for d in blobs)  # nothing cached: every byte comes over HTTP
    with AdapterServer(BASE, client=http, alias_ttl_s=0) as srv:
        assert srv.fingerprint == pushed.fingerprint
        logits = srv.forward(IDS, adapters=["acme/b", None, "acme/a@production"]).logits
        push_folder(http, models / "other", "acme/other")
        with pytest.raises(ShapeMismatch):  # the same code as push, over HTTP
            srv.load("acme/other")
    assert all(http.cache.stat(d) is not None for d in blobs)  # pulled through the cache
    assert torch.allclose(logits[0], alone(models, "b", IDS[:1])[0], atol=ATOL, rtol=0)
    assert torch.allclose(logits[1], alone(models, None, IDS[1:2])[0], atol=ATOL, rtol=0)
    assert torch.allclose(logits[2], alone(models, "a", IDS[2:])[0], atol=ATOL, rtol=0)


def greedy(models: Path, adapter: str, prompt: str, n: int) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models / "base")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(models / "base"), models / adapter)
    ids = tok([prompt], return_tensors="pt")
    out = model.eval().generate(**ids, max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    new: list[int] = out[0, ids["input_ids"].shape[1] :].tolist()
    return new


@pytest.mark.slow
def test_generate_command(tmp_path: Path, models: Path) -> None:
    cli = Cli(
        {
            "ADAPTERS_HOME": str(tmp_path / "home"),
            "ADAPTERS_URL": "",
            "ADAPTERS_DATABASE_URL": "",
            "ADAPTERS_BLOB_URL": "",
        }
    )
    cli.json("base", "add", str(models / "base"), "--name", BASE, "--upload")
    cli.json("push", str(models / "c"), "acme/c", "--base", BASE)
    cli.json("push", str(models / "other"), "acme/other")
    doc = cli.json("generate", "acme/c", "Hello", "--base", BASE, "--max-new-tokens", "5")
    assert doc["version"] == "acme/c:1" and doc["digest"].startswith("sha256:")
    want = greedy(models, "c", "Hello", 5)
    assert doc["token_ids"] == want[: len(doc["token_ids"])] and doc["token_ids"]
    assert isinstance(doc["text"], str)
    # The base as a folder: the same answer.
    again = cli.json("generate", "acme/c", "Hello", "--base", str(models / "base"), "--max-new-tokens", "5")
    assert again["token_ids"] == doc["token_ids"] and again["base_fingerprint"] == doc["base_fingerprint"]
    plain = cli("generate", "acme/c", "Hello", "--base", BASE, "--max-new-tokens", "5")
    assert doc["text"] in plain.stdout
    refused = cli("generate", "acme/other", "Hello", "--base", BASE, "--json", ok=False)
    assert refused.exit_code == 1
    assert '"code": "shape_mismatch"' in refused.stdout
