"""Parse and print references: ns/name, ns/name:3, ns/name@alias, ns/name@sha256:<hex>."""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.bounds import INT32_MAX
from registry.errors import InvalidReference

NAME_PART = r"[a-z0-9][a-z0-9._-]{0,63}"
# Used with fullmatch only: `$` also matches before a trailing newline, so "acme/ok\n" passed `.match`.
_NAME_RE = re.compile(NAME_PART)
_ALIAS_RE = re.compile(r"[a-z][a-z0-9._-]{0,63}")
_REF_RE = re.compile(
    rf"(?P<ns>{NAME_PART})/(?P<name>{NAME_PART})"
    r"(?::(?P<version>[1-9][0-9]{0,9})|@(?P<digest>sha256:[0-9a-f]{64})|@(?P<alias>[^/:@]+))?"
)
RESERVED_ALIASES = {"latest"}


@dataclass(frozen=True)
class RepoName:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Ref:
    """A reference to one version. At most one of version, alias, digest is set; none = latest."""

    repo: RepoName
    version: int | None = None
    alias: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.repo}:{self.version}"
        if self.alias is not None:
            return f"{self.repo}@{self.alias}"
        if self.digest is not None:
            return f"{self.repo}@{self.digest}"
        return str(self.repo)


def parse_repo(text: str) -> RepoName:
    parts = text.split("/")
    if len(parts) != 2 or not all(_NAME_RE.fullmatch(p) for p in parts):
        raise InvalidReference(
            f"{text!r} is not a repository name: use namespace/name, each part lowercase "
            "[a-z0-9][a-z0-9._-]{0,63}",
            ref=text,
        )
    return RepoName(parts[0], parts[1])


def check_alias(alias: str) -> str:
    if not _ALIAS_RE.fullmatch(alias) or alias in RESERVED_ALIASES:
        raise InvalidReference(
            f"{alias!r} is not a valid alias: lowercase, starting with a letter, "
            "[a-z0-9._-], at most 64 characters, not 'latest'",
            alias=alias,
        )
    return alias


def parse_ref(text: str) -> Ref:
    m = _REF_RE.fullmatch(text)
    if not m:
        raise InvalidReference(
            f"{text!r} is not a reference: use ns/name, ns/name:3, ns/name@alias or ns/name@sha256:<hex>",
            ref=text,
        )
    repo = RepoName(m["ns"], m["name"])
    if m["version"]:
        version = int(m["version"])
        if version > INT32_MAX:  # version numbers are integer columns
            raise InvalidReference(f"{text!r}: version {version} is out of range", ref=text)
        return Ref(repo, version=version)
    if m["digest"]:
        return Ref(repo, digest=m["digest"])
    if m["alias"]:
        if m["alias"] == "latest":
            return Ref(repo)
        return Ref(repo, alias=check_alias(m["alias"]))
    return Ref(repo)


def ref_or_none(text: object) -> Ref | None:
    """`text` as a reference, or None where it is none (not text, or malformed): for readers of
    recorded values (a lineage parent written under an older rule, a page's link, a name a
    serving engine passes) that fall back instead of refusing."""
    if not isinstance(text, str):
        return None
    try:
        return parse_ref(text)
    except InvalidReference:
        return None


def repo_or_none(text: str) -> RepoName | None:
    """`text` as a repository name, or None where it is none (the Hub's ids also name bases)."""
    try:
        return parse_repo(text)
    except InvalidReference:
        return None


def check_ref(text: str) -> str:
    """`text` if it is a well-formed reference (a validator for parameters kept as text)."""
    parse_ref(text)
    return text


def check_repo(text: str) -> str:
    """`text` if it is a well-formed repository name (a validator for parameters kept as text)."""
    parse_repo(text)
    return text
