"""`adapters sync`: materialise registry versions as a directory of adapter folders, one per name,
for loaders that read a filesystem: vLLM's filesystem resolver (`VLLM_LORA_RESOLVER_CACHE_DIR`),
LoRAX's `adapter_source=local` and SGLang's `--lora-paths NAME=PATH`.

Layout of DIR:

    .versions/<hex>/            one complete folder per version digest (content-addressed),
                                written from the client's verified cache, then renamed into place
    acme/legal -> ../.versions/<hex>               layout "ref": the name is the reference itself,
    acme/legal@production -> ../.versions/<hex>    so vLLM's `os.path.join(dir, lora_name)` finds it
    acme--legal@production -> .versions/<hex>      layout "flat": one level, for tools that want it
    .adapters-sync.json         which names this tool manages, and what each points at

The flat name of `ns/name@alias` is `ns--name@alias`, and `ns+name@alias` when the namespace itself
holds `--`: `ab/cd--ef` is `ab--cd--ef`, `ab--cd/ef` is `ab--cd+ef`. No namespace, name or alias
holds `+` or `@`, and a namespace without `--` ends before the first `--` (a name cannot begin with
`-`), so no two references share a folder. Every name of a pass is computed and checked before
anything is written: names two references would share (none with these layouts) are skipped and
reported in `skipped`, the others are synced.

A name is a symlink. Moving it is one rename(2) of a new symlink over the old one, so a reader sees
the old version or the new one, never a mix or nothing; the old version's folder stays complete
until a later pass finds no name pointing at it (it survives the pass that moved the name, so a
loader that resolved the link just before the swap can finish reading).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from registry.client.interface import RegistryClient
from registry.client.transfer import write_files
from registry.entities import VersionInfo
from registry.errors import NotFound, OutputExists, RegistryError
from registry.refs import check_alias, parse_repo
from storage import StorageError
from storage.atomic import folder_into_place, remove_folder, symlink_atomic, write_atomic

VERSIONS = ".versions"
STATE = ".adapters-sync.json"
LOCK = ".adapters-sync.lock"
Layout = Literal["ref", "flat"]
Action = Literal["created", "moved", "unchanged", "removed"]


class SyncEntry(BaseModel):
    """One name in DIR after a pass, and what the pass did to it."""

    name: str
    """The folder's path relative to DIR: what vLLM's filesystem resolver takes as `lora_name`."""
    ref: str
    repo: str
    version: int | None
    digest: str | None
    path: str
    action: Action
    previous: str | None = None
    """The digest the name pointed at before it moved (or was removed)."""


class SyncSkip(BaseModel):
    """A reference the pass left alone, and why (its folder is kept as it was, if any)."""

    name: str
    ref: str
    reason: str


class SyncReport(BaseModel):
    dir: str
    entries: list[SyncEntry]
    skipped: list[SyncSkip] = []
    """References not synced this pass: two references that would share one folder, or (with
    --verify) a version whose signature does not check against the trusted keys."""
    pruned: list[str] = []
    """Version folders deleted because no name has pointed at them since the previous pass."""
    error: str | None = None
    """In --watch, a pass that failed (`code: message`); the next pass tries again."""

    @property
    def changed(self) -> list[SyncEntry]:
        return [e for e in self.entries if e.action != "unchanged"]


@dataclass(frozen=True)
class SyncSpec:
    """What to follow. No repos: every repository. No aliases: each repository's latest version and
    every alias it has; with aliases: only those aliases (a repository without one is skipped)."""

    repos: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    layout: Layout = "ref"
    base_model_name: str | None = None
    """Written into each synced adapter_config.json's `base_model_name_or_path` (see README:
    vLLM's filesystem resolver loads an adapter only when that field equals the served model)."""
    trusted: tuple[Any, ...] = ()
    """Public keys (`registry.client.verify.trusted_keys`): when given, a version is written and
    named only once its signature checks against one of them (`sync --verify`)."""

    def __post_init__(self) -> None:
        for repo in self.repos:
            parse_repo(repo)
        for alias in self.aliases:
            check_alias(alias)


FLAT_SEPARATOR = "--"
FLAT_ESCAPED_SEPARATOR = "+"
"""Between namespace and name in the flat layout when the namespace holds `--` (no name holds `+`)."""


def folder_name(ref: str, layout: Layout) -> str:
    """`acme/legal@production` as a path under DIR: itself (layout ref) or `acme--legal@production`
    (layout flat; `ab--cd+ef` for `ab--cd/ef`, whose namespace holds the separator). One-to-one."""
    if layout == "ref":
        return ref
    namespace, rest = ref.split("/", 1)
    sep = FLAT_ESCAPED_SEPARATOR if FLAT_SEPARATOR in namespace else FLAT_SEPARATOR
    return f"{namespace}{sep}{rest}"


def plan_names(
    found: list[tuple[str, str]], name_of: Callable[[str], str]
) -> tuple[dict[str, tuple[str, str]], list[SyncSkip]]:
    """Every (repo, ref)'s folder name (`name_of(ref)`), computed before anything is written:
    name -> (repo, ref) for the names one reference has, and a skip for each reference of a name
    several share (none with `folder_name`, which is one-to-one: a check that keeps a pass going
    should a mapping ever fold two references together)."""
    by_name: dict[str, list[tuple[str, str]]] = {}
    for repo, ref in dict.fromkeys(found):  # a repository listed twice (paging while it changes)
        by_name.setdefault(name_of(ref), []).append((repo, ref))
    names = {name: refs[0] for name, refs in by_name.items() if len(refs) == 1}
    skipped = [
        SyncSkip(
            name=name,
            ref=ref,
            reason=f"{' and '.join(r for _, r in refs)} map to the same folder {name}; use --layout ref",
        )
        for name, refs in sorted(by_name.items())
        if len(refs) > 1
        for _, ref in refs
    ]
    return names, skipped


def targets(client: RegistryClient, spec: SyncSpec) -> list[tuple[str, str]]:
    """(repo, ref) of every name the spec follows, from the registry's repository listing."""
    wanted = set(spec.repos)
    out: list[tuple[str, str]] = []
    cursor: str | None = None
    seen: set[str] = set()
    while True:
        page = client.list_repos(limit=200, cursor=cursor)
        for info in page.items:
            if wanted and info.repo not in wanted:
                continue
            seen.add(info.repo)
            if spec.aliases:
                out += [(info.repo, f"{info.repo}@{a}") for a in spec.aliases if a in info.aliases]
            else:
                out.append((info.repo, info.repo))
                out += [(info.repo, f"{info.repo}@{a}") for a in sorted(info.aliases)]
        cursor = page.next_cursor
        if not cursor:
            break
    missing = wanted - seen
    if missing:
        raise NotFound(f"no repository {sorted(missing)[0]} in the registry", ref=sorted(missing)[0])
    return out


def version_key(digest: str, base_model_name: str | None) -> str:
    """The folder name of one version under .versions/ (a rewritten base name makes another)."""
    key = digest.removeprefix("sha256:")
    if base_model_name is not None:
        key += "-base-" + hashlib.sha256(base_model_name.encode()).hexdigest()[:12]
    return key


def materialize(
    client: RegistryClient, info: VersionInfo, versions_dir: Path, base_model_name: str | None = None
) -> Path:
    """The version's complete folder under `versions_dir`, written once: every blob fetched into
    the client's cache and verified while copied out (write_files), then renamed into place.
    With `base_model_name`, adapter_config.json's `base_model_name_or_path` is set to it first."""
    final = versions_dir / version_key(info.digest, base_model_name)
    if final.is_dir():
        return final
    versions_dir.mkdir(parents=True, exist_ok=True)
    # keep_theirs: another process that renamed the same version first wrote the same files.
    with folder_into_place(final, keep_theirs=True) as staging:
        write_files(client, info.files, staging)
        if base_model_name is not None:
            _set_base_model(staging / "adapter_config.json", base_model_name)
    return final


def _set_base_model(config: Path, name: str) -> None:
    doc = json.loads(config.read_text(encoding="utf-8"))
    doc["base_model_name_or_path"] = name
    write_atomic(config, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def point(link: Path, target: Path) -> None:
    """Make `link` a symlink to `target` (relative) in one rename(2): a reader of `link` sees the
    old target or the new one, never neither."""
    if link.exists() and not link.is_symlink():
        raise OutputExists(f"{link} exists and is not a link this tool made; move it away", path=str(link))
    link.parent.mkdir(parents=True, exist_ok=True)
    symlink_atomic(link, os.path.relpath(target, link.parent))


def _unlink_name(root: Path, name: str) -> None:
    link = root / name
    if link.is_symlink():
        link.unlink()
    parent = link.parent  # drop a namespace folder left empty (layout ref)
    while parent != root:
        with contextlib.suppress(OSError):
            parent.rmdir()
        parent = parent.parent


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One sync at a time per DIR (two `--watch` processes on one folder take turns)."""
    with (root / LOCK).open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _load_state(root: Path) -> dict[str, Any]:
    try:
        doc = json.loads((root / STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"names": {}}
    return {"names": dict(doc.get("names", {}))}


def sync_once(client: RegistryClient, root: Path, spec: SyncSpec) -> SyncReport:
    """One pass: resolve every followed name, write versions not yet in DIR, swap the names that
    moved, remove names that no longer resolve, prune version folders no name has used since the
    previous pass. Every name is planned and checked first: a name two references would share is
    skipped (reported, its folder left as it was), and a path under DIR that is not a link this
    tool made stops the pass (OutputExists) before any name moves."""
    root = root.expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    versions_dir = root / VERSIONS
    with _locked(root):
        state = _load_state(root)
        names: dict[str, dict[str, Any]] = state["names"]
        before = {n["key"] for n in names.values()}
        entries: list[SyncEntry] = []
        planned, skipped = plan_names(targets(client, spec), lambda ref: folder_name(ref, spec.layout))
        for name in planned:
            link = root / name
            if link.exists() and not link.is_symlink():  # before any name moves
                raise OutputExists(
                    f"{link} exists and is not a link this tool made; move it away", path=str(link)
                )
        current = {s.name for s in skipped}  # a shared name: left as it was, neither moved nor removed
        for name, (repo, ref) in planned.items():
            try:
                info = client.resolve(ref)
            except NotFound:  # the alias went away between the listing and now
                continue
            current.add(name)
            if spec.trusted:
                why = _untrusted(client, info, spec.trusted)
                if why is not None:  # the name stays where it was: a fleet loads only what it trusts
                    skipped.append(SyncSkip(name=name, ref=ref, reason=why))
                    continue
            folder = materialize(client, info, versions_dir, spec.base_model_name)
            old = names.get(name)
            link = root / name
            up_to_date = old is not None and old["key"] == folder.name and link.is_symlink()
            if not up_to_date:
                point(link, folder)
            action: Action = "unchanged" if up_to_date else ("created" if old is None else "moved")
            names[name] = {"ref": ref, "repo": repo, "version": info.version, "digest": info.digest}
            names[name]["key"] = folder.name
            entries.append(
                SyncEntry(
                    name=name,
                    ref=ref,
                    repo=repo,
                    version=info.version,
                    digest=info.digest,
                    path=str(link),
                    action=action,
                    previous=old["digest"] if old is not None and action == "moved" else None,
                )
            )
        managed = set(spec.repos)
        for name in sorted(set(names) - current):
            old = names[name]
            if managed and old["repo"] not in managed:
                continue  # another sync (other --repo) into the same DIR manages it
            _unlink_name(root, name)
            del names[name]
            entries.append(
                SyncEntry(
                    name=name,
                    ref=old["ref"],
                    repo=old["repo"],
                    version=None,
                    digest=None,
                    path=str(root / name),
                    action="removed",
                    previous=old["digest"],
                )
            )
        pruned = _prune(versions_dir, keep={n["key"] for n in names.values()} | before)
        write_atomic(root / STATE, json.dumps({"names": names}, indent=2, sort_keys=True))
    return SyncReport(dir=str(root), entries=entries, skipped=skipped, pruned=pruned)


def _untrusted(client: RegistryClient, info: VersionInfo, trusted: tuple[Any, ...]) -> str | None:
    """Why `info` may not be synced under `trusted` keys, or None when its signature checks."""
    from registry.client.verify import check_version
    from registry.errors import InvalidSignature

    try:
        check_version(client, info, list(trusted))
    except InvalidSignature as err:
        return f"{err.code}: {err.message}"
    return None


def _prune(versions_dir: Path, keep: set[str]) -> list[str]:
    """Delete version folders outside `keep` (the ones names use now or used when this pass began,
    so a folder a name just left survives until the next pass)."""
    if not versions_dir.is_dir():
        return []
    pruned = []
    for path in sorted(versions_dir.iterdir()):
        if path.name.startswith(".") or path.name in keep:
            continue
        remove_folder(path)  # renamed first: a half-deleted folder never sits under its name
        pruned.append(path.name)
    return pruned


def watch(
    client: RegistryClient,
    root: Path,
    spec: SyncSpec,
    interval: float,
    on_report: Callable[[SyncReport], None],
    passes: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run a pass every `interval` seconds (`passes` of them, or forever), handing each report to
    `on_report`. A pass that fails (server unreachable, disk full) is reported with its error and
    the next one tries again. Returns the number of passes run."""
    done = 0
    while passes is None or done < passes:
        if done:
            sleep(interval)
        try:
            report = sync_once(client, root, spec)
        except (RegistryError, StorageError, OSError) as err:
            code = getattr(err, "code", "os_error")
            report = SyncReport(dir=str(root), entries=[], error=f"{code}: {err}")
        on_report(report)
        done += 1
    return done
