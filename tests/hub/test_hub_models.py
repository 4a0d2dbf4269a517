"""transformers and PEFT load an uploaded base and an adapter through the Hub protocol and give
the logits of the local copies; adapter repositories and bases never share a name."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.access.principal import OPERATOR, Principal
from registry.api import create_app
from registry.client.bases import add_base_folder
from registry.client.http import HttpClient
from registry.client.transfer import push_folder
from registry.entities import BaseRegistration
from registry.errors import NameTaken
from registry.services import bases, queries
from registry.services.context import Registry
from tests.conftest import ServerThread, db_url_for, make_settings, resource_params
from tests.hub.clients import run_client

pytestmark = pytest.mark.server

BASE = "acme/tiny-llama"


@pytest.fixture(params=resource_params("sqlite-file", "postgresql-s3"))
def hub_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    """Model loading is the slow part: two corners of {SQLite, PostgreSQL} x {file, S3}."""
    db, backend = str(request.param).split("-")
    settings = make_settings(tmp_path, db_url_for(db, tmp_path, request), backend, request)
    reg = Registry.from_settings(settings, migrate=True)
    with ServerThread(create_app(settings, reg)) as srv:
        yield srv
    reg.close()


def test_transformers_and_peft_load_through_the_hub(
    hub_server: ServerThread, lora_a: Path, tmp_path: Path
) -> None:
    from tests.adapters_factory import tiny_llama

    sharded = tmp_path / "base"
    tiny_llama().save_pretrained(sharded, max_shard_size="40KB")  # the model lora_a was trained on
    assert (sharded / "model.safetensors.index.json").is_file()
    client = HttpClient(hub_server.url, user="alice", cache_dir=tmp_path / "cache", token=hub_server.token)
    add_base_folder(client, sharded, [BASE], upload=True)
    config = json.loads((lora_a / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = BASE
    (lora_a / "adapter_config.json").write_text(json.dumps(config))
    push_folder(client, lora_a, "acme/legal")
    export_through_a_worker(hub_server, client, "acme/legal", BASE, "acme/legal-merged")

    code = f"""
    import torch
    from transformers import AutoModelForCausalLM
    from peft import AutoPeftModelForCausalLM, PeftModel
    ids = torch.arange(12).reshape(1, 12)
    def logits(model):
        with torch.no_grad():
            return model.eval()(input_ids=ids).logits
    local_base = AutoModelForCausalLM.from_pretrained({str(sharded)!r})
    hub_base = AutoModelForCausalLM.from_pretrained({BASE!r})
    reference = logits(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({str(sharded)!r}),
                                                 {str(lora_a)!r}))
    through_hub = logits(PeftModel.from_pretrained(hub_base, "acme/legal"))
    auto = logits(AutoPeftModelForCausalLM.from_pretrained("acme/legal"))
    merged = logits(AutoModelForCausalLM.from_pretrained("acme/legal-merged"))
    out(dict(base=(logits(local_base) - logits(AutoModelForCausalLM.from_pretrained({BASE!r}))).abs().max().item(),
             peft=(reference - through_hub).abs().max().item(),
             auto=(reference - auto).abs().max().item(),
             export=(reference - merged).abs().max().item(),
             moved=(reference - logits(local_base)).abs().max().item()))
    """
    for xet in ("1", ""):  # with hf_xet disabled, and as installed (it must fall back to HTTP)
        got = run_client(
            hub_server.url, tmp_path / f"hf{xet}", code, HF_HUB_DISABLE_XET=xet, HF_TOKEN=hub_server.token
        )
        # The same bytes through the same code: exactly equal (tolerance 0).
        assert got["base"] == 0.0 and got["peft"] == 0.0 and got["auto"] == 0.0, got
        # The export (merged in float32, then stored in the base's float32) against PEFT's
        # unmerged forward: the export tests' tolerance.
        assert got["export"] < 1e-5, got
        assert got["moved"] > 0  # the adapter changes the logits: the comparison means something


def export_through_a_worker(server: ServerThread, client: HttpClient, ref: str, base: str, into: str) -> None:
    """An export job submitted over HTTP and run by a worker on the server's registry: the
    derived model is registered under `into` and served as a model repository."""
    from registry.jobspec import JobRequest
    from registry.worker import Worker, WorkerSettings, WorkerThread

    app = server.app
    worker = Worker(app.state.registry, WorkerSettings.from_settings(app.state.settings, device="cpu"))  # type: ignore[attr-defined]
    thread = WorkerThread(worker).start()
    try:
        job = client.submit_job(JobRequest(type="export", params={"ref": ref, "base": base, "into": into}))
        deadline = time.monotonic() + 240
        while not (job := client.get_job(job.id)).done:
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job.status == "succeeded", job.error
    finally:
        thread.stop()


def _structure_only(name: str) -> BaseRegistration:
    return BaseRegistration(names=[{"name": name}], structure_signature="sha256:" + "1" * 64, modules=[])


def test_adapter_repositories_and_bases_never_share_a_name(
    registry: Registry, lora_a: Path, tmp_path: Path
) -> None:
    from registry.client.local import LocalClient
    from storage.local import LocalBlobStore

    bases.register_base(registry, _structure_only("acme/base"), principal=OPERATOR)
    client = LocalClient(
        registry,
        user="alice",
        cache=LocalBlobStore(tmp_path / "cache"),
        principal=Principal.operator("alice"),
    )
    with pytest.raises(NameTaken) as refused:
        push_folder(client, lora_a, "acme/base")
    assert refused.value.code == "name_taken" and refused.value.status == 409
    assert queries.list_repos(registry, 50, None, principal=OPERATOR).items == []  # nothing stored

    push_folder(client, lora_a, "acme/legal")
    with pytest.raises(NameTaken):
        bases.register_base(registry, _structure_only("acme/legal"), principal=OPERATOR)
    assert [n.name for b in bases.list_bases(registry, principal=OPERATOR) for n in b.names] == ["acme/base"]
