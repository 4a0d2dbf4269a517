"""`adapters user|grant|token|namespace|whoami|login`: users, their roles per namespace, their
tokens, namespace visibility, and the token this machine sends.

Against a server (ADAPTERS_URL) each command acts as the token's user; with direct database access
(ADAPTERS_DATABASE_URL, no ADAPTERS_URL) as the operator, who may do everything: that is how the
first admin and its token are made. A token's secret is printed once, by `token create`."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli import render
from cli.app import App, pass_app, with_client
from cli.output import emit, emit_json, json_option, say
from cli.params import DURATION, NAMESPACE
from storage.atomic import write_atomic

if TYPE_CHECKING:
    from registry.client import RegistryClient

ROLES = ("read", "write", "admin", "none")


# ---------------------------------------------------------------- users
@click.group()
def user() -> None:
    """Users (global admins only)."""


@user.command(name="add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="A global admin: every right in every namespace.")
@json_option
@with_client
def user_add(client: RegistryClient, name: str, admin: bool, as_json: bool) -> None:
    """Add user NAME; give them roles with `adapters grant`, a token with `adapters token create`."""
    emit(client.add_user(name, admin), as_json, render.user_added)


@user.command(name="list")
@json_option
@with_client
def user_list(client: RegistryClient, as_json: bool) -> None:
    """Every user and their roles."""
    emit(client.list_users(), as_json, render.user_table)


# ---------------------------------------------------------------- grants
@click.command()
@click.argument("user_name", metavar="USER")
@click.argument("namespace", type=NAMESPACE)
@click.argument("role", type=click.Choice(ROLES))
@json_option
@with_client
def grant(client: RegistryClient, user_name: str, namespace: str, role: str, as_json: bool) -> None:
    """Give USER ROLE (read, write or admin) in NAMESPACE, replacing their role there; `none`
    removes it. Admins of NAMESPACE only."""
    emit(client.set_grant(user_name, namespace, None if role == "none" else role), as_json, render.grant_set)


# ---------------------------------------------------------------- tokens
@click.group()
def token() -> None:
    """API tokens: create (the secret is shown once), list (never the secrets), revoke."""


@token.command(name="create")
@click.option("--user", "user_name", metavar="USER", help="Whose token (default: your own user).")
@click.option("--read-only", is_flag=True, help="The token may only read.")
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    type=NAMESPACE,
    help="Only this namespace (repeatable).",
)
@click.option("--expires", type=DURATION, help="Lifetime: 30d, 12h, 90m, 3600s (default: none).")
@click.option("--name", "label", metavar="LABEL", help="A label to recognise the token by.")
@json_option
@with_client
def token_create(
    client: RegistryClient,
    user_name: str | None,
    read_only: bool,
    namespaces: tuple[str, ...],
    expires: timedelta | None,
    label: str | None,
    as_json: bool,
) -> None:
    """Create a token and print its secret, this once. A token only narrows its user's rights."""
    secret, info = client.create_token(
        user_name,
        read_only=read_only,
        namespaces=list(namespaces) if namespaces else None,
        expires_in=expires,
        name=label,
    )
    emit({"token": secret, **info.model_dump(mode="json")}, as_json, render.token_created)


@token.command(name="list")
@click.option("--user", "user_name", metavar="USER", help="USER's tokens (global admins).")
@json_option
@with_client
def token_list(client: RegistryClient, user_name: str | None, as_json: bool) -> None:
    """Tokens, newest first (your own, or everyone's for the operator): never their secrets."""
    emit(client.list_tokens(user_name), as_json, render.token_table)


@token.command(name="revoke")
@click.argument("token_id", metavar="ID", type=click.IntRange(1, 2**31 - 1))
@json_option
@with_client
def token_revoke(client: RegistryClient, token_id: int, as_json: bool) -> None:
    """Revoke token ID at once (its user or a global admin)."""
    emit(client.revoke_token(token_id), as_json, render.token_revoked)


# ---------------------------------------------------------------- namespaces
@click.group()
def namespace() -> None:
    """Namespace visibility: private (the default) or public."""


@namespace.command(name="set")
@click.argument("name", metavar="NS", type=NAMESPACE)
@click.option("--public/--private", default=None, help="Public: anyone reads it, anonymous callers too.")
@click.option(
    "--require-signature/--no-require-signature",
    default=None,
    help="Refuse pushes, Hub commits and alias moves without a signature by a trusted key.",
)
@click.option(
    "--trust-key",
    "trust_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A public key (PEM) or certificate whose signatures satisfy the policy; repeatable.",
)
@click.option(
    "--revoke-key",
    "revoke_keys",
    multiple=True,
    help="A trusted key to revoke (its .pub file or sha256: fingerprint); from then on its "
    "signatures satisfy no policy. Repeatable.",
)
@click.option(
    "--signed-aliases",
    "signed_aliases",
    help="Comma-separated aliases that may point only at signed versions (e.g. production); '' for none.",
)
@json_option
@with_client
def namespace_set(
    client: RegistryClient,
    name: str,
    public: bool | None,
    require_signature: bool | None,
    trust_keys: tuple[Path, ...],
    revoke_keys: tuple[str, ...],
    signed_aliases: str | None,
    as_json: bool,
) -> None:
    """Make NS public or private, and set its signing policy (admins of NS only)."""
    from registry.entities import PolicyChange

    policy_given = require_signature is not None or trust_keys or revoke_keys or signed_aliases is not None
    if public is None and not policy_given:
        raise click.UsageError(
            "give --public/--private or a signing policy option (--require-signature, ...)"
        )
    if public is not None and not policy_given:
        emit(client.set_namespace_visibility(name, public), as_json, render.namespace_set)
        return
    if public is not None:
        client.set_namespace_visibility(name, public)
    revoke = [Path(r).read_text() if Path(r).is_file() else r for r in revoke_keys]
    change = PolicyChange(
        require_signature=require_signature,
        signed_aliases=[a for a in signed_aliases.split(",") if a.strip()]
        if signed_aliases is not None
        else None,
        trust_keys=[p.read_text() for p in trust_keys],
        revoke_keys=revoke,
    )
    emit(client.set_namespace_policy(name, change), as_json, render.policy)


@namespace.command(name="show")
@click.argument("name", metavar="NS", type=NAMESPACE)
@json_option
@with_client
def namespace_show(client: RegistryClient, name: str, as_json: bool) -> None:
    """NS's signing policy: trusted keys (revoked ones with their date), what must be signed."""
    emit(client.get_namespace_policy(name), as_json, render.policy)


@namespace.command(name="list")
@json_option
@with_client
def namespace_list(client: RegistryClient, as_json: bool) -> None:
    """Namespaces with a visibility set, that you may read (every other one is private)."""
    emit(client.list_namespaces(), as_json, render.namespace_table)


# ---------------------------------------------------------------- who am I, login
@click.command()
@json_option
@with_client
def whoami(client: RegistryClient, as_json: bool) -> None:
    """Who the commands act as: the token's user and its rights, or the operator."""
    emit(client.whoami(), as_json, render.whoami)


@click.command()
@click.option(
    "--token",
    "given",
    metavar="TOKEN",
    help="The token (default: read from stdin, which keeps it out of shell history).",
)
@json_option
@pass_app
def login(app: App, given: str | None, as_json: bool) -> None:
    """Check a token against ADAPTERS_URL (whoami) and keep it, mode 0600, in the config directory
    ($XDG_CONFIG_HOME/adapter-registry/token), for the next commands. ADAPTERS_TOKEN overrides it."""
    from registry.access.tokens import is_well_formed
    from registry.client.http import HttpClient
    from registry.errors import BadRequest

    settings = app.settings
    if not settings.url:
        raise BadRequest("ADAPTERS_URL is not set: login keeps a token for a server")
    secret = (given if given is not None else _read_secret()).strip()
    if not is_well_formed(secret):  # never echoed, never sent anywhere
        raise BadRequest("that is not a registry token (adreg_ followed by 43 letters and digits)")
    client = HttpClient(
        settings.url, user=settings.user, cache_dir=settings.effective_cache_dir, token=secret
    )
    try:
        who = client.whoami()
    finally:
        client.close()
    path = settings.token_file
    keep_secret(path, secret)
    overridden = settings.token is not None and bool(settings.token.get_secret_value())
    if as_json:
        emit_json({"whoami": who, "token_file": str(path), "overridden_by_env": overridden})
        return
    say(f"[green]logged in[/green] to {settings.url} as {who.name}; token kept in {path}")
    if overridden:
        say("[yellow]note[/yellow]: ADAPTERS_TOKEN is set and is sent instead; unset it to use this one")


def _read_secret() -> str:
    if sys.stdin.isatty():
        return str(click.prompt("token", hide_input=True))
    return sys.stdin.readline()


def keep_secret(path: Path, secret: str) -> None:
    """Write `secret` to `path` with mode 0600 (its directory 0700), atomically: the file is
    created with those permissions, never widened after the secret is in it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, secret + "\n", mode=0o600)


COMMANDS = [user, grant, token, namespace, whoami, login]
