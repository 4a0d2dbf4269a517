"""`adapters alias set|rm`: move or remove a repository's aliases."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cli import render
from cli.app import with_client
from cli.output import emit, json_option
from cli.params import ALIAS, REF, REPO

if TYPE_CHECKING:
    from registry.client import RegistryClient


@click.group()
def alias() -> None:
    """Move or remove aliases (production, staging, ...)."""


@alias.command(name="set")
@click.argument("ref", type=REF)
@click.argument("name", type=ALIAS)
@json_option
@with_client
def alias_set(client: RegistryClient, ref: str, name: str, as_json: bool) -> None:
    """Point alias NAME at REF."""
    emit(client.set_alias(ref, name), as_json, render.alias_set)


@alias.command(name="rm")
@click.argument("repo", type=REPO)
@click.argument("name", type=ALIAS)
@json_option
@with_client
def alias_rm(client: RegistryClient, repo: str, name: str, as_json: bool) -> None:
    """Remove alias NAME from REPO."""
    emit(client.delete_alias(repo, name), as_json, render.alias_removed)


COMMANDS = [alias]
