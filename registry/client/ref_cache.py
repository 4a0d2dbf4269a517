"""A client's cache of immutable references, after huggingface_hub's `refs/` files: once
`repo:7` or `repo@sha256:...` resolved to a version and its files, a later pull of it starts
without asking the registry.

Layout, beside the blob cache (`Settings.effective_cache_dir`, storage.local.local_cache):

    <cache>/refs/<registry>/<namespace>/<name>/7.json          the version: repo, version, digest, files
    <cache>/refs/<registry>/<namespace>/<name>/sha256-<hex>     "7": the version that digest named

`<registry>` is a hash of the registry's address (a server's URL with the caller's token; the
embedded database's URL and file), so two registries never share entries, and neither do two
tokens of one server: an entry lets a pull start from the blob cache without asking the server,
so a caller (another token, or none) that has not resolved the reference itself is asked about
by the server, which decides its access. An entry holds names and digests, never bytes or secrets. As huggingface_hub's `refs/main` names a
commit and `snapshots/<commit>/` holds its files, a digest's file names a number and the number's
file holds what a pull writes.

What is cached, and why it stays true:
- A number names one version for ever: numbers are never given again, even after a deletion
  (services.versions: the repository's counter). Its files are fixed by its digest.
- A digest fixes the files; its file remembers the version that had them when it was resolved
  (a later version with the same content is the same files under another number).
- Aliases and the latest are mutable: never cached (but the number they resolved to is).
- What a pull writes includes a signature attached later (`adapters sign`): this client's own
  signing drops the repository's entries; another's is seen once the entry is dropped (below).
  `pull --verify` always resolves: it checks the signatures the registry holds now.

Deleted versions. An entry may outlive its version: it is never wrong about which files `repo:7`
had, only about whether `repo:7` still exists. The rule:
- this client's own `rm` (of a version or a repository) and `sign` drop the repository's entries
  at once, so `adapters rm acme/x:7; adapters pull acme/x:7` says not_found, as before;
- a pull that starts from an entry still needs every blob: from the local blob cache, else from
  the registry. When the registry no longer gives one (the version was deleted, its blobs are no
  longer readable or were swept, or the caller lost access), the pull drops the entry and resolves
  the reference again, so it says what the registry says (not_found);
- a version deleted elsewhere whose blobs this machine still holds is pulled from them, as
  huggingface_hub serves a pinned commit from its snapshots offline.
Entries are written whole (storage.atomic); a broken one (edited by hand) is a miss. A registry recreated at the same address, numbering
other versions from 1 again, needs its `<cache>/refs/<registry>` folder removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

from registry.client.resolved import Resolved
from registry.errors import NotFound
from registry.refs import Ref, RepoName
from storage.atomic import write_atomic


class RefCache:
    """The entries of one registry (see the module's docstring)."""

    def __init__(self, cache_dir: Path, address: str) -> None:
        key = hashlib.sha256(address.encode("utf-8", "surrogateescape")).hexdigest()[:24]
        self.root = cache_dir / "refs" / key

    def _repo_dir(self, repo: RepoName) -> Path:
        return self.root / repo.namespace / repo.name

    def get(self, ref: Ref) -> Resolved | None:
        """The cached resolution of `ref` when it is a number or a digest, else None."""
        folder = self._repo_dir(ref.repo)
        number = ref.version
        try:
            if number is None and ref.digest is not None:
                number = int((folder / _digest_name(ref.digest)).read_text())
            if number is None:
                return None
            found = Resolved.from_doc(json.loads((folder / f"{number}.json").read_text()), cached=True)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if found.repo != str(ref.repo) or found.version != number:
            return None
        if ref.digest is not None and found.digest != ref.digest:
            return None
        return found

    def put(self, ref: Ref, found: Resolved) -> None:
        """Remember the version `found` (whatever `ref` was: the number it resolved to is immutable),
        and for a digest the number it named. A cache that cannot be written is no error."""
        folder = self._repo_dir(ref.repo)
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
            _keep(folder / f"{found.version}.json", json.dumps(found.doc()))
            if ref.digest is not None:
                _keep(folder / _digest_name(ref.digest), str(found.version))

    def resolve(self, ref: Ref, fetch: Callable[[], Resolved], use_cache: bool = True) -> Resolved:
        """The cached resolution of `ref` (unless `use_cache` is False), else `fetch()`'s, remembered."""
        if use_cache and (hit := self.get(ref)) is not None:
            return hit
        try:
            found = fetch()
        except NotFound:  # the registry says it names nothing (any more): so does the cache
            self.drop(ref)
            raise
        self.put(ref, found)
        return found

    def drop(self, ref: Ref) -> None:
        """Forget what `ref` (a number or a digest) resolved to."""
        folder = self._repo_dir(ref.repo)
        names = []
        if ref.digest is not None:
            pointer = folder / _digest_name(ref.digest)
            with contextlib.suppress(OSError, ValueError):
                names.append(f"{int(pointer.read_text())}.json")
            names.append(pointer.name)
        if ref.version is not None:
            names.append(f"{ref.version}.json")
        for name in names:
            (folder / name).unlink(missing_ok=True)

    def forget(self, repo: RepoName) -> None:
        """Drop every entry of `repo` (after this client deleted or signed one of its versions)."""
        shutil.rmtree(self._repo_dir(repo), ignore_errors=True)


def _digest_name(digest: str) -> str:
    return digest.replace(":", "-")


def _keep(path: Path, text: str) -> None:
    """`path` holds `text`: written whole (storage.atomic) unless it already does. An alias pulled
    again names the same number most times, and reading the entry (0.1 ms here) beats writing it
    again (a file and a folder fsync: 9 ms median, 22 ms worst of 20 on this machine's disk)."""
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    write_atomic(path, text)
