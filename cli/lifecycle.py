"""`adapters rm`, `adapters gc`, `adapters fsck`, `adapters audit`: deleting, garbage collection,
the database checked against the blob store, the audit log."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import click

from cli.app import with_client
from cli.output import console, emit, human_bytes, json_option, say
from cli.params import GRACE, REF, SINCE

if TYPE_CHECKING:
    from registry.client import RegistryClient
    from registry.entities import AuditEventInfo, DeleteResult, FsckReport, GcReport, Page


@click.command(name="rm")
@click.argument("ref", type=REF)
@click.option("--all", "all_versions", is_flag=True, help="REF is a repository: delete all of it.")
@click.option("--force", is_flag=True, help="Also remove the aliases that point at the version.")
@json_option
@with_client
def rm(client: RegistryClient, ref: str, all_versions: bool, force: bool, as_json: bool) -> None:
    """Delete the version REF names (refused while aliased, unless --force), or with --all the
    whole repository REF. Numbers are never given again; blobs go at the next `adapters gc`."""
    from registry.refs import parse_ref

    whole = str(parse_ref(ref)) == str(parse_ref(ref).repo)
    if all_versions:
        if not whole:
            raise click.UsageError("--all takes a repository (ns/name), not a version")
        emit(client.delete_repository(ref), as_json, _deleted)
    elif whole:  # never "the latest" by accident
        raise click.UsageError(f"name the version ({ref}:N, {ref}@ALIAS) or pass --all to delete {ref}")
    else:
        emit(client.delete_version(ref, force), as_json, _deleted)


def _deleted(r: DeleteResult) -> None:
    if r.repository_deleted:
        say(f"deleted {r.repo} ({len(r.versions)} versions)")
    else:
        say(f"deleted {r.repo}:{r.versions[0]} {r.digests[0][:19]}…")
    if r.aliases_removed:
        say(f"removed aliases: {', '.join(r.aliases_removed)}")


@click.command(name="gc")
@click.option("--dry-run", is_flag=True, help="Report what would be reclaimed; delete nothing.")
@click.option(
    "--grace",
    type=GRACE,
    default=None,
    help="Keep unreferenced blobs written within this long (default 24h): pushes in flight.",
)
@json_option
@with_client
def gc(client: RegistryClient, dry_run: bool, grace: timedelta | None, as_json: bool) -> None:
    """Delete the blobs no version, base or export lists (global admins only)."""
    report = client.collect_garbage(dry_run, grace.total_seconds() if grace is not None else None)
    emit(report, as_json, _gc_report)


def _gc_report(r: GcReport) -> None:
    verb = "would reclaim" if r.dry_run else "reclaimed"
    say(
        f"{verb} {r.blobs_reclaimed} blobs, {human_bytes(r.bytes_reclaimed)} "
        f"(scanned {r.blobs_scanned}, kept {r.blobs_kept})"
    )
    if r.xorbs_reclaimed:
        say(f"{verb} {r.xorbs_reclaimed} Xet xorbs, {human_bytes(r.xorb_bytes_reclaimed)}")
    if r.errors:
        say(f"[yellow]{r.errors} blobs could not be deleted; the next gc tries again[/]")


@click.command(name="fsck")
@click.option("--verify", is_flag=True, help="Also hash every listed blob (reads the whole store).")
@json_option
@with_client
def fsck(client: RegistryClient, verify: bool, as_json: bool) -> None:
    """Check the database against the blob store (global admins only; changes nothing): versions
    whose blobs are missing, of another size or (--verify) other bytes, and blobs nothing lists.
    Exits 1 when it finds either."""
    report = client.check_store(verify)
    emit(report, as_json, _fsck_report)
    if not report.clean:
        sys.exit(1)


def _fsck_report(r: FsckReport) -> None:
    checked = "sizes and bytes" if r.verified else "sizes"
    say(
        f"{r.versions_checked} versions, {r.blobs_listed} listed blobs, {r.blobs_scanned} stored "
        f"blobs ({checked} checked)"
    )
    for p in r.problems:
        size = f", stored {human_bytes(p.stored_size)}" if p.stored_size is not None else ""
        say(f"[red]{p.problem}[/red] {p.digest[:19]}… ({human_bytes(p.size)}{size})")
        for where in [*p.versions, *p.bases]:
            say(f"  listed by {where}")
    if r.versions_affected:
        say(
            f"{len(r.versions_affected)} versions affected: restore their blobs from a backup of the "
            "store, or `adapters rm` them"
        )
    if r.unlisted:
        recent = sum(1 for s in r.unlisted if s.recent)
        say(
            f"[yellow]{len(r.unlisted)} blobs nothing lists[/yellow] ({human_bytes(r.bytes_unlisted)}"
            f"{f'; {recent} written within the grace period' if recent else ''}): `adapters gc` "
            "reclaims them"
        )
    if r.clean:
        say("[green]clean[/green]: every listed blob is stored, every stored blob is listed")


@click.command(name="audit")
@click.option("--repo", default=None, help="Only changes to this repository (ns/name).")
@click.option("--user", default=None, help="Only changes made by this user.")
@click.option("--since", type=SINCE, default=None, help="Only changes since (1h, 7d, or an ISO time).")
@click.option("--limit", type=click.IntRange(1, 500), default=100, show_default=True)
@click.option("--cursor", default=None, help="Continue a previous listing (its next_cursor).")
@json_option
@with_client
def audit(
    client: RegistryClient,
    repo: str | None,
    user: str | None,
    since: datetime | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Who changed what, when and from where, newest first."""
    from registry.entities import AuditFilter

    if repo is not None:
        from registry.refs import parse_repo

        parse_repo(repo)
    page = client.audit_events(AuditFilter(repo=repo, user=user, since=since), limit, cursor)
    emit(page, as_json, _audit_table)


def _audit_table(page: Page[AuditEventInfo]) -> None:
    from rich.table import Table

    table = Table(show_edge=False)
    for col in ("id", "when", "who", "from", "action", "target", "details"):
        table.add_column(col)
    for e in page.items:
        details = ", ".join(f"{k}={v}" for k, v in (e.details or {}).items() if v not in (None, [], {}))
        table.add_row(
            str(e.id),
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.actor,
            e.address,
            e.action,
            e.target,
            details[:80],
        )
    console.print(table)
    if page.next_cursor:
        say(f"more: --cursor {page.next_cursor}")


COMMANDS = [rm, gc, fsck, audit]
