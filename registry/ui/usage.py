"""The "use this adapter" panel: how to load one version with PEFT (through the Hub protocol),
`adapters pull`, vLLM and LoRAX, each naming it exactly: the immutable forms (a version number is
never reused; a digest or a Hub commit id names the same bytes forever) and the alias forms (which
follow the alias when it moves, at load time)."""

from __future__ import annotations

from dataclasses import dataclass

from registry.entities import VersionInfo


@dataclass
class Snippet:
    id: str
    title: str
    note: str
    code: str


@dataclass
class Usage:
    pinned: str
    """`ns/name@sha256:<digest>`: these bytes and no others."""
    numbered: str
    """`ns/name:N`: this version (numbers are never reused)."""
    aliases: list[str]
    commit: str
    """The Hub commit id of the version (40 hex of its digest): an immutable `revision`."""
    snippets: list[Snippet]


def usage(v: VersionInfo, server: str) -> Usage:
    """What the panel shows for version `v` of the registry at `server` (scheme://host[:port])."""
    repo, commit = v.repo, v.digest.removeprefix("sha256:")[:40]
    pinned, numbered = f"{repo}@{v.digest}", f"{repo}:{v.version}"
    aliases = [f"{repo}@{a}" for a in v.aliases]
    alias = v.aliases[0] if v.aliases else None
    base = v.base_model.name or "BASE_MODEL"
    folder = f"./{repo.replace('/', '--')}-v{v.version}"
    short = repo.rsplit("/", 1)[-1]
    peft_alias = f'\n# or follow the alias: revision="{alias}"' if alias else ""
    peft = (
        f"# HF_ENDPOINT={server} (and HF_TOKEN=adreg_... for a private namespace) in the environment\n"
        "from peft import PeftModel\n"
        "from transformers import AutoModelForCausalLM\n\n"
        f'base = AutoModelForCausalLM.from_pretrained("{base}")\n'
        f'model = PeftModel.from_pretrained(base, "{repo}", revision="{commit}")  # v{v.version}, immutable'
        f"{peft_alias}"
    )
    pull = f"ADAPTERS_URL={server} adapters pull {pinned} -o {folder}"
    if alias:
        pull += f"\n# the version the alias names now:\nADAPTERS_URL={server} adapters pull {repo}@{alias} -o ./{short}"
    vllm = (
        "# this version, pulled and verified into a folder:\n"
        f"ADAPTERS_URL={server} adapters pull {pinned} -o {folder}\n"
        f"vllm serve {base} --enable-lora --lora-modules {short}={folder}\n\n"
        "# or any reference, resolved per request by the registry's resolver plugin\n"
        "# (pip install adapter-registry into vLLM's environment):\n"
        f"ADAPTERS_URL={server} VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve {base} --enable-lora\n"
        f'curl localhost:8000/v1/completions -d \'{{"model": "{pinned}", "prompt": "..."}}\''
    )
    lorax = (
        f"HF_ENDPOINT={server} lorax-launcher --model-id {base}\n"
        f'curl lorax:8080/generate -d \'{{"inputs": "...", "parameters": {{"adapter_id": "{repo}", '
        '"adapter_source": "hub"}}\'\n\n'
        "# the hub source loads the repository's main (its latest version); this version exactly:\n"
        f"ADAPTERS_URL={server} adapters pull {pinned} -o /data{folder[1:]}\n"
        f'curl lorax:8080/generate -d \'{{"inputs": "...", "parameters": {{"adapter_id": "/data{folder[1:]}", '
        '"adapter_source": "local"}}\''
    )
    return Usage(
        pinned=pinned,
        numbered=numbered,
        aliases=aliases,
        commit=commit,
        snippets=[
            Snippet(
                "use-peft",
                "PEFT (through the Hub protocol)",
                "HF_ENDPOINT points huggingface_hub at this registry.",
                peft,
            ),
            Snippet("use-pull", "adapters pull", "Verified against the digest as it is written.", pull),
            Snippet("use-vllm", "vLLM", "--lora-modules with a pulled folder, or the resolver plugin.", vllm),
            Snippet("use-lorax", "LoRAX", "The Hub source through HF_ENDPOINT, or a pulled folder.", lorax),
        ],
    )
