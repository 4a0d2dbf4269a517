"""A fingerprint is a fact about bytes, not something a namespace owns (issue 21): several
namespaces register the same weights, each under its own names, and what one of them registered
is never revealed to, linked for, or fit for a caller who may not read it. Through the real CLI
and real HTTP (uvicorn on loopback), on SQLite and PostgreSQL, with tiny random-init models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from peft import LoraConfig
from sqlalchemy import text

from registry.access import authentication
from registry.access.principal import OPERATOR, Principal
from registry.api import create_app
from registry.client.bases import add_base_folder
from registry.client.http import HttpClient
from registry.client.local import LocalClient
from registry.client.transfer import push_folder
from registry.db.engine import alembic_config, make_engine
from registry.entities import BaseRegistration, FitQuery
from registry.services import accounts, bases
from registry.services.context import Registry
from tests.access.test_matrix import base_body, tiny_adapter
from tests.adapters_factory import save_peft, sized_llama
from tests.cli.conftest import Cli
from tests.conftest import ServerThread, db_url_for, make_settings, resource_params

pytestmark = pytest.mark.server

WRITERS = {"alice": "alice", "bob": "bob", "carol": "pub", "dave": "dave"}
"""user -> the one namespace it writes; only `pub` is public."""


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shared-bases")
    sized_llama().save_pretrained(root / "llama")
    sized_llama(seed=1).save_pretrained(root / "other")  # same structure, other weights
    sized_llama(seed=2).save_pretrained(root / "third")
    save_peft(sized_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]), root / "lora")
    return root


@dataclass
class Site:
    url: str
    reg: Registry
    tokens: dict[str, str]
    tmp: Path

    def cli(self, who: str) -> Cli:
        return Cli(
            {
                "ADAPTERS_URL": self.url,
                "ADAPTERS_HOME": str(self.tmp / f"home-{who}"),
                "ADAPTERS_USER": who,
                "ADAPTERS_TOKEN": self.tokens[who],
            }
        )

    def client(self, who: str) -> HttpClient:
        return HttpClient(self.url, who, self.tmp / f"cache-{who}", token=self.tokens[who])

    def http(self, who: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {self.tokens[who]}"}
        )


@pytest.fixture(params=resource_params("sqlite", "postgresql"))
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    settings = make_settings(tmp_path, db_url_for(str(request.param), tmp_path, request), "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    try:
        with ServerThread(create_app(settings, reg), admin="root") as srv:
            accounts.set_namespace_visibility(reg, "pub", True, principal=OPERATOR)
            tokens = {"root": srv.token}
            for user, namespace in WRITERS.items():
                accounts.add_user(reg, user, principal=OPERATOR)
                accounts.grant(reg, user, namespace, "write", principal=OPERATOR)
                tokens[user], _ = accounts.create_token(reg, user, principal=OPERATOR)
            yield Site(srv.url, reg, tokens, tmp_path)
    finally:
        reg.close()


def names(doc: dict[str, Any]) -> list[str]:
    return [n["name"] for n in doc["names"]]


def test_known_weights_register_again_under_a_name_of_ones_own(site: Site, folders: Path) -> None:
    alice, bob = site.cli("alice"), site.cli("bob")
    mine = alice.json("base", "add", str(folders / "llama"), "--name", "alice/llama", "--upload")
    fingerprint = mine["fingerprint"]
    # bob registers the weights alice registered privately: a base of his own, and an answer that
    # differs from one for weights nobody registered only where the two bases do.
    again = bob.json("base", "add", str(folders / "llama"), "--name", "bob/llama", "--upload")
    fresh = bob.json("base", "add", str(folders / "other"), "--name", "bob/other", "--upload")
    assert names(again) == ["bob/llama"] and again["fingerprint"] == fingerprint
    assert again["id"] != mine["id"] and again["uploaded"] is True
    own = {"id", "names", "fingerprint", "created_at"}
    assert {k: v for k, v in again.items() if k not in own} == {
        k: v for k, v in fresh.items() if k not in own
    }
    assert "alice" not in json.dumps(again)
    # The fingerprint resolves, for each, to the base they may read; neither sees the other's.
    assert names(bob.json("base", "show", fingerprint)) == ["bob/llama"]
    assert names(alice.json("base", "show", fingerprint)) == ["alice/llama"]
    assert names(alice.json("base", "show", "alice/llama")) == ["alice/llama"]
    hidden = bob("base", "show", "alice/llama", ok=False)
    nothing = bob("base", "show", "alice/nope", ok=False)
    assert hidden.exit_code == nothing.exit_code == 1
    assert hidden.output.replace("alice/llama", "alice/nope") == nothing.output
    assert {n for b in bob.json("base", "list") for n in names(b)} == {"bob/llama", "bob/other"}
    # Storing the same bytes gave bob no read on alice's copy: his own files serve him.
    with site.http("bob") as c:
        assert c.get("/v1/bases/lookup", params={"ref": "alice/llama"}).status_code == 404
    pulled = bob.json("base", "pull", "bob/llama", "-o", str(site.tmp / "pulled"))
    assert pulled["fingerprint"] == fingerprint and (site.tmp / "pulled" / "model.safetensors").exists()


def test_push_base_folder_links_to_a_base_the_pusher_may_read(site: Site, folders: Path) -> None:
    llama, lora = str(folders / "llama"), str(folders / "lora")
    site.cli("alice")("base", "add", llama, "--name", "alice/llama")
    site.cli("alice")("base", "add", str(folders / "other"), "--name", "alice/other")
    site.cli("carol")("base", "add", llama, "--name", "pub/llama")
    bob, dave = site.cli("bob"), site.cli("dave")

    def linked_to(who: str, repo: str) -> set[str]:
        """The label of the base the caller's version is linked to, as its fit query shows it."""
        fit = site.client(who).fit(FitQuery(base=llama_fp, tier="exact"))
        return {i.base_model or "" for i in fit.items if i.repo == repo}

    # Nothing of dave's: the public copy, never alice's private one.
    pushed = dave.json("push", lora, "dave/a", "--base", llama)
    llama_fp = pushed["info"]["base_fingerprint"]
    assert pushed["info"]["base_linked"] and llama_fp
    assert linked_to("dave", "dave/a") == {"pub/llama"}
    # Once bob registered the weights under his own name, his pushes link to his own copy.
    bob("base", "add", llama, "--name", "bob/llama")
    assert bob.json("push", lora, "bob/a", "--base", llama)["info"]["base_linked"]
    assert linked_to("bob", "bob/a") == {"bob/llama"}
    # Weights only alice registered are, to dave, weights nobody registered: the same answer.
    other = dave("push", lora, "dave/b", "--base", str(folders / "other"), ok=False)
    third = dave("push", lora, "dave/b", "--base", str(folders / "third"), ok=False)
    assert other.exit_code == third.exit_code == 1
    assert "adapters base add" in other.output and "alice" not in other.output
    assert other.output.replace("other", "third") == third.output


def test_fit_by_fingerprint_answers_with_what_the_caller_may_read(site: Site, folders: Path) -> None:
    lora = folders / "lora"
    for who, base, repo in (("alice", "alice/llama", "alice/a"), ("carol", "pub/llama", "pub/p")):
        info = add_base_folder(site.client(who), folders / "llama", [base])
        push_folder(site.client(who), lora, repo, base=base)
    fingerprint = info.fingerprint or ""
    add_base_folder(site.client("bob"), folders / "llama", ["bob/llama"])
    push_folder(site.client("bob"), lora, "bob/b", base="bob/llama")

    def fit(who: str) -> tuple[list[str], dict[str, tuple[str, str | None]], str]:
        with site.http(who) as c:
            resp = c.post("/v1/fit", json={"base": fingerprint})
        assert resp.status_code == 200, resp.text
        doc = resp.json()
        return names(doc["base"]), {i["repo"]: (i["tier"], i["base_model"]) for i in doc["items"]}, resp.text

    base, items, raw = fit("bob")
    # Adapters trained on these weights are exact, whichever namespace's copy they link to.
    assert base == ["bob/llama"] and items == {
        "bob/b": ("exact", "bob/llama"),
        "pub/p": ("exact", "pub/llama"),
    }
    assert "alice" not in raw
    base, items, raw = fit("alice")
    assert base == ["alice/llama"] and set(items) == {"alice/a", "pub/p"} and "bob" not in raw
    base, items, raw = fit("dave")
    assert base == ["pub/llama"] and set(items) == {"pub/p"} and "alice" not in raw and "bob" not in raw
    base, items, _ = fit("root")  # a global admin reads every copy
    assert {tier for tier, _ in items.values()} == {"exact"} and set(items) == {"alice/a", "pub/p", "bob/b"}


def test_a_refused_change_names_no_base_name_the_caller_may_not_read(site: Site) -> None:
    shared = "sha256:" + "d" * 64
    with site.http("root") as admin:
        assert (
            admin.post("/v1/bases", json=base_body(["corp/hidden", "pub/shared"], shared)).status_code == 201
        )
    with site.http("carol") as c:
        # carol may write pub/shared but not corp/hidden: the base is not hers to change.
        resp = c.post("/v1/bases", json=base_body(["pub/shared", "pub/more"], shared))
        assert resp.status_code == 403 and resp.json()["code"] == "forbidden", resp.text
        assert "corp" not in resp.text
        # A name of her own for the same weights is a base of her own.
        resp = c.post("/v1/bases", json=base_body(["pub/mine"], shared))
        assert resp.status_code == 201 and names(resp.json()) == ["pub/mine"], resp.text
    with site.http("root") as admin:
        full = admin.get("/v1/bases/lookup", params={"ref": "pub/shared"}).json()
    assert names(full) == ["corp/hidden", "pub/shared"]


@pytest.mark.parametrize("kind", resource_params("sqlite", "postgresql"))
def test_0009_keeps_every_reference_to_a_base_and_goes_back_to_one_base_per_fingerprint(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Migrations run with foreign keys on (make_engine): rebuilding base_models on SQLite must not
    cascade to its names and module tables, nor unlink versions."""
    url = db_url_for(kind, tmp_path, request)
    reg = Registry.from_settings(make_settings(tmp_path, url, "file", request), migrate=True)
    shared = "sha256:" + "e" * 64
    for user in ("a", "b"):  # each namespace's writer registers the weights under its own name
        accounts.add_user(reg, user, principal=OPERATOR)
        accounts.grant(reg, user, user, "write", principal=OPERATOR)
        writer = authentication.authenticate(reg, accounts.create_token(reg, user, principal=OPERATOR)[0])
        body = BaseRegistration.model_validate(base_body([f"{user}/base"], shared))
        bases.register_base(reg, body, principal=writer)
    client = LocalClient(reg, "tester", reg.store, principal=Principal.operator("tester"))
    pushed = push_folder(client, tiny_adapter(tmp_path / "adapter", 1), "b/x", base="b/base")
    assert pushed.info.base_linked
    reg.close()

    engine = make_engine(url)
    cfg = alembic_config(url)

    def migrate(step: Any, revision: str) -> None:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            step(cfg, revision)

    def rows() -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT n.name, b.fingerprint, (SELECT count(*) FROM base_modules x WHERE"
                        " x.base_model_id = b.id), (SELECT count(*) FROM versions v WHERE"
                        " v.base_model_id = b.id) FROM base_names n JOIN base_models b ON b.id ="
                        " n.base_model_id ORDER BY n.name"
                    )
                )
            ]

    both = [("a/base", shared, 1, 0), ("b/base", shared, 1, 1)]
    assert rows() == both
    migrate(command.downgrade, "0008")  # the first registered keeps the fingerprint
    assert rows() == [("a/base", shared, 1, 0), ("b/base", None, 1, 1)]
    migrate(command.upgrade, "head")
    assert rows() == [("a/base", shared, 1, 0), ("b/base", None, 1, 1)]
    with engine.begin() as conn:  # and two bases may share it again
        conn.execute(text("UPDATE base_models SET fingerprint = :f"), {"f": shared})
    assert rows() == both
    engine.dispose()
