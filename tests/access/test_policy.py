"""The policy and the token format, without a database: every rule of registry.access.policy."""

from __future__ import annotations

import pytest

from registry.access import tokens
from registry.access.policy import (
    BaseNameRes,
    JobRes,
    NamespaceRes,
    may,
    may_write_somewhere,
    readable_namespaces,
)
from registry.access.principal import Principal

ANON = Principal.anonymous()
OPERATOR = Principal.operator("me")
WRITER = Principal("user", "w", user_id=1, grants={"acme": "write"})
READER = Principal("user", "r", user_id=2, grants={"acme": "read"})
NS_ADMIN = Principal("user", "na", user_id=3, grants={"acme": "admin"})
ADMIN = Principal("user", "a", user_id=4, admin=True)
ACME = NamespaceRes("acme")
PUBLIC = NamespaceRes("pub", public=True)


def test_token_format_hash_and_compare() -> None:
    secret = tokens.generate()
    assert tokens.is_well_formed(secret) and secret.startswith("adreg_") and len(secret) == 49
    assert tokens.generate() != secret
    stored = tokens.hash_secret(secret)
    assert len(stored) == 64 and secret not in stored
    other = secret[:-1] + ("y" if secret.endswith("x") else "x")  # always another secret
    assert tokens.matches(secret, stored) and not tokens.matches(other, stored)
    assert tokens.display_prefix(secret) == secret[:14]
    assert not tokens.is_well_formed("hf_anything") and not tokens.is_well_formed(secret + "0")
    assert tokens.parse_bearer(None) is None
    assert tokens.parse_bearer(f"bearer {secret}") == secret
    assert tokens.parse_bearer(f"Basic {secret}") == ""


@pytest.mark.parametrize(
    ("p", "read", "write", "admin"),
    [
        (ANON, False, False, False),
        (READER, True, False, False),
        (WRITER, True, True, False),
        (NS_ADMIN, True, True, True),
        (ADMIN, True, True, True),
        (OPERATOR, True, True, True),
        (Principal("user", "w", user_id=1, grants={"other": "admin"}), False, False, False),
    ],
)
def test_namespace_roles(p: Principal, read: bool, write: bool, admin: bool) -> None:
    assert (may(p, "read", ACME), may(p, "write", ACME), may(p, "admin", ACME)) == (read, write, admin)


def test_public_namespaces_are_read_by_everyone_written_by_writers_only() -> None:
    assert may(ANON, "read", PUBLIC) and not may(ANON, "write", PUBLIC)
    assert may(READER, "read", PUBLIC) and not may(READER, "write", PUBLIC)
    assert may(Principal("user", "p", user_id=9, grants={"pub": "write"}), "write", PUBLIC)


def test_a_token_only_narrows() -> None:
    ro = Principal("user", "w", user_id=1, grants={"acme": "write"}, read_only=True)
    assert may(ro, "read", ACME) and not may(ro, "write", ACME)
    scoped = Principal(
        "user", "w", user_id=1, grants={"acme": "write", "b": "write"}, namespaces=frozenset({"b"})
    )
    assert not may(scoped, "read", ACME) and may(scoped, "write", NamespaceRes("b"))
    assert may(scoped, "read", PUBLIC)  # public stays public
    admin_scoped = Principal("user", "a", user_id=4, admin=True, namespaces=frozenset({"b"}))
    assert may(admin_scoped, "admin", NamespaceRes("b")) and not may(admin_scoped, "read", ACME)
    admin_ro = Principal("user", "a", user_id=4, admin=True, read_only=True)
    assert may(admin_ro, "read", ACME) and not may(admin_ro, "write", ACME)
    # A scope naming a namespace the user has no grant in gives nothing there.
    ghost = Principal("user", "r", user_id=2, grants={}, namespaces=frozenset({"acme"}))
    assert not may(ghost, "read", ACME)


def test_base_names() -> None:
    assert may(WRITER, "write", BaseNameRes("acme/base")) and not may(
        READER, "write", BaseNameRes("acme/base")
    )
    assert not may(READER, "read", BaseNameRes("other/base"))
    assert may(READER, "read", BaseNameRes("gpt2")) and not may(ANON, "read", BaseNameRes("gpt2"))
    assert not may(NS_ADMIN, "write", BaseNameRes("gpt2")) and may(ADMIN, "write", BaseNameRes("gpt2"))
    assert may(ANON, "read", BaseNameRes("pub/base", public=True))


def test_jobs_are_their_submitters_and_admins() -> None:
    assert may(WRITER, "read", JobRes(1)) and may(WRITER, "write", JobRes(1))
    assert not may(READER, "read", JobRes(1)) and not may(ANON, "read", JobRes(None))
    assert may(ADMIN, "write", JobRes(1)) and may(OPERATOR, "write", JobRes(None))
    ro = Principal("user", "w", user_id=1, grants={"acme": "write"}, read_only=True)
    assert may(ro, "read", JobRes(1)) and not may(ro, "write", JobRes(1))


def test_uploads_and_listings() -> None:
    assert may_write_somewhere(WRITER) and not may_write_somewhere(READER) and not may_write_somewhere(ANON)
    assert not may_write_somewhere(
        Principal("user", "w", user_id=1, grants={"acme": "write"}, read_only=True)
    )
    assert readable_namespaces(ADMIN) is None and readable_namespaces(OPERATOR) is None
    assert readable_namespaces(ANON) == frozenset() and readable_namespaces(READER) == {"acme"}
