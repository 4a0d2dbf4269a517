"""The vLLM LoRAResolver plugin: below the vLLM call in-process (a real server, real pushes), and
through vLLM's own classes (plugin loading by entry point, LoRAResolverRegistry, LoRARequest,
FilesystemResolver over a synced folder) in the .venv-vllm made by scripts/vllm_venv.sh, which
has the vLLM wheel without its CUDA dependency tree; skipped where that venv is absent."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from registry.client.http import HttpClient
from registry.client.transfer import push_folder
from registry.config import Settings
from registry.errors import BaseMismatch
from registry.integrations.sync import SyncSpec, sync_once
from registry.integrations.vllm import Resolver, resolve_adapter
from tests.conftest import ServerThread
from tests.integrations.conftest import BASE, write_lora

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = Path(os.environ.get("ADAPTERS_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))


def hashes(folder: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_resolves_a_reference_to_a_digest_named_folder(client: HttpClient, tmp_path: Path) -> None:
    v1 = write_lora(tmp_path / "v1", seed=1)
    v2 = write_lora(tmp_path / "v2", seed=2)
    first = push_folder(client, tmp_path / "v1", "acme/legal", aliases=["production"])
    second = push_folder(client, tmp_path / "v2", "acme/legal")
    root = tmp_path / "vllm"

    got = resolve_adapter(client, root, BASE, "acme/legal@production")
    assert got is not None
    assert got.lora_name == f"acme/legal@{first.digest}" and got.lora_int_id > 0
    assert got.path == root / first.digest.removeprefix("sha256:") and hashes(got.path) == v1

    client.set_alias("acme/legal:2", "production")  # an alias move: another name, another folder
    moved = resolve_adapter(client, root, BASE, "acme/legal@production")
    assert moved is not None and moved.lora_name == f"acme/legal@{second.digest}" != got.lora_name
    assert hashes(moved.path) == v2 and hashes(got.path) == v1
    assert resolve_adapter(client, root, BASE, moved.lora_name) == moved  # the pinned name resolves

    assert resolve_adapter(client, root, BASE, "not a reference") is None
    assert resolve_adapter(client, root, BASE, "meta-llama/Llama-3.1-8B") is None  # not in the registry
    with pytest.raises(BaseMismatch, match="made for 'acme/tiny-base', vLLM serves 'other/base'"):
        resolve_adapter(client, root, "other/base", "acme/legal")
    assert resolve_adapter(client, root, "/models/x", "acme/legal", served_base=BASE) is not None


def test_resolver_logs_and_returns_none_on_refusal(
    served: ServerThread, client: HttpClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_lora(tmp_path / "v1", seed=1, base="someone/else")
    push_folder(client, tmp_path / "v1", "acme/other")
    settings = Settings(url=served.url, home=tmp_path / "home", token=served.token)  # type: ignore[attr-defined]
    resolver = Resolver(settings)
    with caplog.at_level(logging.WARNING):
        assert resolver.resolve(BASE, "acme/other") is None
    assert "refuses acme/other" in caplog.text and "someone/else" in caplog.text


@pytest.mark.skipif(not VLLM_PYTHON.exists(), reason="no .venv-vllm (scripts/vllm_venv.sh)")
def test_through_vllms_own_classes(served: ServerThread, client: HttpClient, tmp_path: Path) -> None:
    v1 = write_lora(tmp_path / "v1", seed=1)
    write_lora(tmp_path / "v2", seed=2)
    first = push_folder(client, tmp_path / "v1", "acme/legal", aliases=["production"])
    second = push_folder(client, tmp_path / "v2", "acme/legal")
    synced, rewritten = tmp_path / "synced", tmp_path / "rewritten"
    sync_once(client, synced, SyncSpec())
    sync_once(client, rewritten, SyncSpec(base_model_name="/models/served"))
    code = f"""
    import asyncio, json, os
    from vllm.plugins import load_general_plugins
    from vllm.lora.resolver import LoRAResolverRegistry
    from vllm.lora.request import LoRARequest
    from vllm.plugins.lora_resolvers.filesystem_resolver import FilesystemResolver
    from registry.client.http import HttpClient
    load_general_plugins()
    names = sorted(LoRAResolverRegistry.get_supported_resolvers())
    ours = LoRAResolverRegistry.get_resolver("adapter-registry")
    def req(r):
        return None if r is None else [type(r).__name__, r.lora_name, r.lora_int_id, r.lora_path, r.base_model_name]
    async def main():
        out = {{"names": names}}
        out["prod"] = req(await ours.resolve_lora("{BASE}", "acme/legal@production"))
        HttpClient("{served.url}", "admin", cache_dir="{tmp_path / "c"}").set_alias("acme/legal:2", "production")  # ADAPTERS_TOKEN
        out["moved"] = req(await ours.resolve_lora("{BASE}", "acme/legal@production"))
        out["refused"] = req(await ours.resolve_lora("other/base", "acme/legal@production"))
        out["unknown"] = req(await ours.resolve_lora("{BASE}", "nobody/nothing"))
        fs = LoRAResolverRegistry.get_resolver("Filesystem Resolver")
        out["fs"] = req(await fs.resolve_lora("{BASE}", "acme/legal@production"))
        out["fs_other_base"] = req(await fs.resolve_lora("/models/served", "acme/legal@production"))
        fs2 = FilesystemResolver("{rewritten}")
        out["fs_rewritten"] = req(await fs2.resolve_lora("/models/served", "acme/legal@production"))
        print("@@" + json.dumps(out))
    asyncio.run(main())
    """
    env = {
        **os.environ,
        "ADAPTERS_URL": served.url,
        "ADAPTERS_HOME": str(tmp_path / "vllm-home"),
        "ADAPTERS_TOKEN": served.token,  # type: ignore[attr-defined]
        "VLLM_PLUGINS": "adapter_registry,lora_filesystem_resolver",
        "VLLM_LORA_RESOLVER_CACHE_DIR": str(synced),
    }
    proc = subprocess.run(
        [str(VLLM_PYTHON), "-c", textwrap.dedent(code)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0 and "@@" in proc.stdout, proc.stdout + proc.stderr[-4000:]
    got = json.loads(proc.stdout.rsplit("@@", 1)[1])
    assert got["names"] == ["Filesystem Resolver", "adapter-registry"]
    kind, name, int_id, path, base = got["prod"]
    assert (kind, name, base) == ("LoRARequest", f"acme/legal@{first.digest}", BASE) and int_id > 0
    assert hashes(Path(path)) == v1
    assert got["moved"][1] == f"acme/legal@{second.digest}" and got["moved"][3] != path
    assert got["refused"] is None and got["unknown"] is None
    assert got["fs"][1] == "acme/legal@production" and got["fs"][3] == str(synced / "acme/legal@production")
    assert got["fs_other_base"] is None  # vLLM compares base_model_name_or_path to the served string
    assert got["fs_rewritten"][3] == str(rewritten / "acme/legal@production")
