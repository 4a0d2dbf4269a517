"""Over real HTTP, on SQLite and PostgreSQL: who may rm, gc and read the audit log (401/403/404,
refusals change nothing), the audit log recording every kind of change with who, when and from
which address, and `adapters rm|gc|audit` with their filters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from cli.main import cli
from registry.access.principal import OPERATOR
from registry.api import create_app
from registry.client.http import HttpClient
from registry.client.transfer import push_folder
from registry.entities import BaseRegistration
from registry.services import accounts, bases
from registry.services.context import Registry
from tests.access.test_matrix import tiny_adapter
from tests.conftest import ServerThread, db_url_for, make_settings, resource_params

pytestmark = pytest.mark.server


@dataclass
class Site:
    url: str
    reg: Registry
    tokens: dict[str, str]
    tmp: Path

    def http(self, who: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who in self.tokens else {}
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)

    def client(self, who: str) -> HttpClient:
        return HttpClient(self.url, who, self.tmp / f"cache-{who}", token=self.tokens[who])

    def cli(self, who: str, *args: str) -> tuple[int, str]:
        env = {
            "ADAPTERS_URL": self.url,
            "ADAPTERS_TOKEN": self.tokens[who],
            "ADAPTERS_HOME": str(self.tmp / "h"),
        }
        result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        return result.exit_code, result.output


@pytest.fixture(params=resource_params("sqlite", "postgresql"))
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    settings = make_settings(tmp_path, db_url_for(str(request.param), tmp_path, request), "file", request)
    reg = Registry.from_settings(settings, migrate=True)
    try:
        with ServerThread(create_app(settings, reg), admin="root") as srv:
            for name in ("wendy", "otto", "ada"):
                accounts.add_user(reg, name, principal=OPERATOR)
            accounts.grant(reg, "wendy", "acme", "write", principal=OPERATOR)
            accounts.grant(reg, "otto", "other", "write", principal=OPERATOR)
            accounts.grant(reg, "ada", "acme", "admin", principal=OPERATOR)
            toks = {"admin": srv.token}
            for who, user, ro in (
                ("writer", "wendy", False),
                ("read_only", "wendy", True),
                ("other", "otto", False),
                ("ns_admin", "ada", False),
            ):
                toks[who], _ = accounts.create_token(reg, user, read_only=ro, principal=OPERATOR)
            site = Site(srv.url, reg, toks, tmp_path)
            writer = site.client("writer")
            push_folder(writer, tiny_adapter(tmp_path / "a", 1), "acme/x", aliases=["prod"])
            push_folder(writer, tiny_adapter(tmp_path / "b", 2), "acme/x")
            other = site.client("other")
            push_folder(other, tiny_adapter(tmp_path / "c", 3), "other/y")
            yield site
    finally:
        reg.close()


def test_who_may_rm_gc_and_read_the_audit_log(site: Site) -> None:
    admin = site.http("admin")
    state = lambda: (admin.get("/v1/versions").json(), admin.get("/v1/repos").json())  # noqa: E731
    before = state()
    expect = {"anonymous": 401, "read_only": 403, "other": 404}
    for who, status in expect.items():
        with site.http(who) as c:
            assert c.delete("/v1/repos/acme/x/versions/2").status_code == status, who
            assert c.delete("/v1/repos/acme/x").status_code == status, who
    assert state() == before
    for who, status in {"anonymous": 401, "read_only": 403, "writer": 403, "ns_admin": 403}.items():
        with site.http(who) as c:
            assert c.post("/v1/gc", json={"dry_run": True}).status_code == status, who
    for who, status in {"anonymous": 401, "writer": 403, "other": 403}.items():
        with site.http(who) as c:
            assert c.get("/v1/audit").status_code == status, who
    with site.http("writer") as c:
        resp = c.delete("/v1/repos/acme/x/versions/1")
        assert resp.status_code == 409 and resp.json()["code"] == "alias_in_use"
        assert c.delete("/v1/repos/acme/x/versions/1", params={"force": "true"}).json()[
            "aliases_removed"
        ] == ["prod"]
        assert c.delete("/v1/repos/acme/x/versions/1").status_code == 404
    assert admin.post("/v1/gc", json={"dry_run": True, "grace_s": 0}).status_code == 200
    with site.http("ns_admin") as c:  # a namespace admin reads its namespaces' events only
        events = c.get("/v1/audit").json()["items"]
        assert events and {e["namespace"] for e in events} == {"acme"}
    everything = admin.get("/v1/audit").json()["items"]
    assert {"acme", "other"} <= {e["namespace"] for e in everything}


def test_every_change_is_audited_with_who_when_and_where(site: Site) -> None:
    t0 = datetime.now(UTC) - timedelta(seconds=1)
    writer, admin = site.http("writer"), site.http("admin")
    assert writer.put("/v1/repos/acme/x/aliases/staging", json={"version": 2}).status_code == 200
    assert writer.delete("/v1/repos/acme/x/aliases/staging").status_code == 200
    merge = {"type": "merge", "params": {"inputs": [{"ref": "acme/x:1", "weight": 1.0}], "into": "acme/m"}}
    job = writer.post("/v1/jobs", json=merge).json()["id"]
    assert writer.post(f"/v1/jobs/{job}/cancel").status_code == 200
    assert writer.delete("/v1/repos/acme/x/versions/2").status_code == 200
    assert writer.delete("/v1/repos/acme/x", params={}).status_code == 200
    assert admin.post("/v1/gc", json={"grace_s": 0}).status_code == 200
    bases.register_base(
        site.reg,
        BaseRegistration(names=[{"name": "acme/base"}], structure_signature="sha256:" + "1" * 64, modules=[]),  # type: ignore[list-item]
        principal=OPERATOR,
    )
    accounts.revoke_token(
        site.reg, accounts.list_tokens(site.reg, "otto", principal=OPERATOR)[0].id, principal=OPERATOR
    )
    accounts.set_namespace_visibility(site.reg, "acme", True, principal=OPERATOR)

    page = admin.get("/v1/audit", params={"limit": 500}).json()
    events = page["items"]
    by_action: dict[str, list[dict[str, object]]] = {}
    for e in events:
        by_action.setdefault(str(e["action"]), []).append(e)
    for action in (
        "push", "alias.set", "alias.rm", "job.submit", "job.cancel", "version.rm", "repo.rm", "gc",
        "base.add", "token.create", "token.revoke", "grant", "user.add", "namespace.set",
    ):  # fmt: skip
        assert action in by_action, action
    push = next(e for e in by_action["push"] if e["target"] == "acme/x:2")
    assert (push["actor"], push["address"], push["repo"], push["namespace"]) == (
        "wendy",
        "127.0.0.1",
        "acme/x",
        "acme",
    )
    assert push["token_id"] is not None and push["details"]["created"] is True  # type: ignore[index]
    assert datetime.fromisoformat(str(push["at"])) >= t0
    gc_event = by_action["gc"][0]
    assert (gc_event["actor"], gc_event["address"]) == ("root", "127.0.0.1")
    assert by_action["base.add"][0]["address"] == "local"  # the operator, on this machine
    assert by_action["version.rm"][0]["details"]["digest"].startswith("sha256:")  # type: ignore[index]
    # filters and paging
    only = admin.get("/v1/audit", params={"repo": "other/y"}).json()["items"]
    assert [e["action"] for e in only] == ["push"]
    mine = admin.get("/v1/audit", params={"user": "wendy", "limit": 2}).json()
    assert len(mine["items"]) == 2 and mine["next_cursor"]
    rest = admin.get("/v1/audit", params={"user": "wendy", "cursor": mine["next_cursor"]}).json()["items"]
    assert {e["actor"] for e in mine["items"] + rest} == {"wendy"}
    assert len(mine["items"]) + len(rest) == sum(e["actor"] == "wendy" for e in events)
    later = admin.get("/v1/audit", params={"since": datetime.now(UTC).isoformat()}).json()["items"]
    assert later == []


def test_cli_rm_gc_audit(site: Site) -> None:
    code, out = site.cli("writer", "rm", "acme/x:1", "--json")
    assert code == 1 and "alias_in_use" in out
    code, out = site.cli("writer", "rm", "acme/x")
    assert code == 2  # a bare repository needs --all
    code, out = site.cli("writer", "rm", "acme/x@prod", "--force", "--json")
    assert code == 0 and json.loads(out)["versions"] == [1]
    code, out = site.cli("writer", "rm", "acme/x", "--all", "--json")
    assert code == 0 and json.loads(out)["versions"] == [2]
    code, out = site.cli("writer", "gc")
    assert code == 1 and "forbidden" in out
    code, out = site.cli("admin", "gc", "--dry-run", "--grace", "0", "--json")
    report = json.loads(out)
    assert code == 0 and report["dry_run"] and report["blobs_reclaimed"] >= 1
    code, out = site.cli("admin", "gc", "--grace", "0")
    assert code == 0 and "reclaimed" in out
    code, out = site.cli("admin", "gc", "--grace", "soon")
    assert code == 2
    code, out = site.cli("admin", "audit", "--repo", "acme/x", "--user", "wendy", "--since", "1h", "--json")
    assert code == 0
    actions = [e["action"] for e in json.loads(out)["items"]]
    assert actions == ["repo.rm", "version.rm", "push", "push"]
    code, out = site.cli("admin", "audit", "--since", "yesterday-ish")
    assert code == 2
    code, out = site.cli("admin", "audit")
    assert code == 0 and "gc" in out and "repo.rm" in out
