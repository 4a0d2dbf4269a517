"""`adapters user|grant|token|namespace|whoami|login`: the first admin made with direct database
access (the operator) on SQLite and PostgreSQL, then a team sharing a real server with tokens."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cli.main import cli
from registry.api import create_app
from registry.services.context import Registry
from tests.access.test_matrix import tiny_adapter
from tests.cli.conftest import Cli
from tests.conftest import ServerThread, db_url_for, make_settings, resource_params

pytestmark = pytest.mark.server


def refused(result: Any, code: str) -> None:
    assert result.exit_code == 1, result.output
    assert f"error ({code})" in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("db", resource_params("sqlite", "postgresql"))
def test_operator_makes_the_first_admin_then_a_team_shares_the_server(
    db: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path / "server", db_url_for(db, tmp_path, request), "file", request)
    operator = Cli(
        {
            "ADAPTERS_DATABASE_URL": settings.effective_database_url,
            "ADAPTERS_BLOB_URL": settings.effective_blob_url,
            "ADAPTERS_HOME": str(tmp_path / "operator-home"),
            "ADAPTERS_URL": "",
            "ADAPTERS_TOKEN": "",
            "XDG_CONFIG_HOME": str(tmp_path / "operator-config"),
        }
    )
    # ---- operator mode: whoever holds the database makes the first admin and its token
    assert operator.json("whoami")["kind"] == "operator"
    assert operator.json("user", "add", "root", "--admin")["admin"] is True
    first = operator.json("token", "create", "--user", "root", "--name", "first admin")
    assert first["token"].startswith("adreg_") and first["id"] >= 1 and first["user"] == "root"
    refused(operator("user", "add", "root", ok=False), "conflict")

    reg = Registry.from_settings(settings, migrate=True)
    try:
        with ServerThread(create_app(settings, reg), admin="root") as srv:

            def as_(token: str | None, home: str, **extra: str) -> Cli:
                return Cli(
                    {
                        "ADAPTERS_URL": srv.url,
                        "ADAPTERS_TOKEN": token or "",
                        "ADAPTERS_HOME": str(tmp_path / home),
                        "XDG_CONFIG_HOME": str(tmp_path / f"{home}-config"),
                        **extra,
                    }
                )

            _team(as_, first["token"], tmp_path)
    finally:
        reg.close()


def _team(as_: Any, admin_token: str, tmp_path: Path) -> None:
    admin = as_(admin_token, "admin")
    me = admin.json("whoami")
    assert (me["kind"], me["name"], me["admin"]) == ("user", "root", True)

    # ---- users and grants
    added = admin.json("user", "add", "alice")
    assert (added["name"], added["admin"], added["grants"]) == ("alice", False, {})
    admin.json("user", "add", "bob")
    assert admin.json("grant", "alice", "acme", "write") == {
        "user": "alice",
        "namespace": "acme",
        "role": "write",
    }
    users = {u["name"]: u for u in admin.json("user", "list")}
    assert set(users) == {"root", "alice", "bob"}
    assert users["alice"]["grants"] == {"acme": "write"} and users["alice"]["admin"] is False
    assert "alice" in admin("user", "list").stdout

    # ---- tokens: created once, listed without their secrets
    ro = admin.json(
        "token", "create", "--user", "alice", "--read-only", "--namespace", "acme", "--expires", "30d",
        "--name", "ci",
    )  # fmt: skip
    assert ro["token"].startswith("adreg_") and isinstance(ro["id"], int)
    assert (ro["user"], ro["read_only"], ro["namespaces"], ro["name"]) == ("alice", True, ["acme"], "ci")
    expires = datetime.fromisoformat(ro["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)
    rw = admin.json("token", "create", "--user", "alice")
    human = admin("token", "create", "--user", "bob")
    bob_token = human.stdout.strip()
    assert bob_token.startswith("adreg_") and human.stdout.count("\n") == 1  # the secret, alone
    assert "shown this once" in human.stderr and bob_token not in human.stderr

    listed = admin.json("token", "list")
    assert {t["id"] for t in listed} >= {ro["id"], rw["id"]}
    table = admin("token", "list").stdout
    for secret in (ro["token"], rw["token"], bob_token, admin_token):
        assert secret not in str(listed) and secret not in table
    assert all("token" not in t and "secret_hash" not in t for t in listed)
    assert ro["token"][:14] in table  # the prefix, to recognise it

    # ---- what each token may do
    alice = as_(rw["token"], "alice")
    who = alice.json("whoami")
    assert (who["name"], who["admin"], who["grants"]) == ("alice", False, {"acme": "write"})
    pushed = alice.json("push", str(tiny_adapter(tmp_path / "adapter", seed=1)), "acme/x")
    assert pushed["version"] == 1
    refused(alice("user", "add", "mallory", ok=False), "forbidden")  # not a global admin
    refused(alice("grant", "bob", "acme", "read", ok=False), "forbidden")  # writer, not admin of acme
    assert [t["id"] for t in alice.json("token", "list")] == sorted(
        [t["id"] for t in listed if t["user"] == "alice"], reverse=True
    )

    reader = as_(ro["token"], "reader")
    assert reader.json("whoami")["read_only"] is True
    assert reader.json("show", "acme/x")["version"] == 1
    refused(reader("alias", "set", "acme/x:1", "production", ok=False), "forbidden")

    # ---- public namespaces: anonymous callers read them
    anonymous = as_(None, "anonymous")
    refused(anonymous("show", "acme/x", ok=False), "not_found")  # private: as if it did not exist
    refused(anonymous("whoami", ok=False), "unauthenticated")
    refused(as_(bob_token, "bob")("namespace", "set", "acme", "--public", ok=False), "not_found")
    assert admin.json("namespace", "set", "acme", "--public") == {"name": "acme", "public": True}
    assert anonymous.json("show", "acme/x")["version"] == 1
    assert anonymous.json("namespace", "list") == [{"name": "acme", "public": True}]
    admin.json("namespace", "set", "secret", "--private")
    assert anonymous.json("namespace", "list") == [{"name": "acme", "public": True}]
    assert {n["name"] for n in admin.json("namespace", "list")} == {"acme", "secret"}

    # ---- revoke: the token is refused at once
    revoked = admin.json("token", "revoke", str(ro["id"]))
    assert revoked["revoked_at"] is not None
    refused(reader("whoami", ok=False), "unauthenticated")
    refused(reader("show", "acme/x", ok=False), "unauthenticated")  # even where anonymous could read
    assert admin.json("token", "revoke", str(ro["id"]))["revoked_at"] == revoked["revoked_at"]

    # ---- removing a grant
    assert admin.json("grant", "alice", "acme", "none")["role"] is None
    assert alice.json("whoami")["grants"] == {}

    # ---- login: verified with whoami, kept 0600, used by the next command; ADAPTERS_TOKEN overrides
    carol = as_(None, "carol")
    bad = carol.runner.invoke(cli, ["login"], input=ro["token"] + "\n", env=carol.env)
    refused(bad, "unauthenticated")  # a revoked token is not kept
    token_file = tmp_path / "carol-config" / "adapter-registry" / "token"
    assert not token_file.exists()
    refused(carol("login", "--token", "not-a-token", ok=False), "bad_request")
    logged = carol.runner.invoke(cli, ["login", "--json"], input=bob_token + "\n", env=carol.env)
    assert logged.exit_code == 0, logged.output
    assert bob_token not in logged.output
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    assert token_file.read_text().strip() == bob_token
    assert carol.json("whoami")["name"] == "bob"
    overridden = Cli({**carol.env, "ADAPTERS_TOKEN": admin_token})
    assert overridden.json("whoami")["name"] == "root"
    assert carol.json("login", "--token", rw["token"])["whoami"]["name"] == "alice"  # replaces it
    assert carol.json("whoami")["name"] == "alice"


def test_embedded_has_no_authentication(embedded: Cli) -> None:
    """The embedded default is the user's own files: every command acts as the operator."""
    assert embedded.json("whoami")["kind"] == "operator"
    assert embedded.json("user", "add", "ann")["name"] == "ann"
    assert embedded.json("token", "create", "--user", "ann", "--expires", "90m")["token"].startswith("adreg_")
    assert embedded.json("namespace", "set", "acme", "--public")["public"] is True
    refused(embedded("token", "create", ok=False), "bad_request")  # the operator is no user
    refused(embedded("login", "--token", "x", ok=False), "bad_request")  # no server to log in to


@pytest.mark.parametrize(
    "args",
    [
        ("token", "create", "--user", "a", "--expires", "5y"),
        ("token", "create", "--user", "a", "--expires", "0s"),
        ("token", "create", "--user", "a", "--expires", "99999d"),
        ("token", "create", "--user", "a", "--namespace", "Acme"),
        ("token", "revoke", "0"),
        ("grant", "alice", "acme", "owner"),
        ("grant", "alice", "Not A Namespace", "read"),
        ("namespace", "set", "acme"),
        ("namespace", "set", "acme", "--public", "--private", "extra"),
    ],
)
def test_malformed_values_are_usage_errors(embedded: Cli, args: tuple[str, ...]) -> None:
    assert embedded(*args, ok=False).exit_code == 2


def test_durations() -> None:
    from cli.params import DURATION

    assert DURATION.convert("30d", None, None) == timedelta(days=30)
    assert DURATION.convert("12h", None, None) == timedelta(hours=12)
    assert DURATION.convert("90m", None, None) == timedelta(minutes=90)
    assert DURATION.convert("3600s", None, None) == timedelta(hours=1)
    assert DURATION.convert("3600", None, None) == timedelta(hours=1)
    assert DURATION.convert("2w", None, None) == timedelta(days=14)


def test_serve_says_how_to_make_the_first_admin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.draining import DrainingServer

    ran: list[object] = []  # what would be served: the server is not started
    monkeypatch.setattr(DrainingServer, "run", lambda self, sockets=None: ran.append(self.config.app))
    env = {
        "ADAPTERS_HOME": str(tmp_path / "home"),
        "ADAPTERS_URL": "",
        "ADAPTERS_DATABASE_URL": "postgresql://u:hunter2@127.0.0.1:1/x",
        "ADAPTERS_BLOB_URL": "",
    }
    run = Cli({**env, "ADAPTERS_DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}"})
    first = run("--no-worker", "serve")
    assert ran and "no user exists" in first.stderr
    assert (
        f"ADAPTERS_DATABASE_URL='sqlite:///{tmp_path / 'r.db'}' adapters user add admin --admin"
        in first.stderr
    )
    assert "adapters token create --user admin" in first.stderr
    run("user", "add", "admin", "--admin")
    assert "no user exists" not in run("--no-worker", "serve").stderr

    from cli.output import err_console
    from cli.server import _first_admin_howto

    with err_console.capture() as captured:
        _first_admin_howto(env["ADAPTERS_DATABASE_URL"])
    assert "hunter2" not in captured.get() and "u:***@127.0.0.1" in captured.get()
