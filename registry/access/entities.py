"""What the access services return: plain entities, never rows, and never a token's secret or hash."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class UserInfo(BaseModel):
    id: int
    name: str
    admin: bool
    created_at: datetime
    grants: dict[str, str]
    """namespace -> role."""


class GrantInfo(BaseModel):
    user: str
    namespace: str
    role: str | None
    """None after a grant was removed."""


class TokenInfo(BaseModel):
    id: int
    user: str
    name: str | None
    prefix: str
    """The secret's first characters (adreg_xxxxxxxx), to recognise it."""
    read_only: bool
    namespaces: list[str] | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime


class NamespaceInfo(BaseModel):
    name: str
    public: bool


class WhoAmI(BaseModel):
    kind: str
    """user, anonymous or operator."""
    name: str
    admin: bool
    grants: dict[str, str]
    token_id: int | None
    read_only: bool
    namespaces: list[str] | None
