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
from registry.errors import NotServable, ServingFull, ShapeMismatch
from registry.services.context import Registry
from registry.serving import AdapterServer
from tests.cli.conftest import Cli
from tests.conftest import ServerThread, db_url_for, make_settings
from tests.serving.conftest import BASE, publish
from tests.serving.test_server import ATOL, IDS, alone

pytestmark = pytest.mark.server


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
    # The fit check needs the pulled header (registry.serving.fit): the refused adapter's blobs
    # were downloaded, verified, and no tensor of it loaded.
    assert all(http.cache.stat(f.sha256) is not None for f in http.resolve("acme/other").files)
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


def test_refused_from_the_record_before_downloading(http: HttpClient, models: Path) -> None:
    publish(http, models)
    push_folder(http, models / "dora", "acme/dora", base=BASE)
    big = http.resolve("acme/b")
    with AdapterServer(BASE, client=http, max_bytes=big.trainable_params * 4 - 1) as srv:
        with pytest.raises(NotServable, match="DoRA"):
            srv.load("acme/dora")
        with pytest.raises(ServingFull, match="max_bytes"):
            srv.load("acme/b")
        srv.load("acme/c")  # the check above can pass: a smaller one loads
    loaded = {f.sha256 for f in http.resolve("acme/c").files}  # their identical README.md is cached
    for ref in ("acme/dora", "acme/b"):  # not one byte of either was downloaded
        own = [f.sha256 for f in http.resolve(ref).files if f.sha256 not in loaded]
        assert own and all(http.cache.stat(d) is None for d in own), ref


def cli_home(tmp_path: Path) -> Cli:
    return Cli(
        {
            "ADAPTERS_HOME": str(tmp_path / "home"),
            "ADAPTERS_URL": "",
            "ADAPTERS_DATABASE_URL": "",
            "ADAPTERS_BLOB_URL": "",
        }
    )


def one_error(output: str) -> str:
    """The error line, checked to be the output's only one (the rest is the progress on stderr)."""
    lines = [line for line in output.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert len(lines) == 1, output
    return lines[0]


def test_generate_command_refusals(tmp_path: Path, models: Path) -> None:
    from registry.tensors.multi_lora import DTYPES

    cli = cli_home(tmp_path)
    bad = cli("generate", "acme/c", "Hi", "--base", BASE, "--dtype", "int8", ok=False)
    assert bad.exit_code == 2 and "'int8' is not one of" in bad.output  # click's usage error
    for name in DTYPES:  # the CLI's choices are the names the server takes
        assert f"'{name}'" in bad.output
    # The device is checked before the base is looked up (this base does not exist) or pulled.
    gone = cli("generate", "acme/c", "Hi", "--base", "acme/no-such-base", "--device", "nonsense", ok=False)
    assert gone.exit_code == 1 and "Traceback" not in gone.output
    assert one_error(gone.output).startswith("error (bad_request): device 'nonsense' cannot be used")
    # A base folder without a tokenizer: a text prompt gets one line and a non-zero exit.
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        (bare / name).write_bytes((models / "base" / name).read_bytes())
    cli.json("push", str(models / "c"), "acme/c")
    plain = cli("generate", "acme/c", "Hi", "--base", str(bare), ok=False)
    assert plain.exit_code == 1 and "Traceback" not in plain.output
    assert one_error(plain.output).startswith("error (bad_request): this base has no tokenizer")
    doc = cli("generate", "acme/c", "Hi", "--base", str(bare), "--json", ok=False)
    assert doc.exit_code == 1 and '"code": "bad_request"' in doc.stdout


def test_generate_on_a_base_without_a_tokenizer(tmp_path: Path, models: Path) -> None:
    """A base folder with no tokenizer generates from token ids (no text back), or with a tokenizer
    from another folder or a registered base: the same tokens as its own tokenizer gives."""
    cli = cli_home(tmp_path)
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        (bare / name).write_bytes((models / "base" / name).read_bytes())
    cli.json("base", "add", str(models / "base"), "--name", BASE, "--upload")
    cli.json("push", str(models / "c"), "acme/c", "--base", BASE)
    want = cli.json("generate", "acme/c", "Hello", "--base", BASE, "--max-new-tokens", "4")
    for source in (str(models / "base"), BASE):
        got = cli.json(
            "generate", "acme/c", "Hello", "--base", str(bare), "--tokenizer", source, "--max-new-tokens", "4"
        )
        assert got["token_ids"] == want["token_ids"] and got["text"] == want["text"], source
    from transformers import AutoTokenizer

    prompt = AutoTokenizer.from_pretrained(models / "base")("Hello")["input_ids"]
    ids = cli.json(
        "generate",
        "acme/c",
        ",".join(map(str, prompt)),
        "--base",
        str(bare),
        "--token-ids",
        "--max-new-tokens",
        "4",
    )
    assert ids["token_ids"] == want["token_ids"] and ids["text"] is None
    bad = cli("generate", "acme/c", "one two", "--base", str(bare), "--token-ids", ok=False)
    assert bad.exit_code == 2 and "integers" in bad.output
    empty = cli("generate", "acme/c", "Hi", "--base", str(bare), "--tokenizer", str(bare), ok=False)
    assert empty.exit_code == 1 and one_error(empty.output).startswith("error (bad_request):")
    assert "holds no tokenizer" in empty.output
