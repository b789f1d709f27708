"""Who may do what: bearer tokens, their roles and scopes, kept hashed in the views database.

A token is 256 random bits, shown once when issued; only its SHA-256 is stored (in the
``tokens`` table), so a copy of the database gives nobody a usable token. SHA-256 without
salt or stretching is enough here because the secret is random, not a password: there is
nothing to guess from a dictionary, and the hash is the lookup key.

Roles and their scopes:

========  =====================  ========================================================
role      scope                  may
========  =====================  ========================================================
sender    ``AGENCY:AREA``        POST events whose ``source.agency`` and ``area`` match
vlo       a VLO reference        read and work the alerts addressed to that VLO only
unit      an area code           read the caseload (and queries) of that area only
analyst   ``*`` or an area code  read returns, explanations and diffs (``*``: every area,
                                 and the national tables); offender references, never
                                 victim references
admin     ``*``                  issue, list and revoke tokens; read the audit trail
========  =====================  ========================================================
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import get_args

from consumers.interchange import Agency
from projections.ports import Transaction, ViewDatabase

ANY = "*"
TOKEN_PREFIX = "mappa_"
# A page session's secret (the login cookie): not a token, and never accepted as one.
SESSION_PREFIX = "mapps_"
AGENCIES: tuple[str, ...] = get_args(Agency)
AREA_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}"
VLO_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}"
_AREA = re.compile(f"^{AREA_PATTERN}$")
_VLO = re.compile(f"^{VLO_PATTERN}$")


class Role(enum.StrEnum):
    SENDER = "sender"
    VLO = "vlo"
    UNIT = "unit"
    ANALYST = "analyst"
    ADMIN = "admin"


class InvalidScope(ValueError):
    """A role given a scope it cannot have; the message says what it should be."""


def normalise_scope(role: Role, scope: str | None) -> str:
    """The stored form of ``scope`` for ``role``, or :class:`InvalidScope`."""
    scope = (scope or "").strip()
    if role is Role.ADMIN:
        if scope not in ("", ANY):
            raise InvalidScope("an admin token's scope is '*' (or leave it out)")
        return ANY
    if role is Role.SENDER:
        agency, _, area = scope.partition(":")
        if agency not in AGENCIES or not _AREA.match(area):
            raise InvalidScope(
                f"a sender's scope is AGENCY:AREA, with AGENCY one of {', '.join(AGENCIES)} "
                "(e.g. probation:WM)"
            )
        return f"{agency}:{area}"
    if role is Role.VLO:
        if not _VLO.match(scope):
            raise InvalidScope("a vlo's scope is the victim liaison officer's reference")
        return scope
    if role is Role.UNIT:
        if not _AREA.match(scope):
            raise InvalidScope("a unit's scope is an area code (e.g. WM)")
        return scope
    if scope != ANY and not _AREA.match(scope):
        raise InvalidScope("an analyst's scope is '*' (every area) or an area code")
    return scope


@dataclass(frozen=True)
class Principal:
    """The holder of a valid, unrevoked token."""

    token_id: str
    name: str
    role: Role
    scope: str

    def is_sender_for(self, agency: str, area: str) -> bool:
        return self.role is Role.SENDER and self.scope == f"{agency}:{area}"

    def is_vlo(self, vlo_ref: str) -> bool:
        return self.role is Role.VLO and self.scope == vlo_ref

    def is_unit_of(self, area: str) -> bool:
        return self.role is Role.UNIT and self.scope == area

    def is_analyst_of(self, area: str | None) -> bool:
        """An analyst of ``area`` (``None``: of every area, as the national tables need)."""
        if self.role is not Role.ANALYST:
            return False
        return self.scope == ANY or (area is not None and self.scope == area)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


@dataclass(frozen=True)
class TokenRecord:
    """A token as listed (never with its secret or hash)."""

    token_id: str
    name: str
    role: str
    scope: str
    issued_at: str
    issued_by: str
    revoked_at: str | None
    revoked_by: str | None

    def to_json(self) -> dict[str, str | None]:
        return {
            "id": self.token_id,
            "name": self.name,
            "role": self.role,
            "scope": self.scope,
            "issuedAt": self.issued_at,
            "issuedBy": self.issued_by,
            "revokedAt": self.revoked_at,
            "revokedBy": self.revoked_by,
        }


@dataclass(frozen=True)
class IssuedToken:
    record: TokenRecord
    secret: str


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


_COLUMNS = "token_id, name, role, scope, issued_at, issued_by, revoked_at, revoked_by"


class TokenStore:
    """The ``tokens`` table, through the tracker's views port."""

    def __init__(self, views: ViewDatabase, clock: Callable[[], datetime]) -> None:
        self.views = views
        self.clock = clock

    def create_tables(self) -> None:
        with self.views.transaction() as tx:
            tx.execute(
                "CREATE TABLE IF NOT EXISTS tokens (token_id TEXT PRIMARY KEY, "
                "token_hash TEXT NOT NULL UNIQUE, name TEXT NOT NULL, role TEXT NOT NULL, "
                "scope TEXT NOT NULL, issued_at TEXT NOT NULL, issued_by TEXT NOT NULL, "
                "revoked_at TEXT, revoked_by TEXT)"
            )
            # A login on the pages: a secret of its own in the cookie (stored hashed, as a
            # token is), ending at logout or when it expires, whichever is first, and with
            # its token's revocation. The cookie never holds the token itself, which lasts
            # until revoked.
            tx.execute(
                "CREATE TABLE IF NOT EXISTS page_sessions (session_hash TEXT PRIMARY KEY, "
                "token_id TEXT NOT NULL, started_at TEXT NOT NULL, expires_at TEXT NOT NULL, "
                "ended_at TEXT)"
            )

    def start_session(self, principal: Principal, lasting: timedelta) -> str:
        """A new page session for the holder of a token; its secret is in the answer only."""
        secret = SESSION_PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        with self.views.transaction() as tx:
            # Sessions past their time open nothing: forget them, so the table stays small.
            tx.execute("DELETE FROM page_sessions WHERE expires_at <= %s", (_instant(now),))
            tx.execute(
                "INSERT INTO page_sessions (session_hash, token_id, started_at, expires_at) "
                "VALUES (%s, %s, %s, %s)",
                (hash_token(secret), principal.token_id, _instant(now), _instant(now + lasting)),
            )
        return secret

    def session_holder(self, secret: str) -> Principal | None:
        """The principal of a page session not ended nor expired, whose token is not
        revoked."""
        if not secret.startswith(SESSION_PREFIX) or len(secret) > 128:
            return None
        with self.views.transaction() as tx:
            tx.execute(
                "SELECT t.token_id, t.name, t.role, t.scope FROM page_sessions s "
                "JOIN tokens t ON t.token_id = s.token_id WHERE s.session_hash = %s "
                "AND s.ended_at IS NULL AND s.expires_at > %s AND t.revoked_at IS NULL",
                (hash_token(secret), _instant(self.clock())),
            )
            row = tx.fetchone()
        if row is None:
            return None
        token_id, name, role, scope = row
        return Principal(str(token_id), str(name), Role(role), str(scope))

    def end_session(self, secret: str) -> None:
        with self.views.transaction() as tx:
            tx.execute(
                "UPDATE page_sessions SET ended_at = %s "
                "WHERE session_hash = %s AND ended_at IS NULL",
                (_instant(self.clock()), hash_token(secret)),
            )

    def issue(self, role: Role, scope: str | None, name: str, by: str) -> IssuedToken:
        """A new token; its secret is in the answer and nowhere else."""
        name = name.strip()
        if not name:
            raise InvalidScope("give the token a name: who or what holds it")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = TokenRecord(
            token_id=f"tok_{secrets.token_hex(6)}",
            name=name,
            role=role.value,
            scope=normalise_scope(role, scope),
            issued_at=self.clock().isoformat(),
            issued_by=by,
            revoked_at=None,
            revoked_by=None,
        )
        with self.views.transaction() as tx:
            tx.execute(
                "INSERT INTO tokens (token_id, token_hash, name, role, scope, issued_at, "
                "issued_by) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (record.token_id, hash_token(secret), record.name, record.role, record.scope,
                 record.issued_at, record.issued_by),
            )  # fmt: skip
        return IssuedToken(record, secret)

    def revoke(self, token_id: str, by: str) -> TokenRecord | None:
        """Revoke a token at once (None if there is no such token); revoking twice keeps
        the first revocation."""
        with self.views.transaction() as tx:
            tx.execute(
                "UPDATE tokens SET revoked_at = %s, revoked_by = %s "
                "WHERE token_id = %s AND revoked_at IS NULL",
                (self.clock().isoformat(), by, token_id),
            )
            return _get(tx, token_id)

    def all_tokens(self) -> list[TokenRecord]:
        with self.views.transaction() as tx:
            tx.execute(f"SELECT {_COLUMNS} FROM tokens ORDER BY issued_at, token_id")
            return [TokenRecord(*row) for row in tx.fetchall()]

    def authenticate(self, secret: str) -> Principal | None:
        """The principal holding ``secret``, if it is a valid token not revoked."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 128:
            return None
        with self.views.transaction() as tx:
            tx.execute(
                "SELECT token_id, name, role, scope FROM tokens "
                "WHERE token_hash = %s AND revoked_at IS NULL",
                (hash_token(secret),),
            )
            row = tx.fetchone()
        if row is None:
            return None
        token_id, name, role, scope = row
        return Principal(str(token_id), str(name), Role(role), str(scope))


def _instant(moment: datetime) -> str:
    """A moment as stored in ``page_sessions``: UTC, one spelling, so that the text
    compares as the moments do."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _get(tx: Transaction, token_id: str) -> TokenRecord | None:
    tx.execute(f"SELECT {_COLUMNS} FROM tokens WHERE token_id = %s", (token_id,))
    row = tx.fetchone()
    return TokenRecord(*row) if row else None
