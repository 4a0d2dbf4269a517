"""The Principal: who a request (or a job) acts as. Built by `authentication.authenticate` from a token,
by `Principal.operator` for whoever holds the database, or `Principal.anonymous()`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Role = Literal["read", "write", "admin"]
Action = Role
ROLES: tuple[Role, ...] = ("read", "write", "admin")
RANK: dict[str, int] = {r: i for i, r in enumerate(ROLES)}
Kind = Literal["user", "anonymous", "operator"]


@dataclass(frozen=True)
class Principal:
    """A user (through a token), an anonymous caller, or the operator.

    The operator is whoever holds the database: embedded mode (the user's own files) and the CLI
    with `ADAPTERS_DATABASE_URL` and no `ADAPTERS_URL`. It may do everything; `name` is then only a
    display hint (ADAPTERS_USER), recorded as who pushed.
    """

    kind: Kind
    name: str
    user_id: int | None = None
    admin: bool = False
    """The user is a global admin (a token may still narrow that: `read_only`, `namespaces`)."""
    grants: Mapping[str, Role] = field(default_factory=dict)
    """namespace -> the user's role there."""
    token_id: int | None = None
    read_only: bool = False
    """The token may only read."""
    namespaces: frozenset[str] | None = None
    """The token reaches only these namespaces (None: all the user's)."""
    expires_at: datetime | None = None
    """When the token expires (None: never, or no token); a token never makes a longer-lived one."""
    address: str | None = None
    """Where the call came from (the API sets the client's address), recorded in the audit log;
    None: this machine (embedded mode, the operator, a worker)."""

    @classmethod
    def operator(cls, name: str = "operator") -> Principal:
        return cls("operator", name)

    @classmethod
    def anonymous(cls) -> Principal:
        return cls("anonymous", "anonymous")

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"

    @property
    def is_anonymous(self) -> bool:
        return self.kind == "anonymous"


OPERATOR = Principal.operator()
ANONYMOUS = Principal.anonymous()
