"""`bases_fitting` (the version page's "bases it fits", one ask for every base) agrees with the
fit query asked base by base (`fit`), for linked, unlinked and forced versions, bases of the same
weights, of the same structure and of another one, as the operator and as an anonymous reader."""

from __future__ import annotations

from pathlib import Path

from registry.access.principal import OPERATOR, Principal
from registry.client.bases import add_base_folder
from registry.client.local import LocalClient
from registry.client.transfer import push_folder
from registry.entities import FitQuery
from registry.refs import parse_repo
from registry.services import accounts, bases
from registry.services.context import Registry
from registry.services.fit_query import bases_fitting, fit
from tests.adapter_files import Llama, llama_base, lora_folder


def test_bases_fitting_agrees_with_the_fit_query_base_by_base(
    registry: Registry, client: LocalClient, tmp_path: Path
) -> None:
    wide = Llama(hidden=64, intermediate=128)
    add_base_folder(client, llama_base(tmp_path / "b0", seed=1), ["acme/base-0"])
    add_base_folder(client, llama_base(tmp_path / "b1", seed=2), ["acme/base-1"])  # same structure
    add_base_folder(client, llama_base(tmp_path / "b0", seed=1), ["other/same-weights"])
    add_base_folder(client, llama_base(tmp_path / "w", seed=3, model=wide), ["acme/wide"])
    add_base_folder(client, llama_base(tmp_path / "hidden", seed=4), ["secret/base"])
    pushed = [
        ("acme/linked", {"base": "acme/base-0"}),
        ("acme/unlinked", {}),
        ("acme/wide-one", {"base": "acme/wide"}),
    ]
    for i, (repo, kw) in enumerate(pushed):
        folder = lora_folder(tmp_path / f"a{i}", seed=i, model=wide if "wide" in repo else Llama())
        push_folder(client, folder, repo, **kw)  # type: ignore[arg-type]
    forced = lora_folder(tmp_path / "forced", seed=9, model=wide)
    push_folder(client, forced, "acme/forced", base="acme/base-0", force=True)
    accounts.set_namespace_visibility(registry, "acme", True, principal=OPERATOR)
    for reader in (OPERATOR, Principal.anonymous()):
        readable = bases.list_bases(registry, principal=reader)
        for repo, _ in [*pushed, ("acme/forced", {})]:
            info = client.resolve(f"{repo}:1")
            expected = {}
            for b in readable:
                ref = b.fingerprint or b.names[0].name
                for item in fit(registry, FitQuery(base=ref, limit=500), principal=reader).items:
                    if item.repo == repo and item.version == 1:
                        expected[b.id] = item.tier
            got = {b.id: tier for b, tier in bases_fitting(registry, parse_repo(repo), 1, principal=reader)}
            assert got == expected, (repo, reader.name, info.base_fingerprint)
        if reader.is_anonymous:
            assert all(n.name.startswith("acme/") for b in readable for n in b.names)
    linked = {
        b.names[0].name: tier
        for b, tier in bases_fitting(registry, parse_repo("acme/linked"), 1, principal=OPERATOR)
    }
    assert linked["acme/base-0"] == "exact" and linked["acme/base-1"] == "compatible"
    assert "acme/wide" not in linked
    assert bases_fitting(registry, parse_repo("acme/forced"), 1, principal=OPERATOR) == []
    unlinked = {
        b.names[0].name
        for b, _ in bases_fitting(registry, parse_repo("acme/unlinked"), 1, principal=OPERATOR)
    }
    assert {"acme/base-0", "acme/base-1"} <= unlinked and "acme/wide" not in unlinked
