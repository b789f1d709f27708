"""The audit trail: who read which offender's record or which victim's alert, and who
changed which token, when. Append-only, and the schema enforces it.

Rows are only ever inserted; a trigger refuses every UPDATE and DELETE (and, in PostgreSQL,
TRUNCATE), so not even a bug in this program (or a careless hand with a SQL prompt and the
application's login) can rewrite history. An entry names offenders by their MAPPA reference
and alerts by their id, never a victim's reference: the trail says that an alert was read,
and the alert says whose it is.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from projections.ports import Transaction, ViewDatabase

ALLOWED = "allowed"
DENIED = "denied"

_SQLITE_TABLE = (
    "CREATE TABLE IF NOT EXISTS audit_trail (sequence INTEGER PRIMARY KEY AUTOINCREMENT, "
    "at TEXT NOT NULL, actor TEXT NOT NULL, actor_name TEXT NOT NULL, role TEXT NOT NULL, "
    "action TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL)"
)
_SQLITE_GUARDS = tuple(
    f"CREATE TRIGGER IF NOT EXISTS audit_trail_no_{verb.lower()} BEFORE {verb} ON audit_trail "
    "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END"
    for verb in ("UPDATE", "DELETE")
)
_POSTGRES_TABLE = (
    "CREATE TABLE IF NOT EXISTS audit_trail ("
    "sequence BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "at TEXT NOT NULL, actor TEXT NOT NULL, actor_name TEXT NOT NULL, role TEXT NOT NULL, "
    "action TEXT NOT NULL, target TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL)"
)
_POSTGRES_GUARDS = (
    "CREATE OR REPLACE FUNCTION audit_trail_append_only() RETURNS trigger LANGUAGE plpgsql "
    "AS $$ BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$",
    "CREATE OR REPLACE TRIGGER audit_trail_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
    "ON audit_trail FOR EACH STATEMENT EXECUTE FUNCTION audit_trail_append_only()",
)
_COLUMNS = "sequence, at, actor, actor_name, role, action, target, outcome, detail"


@dataclass(frozen=True)
class Actor:
    """Who did something: a token's holder, or a person at the command line."""

    id: str
    name: str
    role: str


@dataclass(frozen=True)
class AuditEntry:
    sequence: int
    at: str
    actor: str
    actor_name: str
    role: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "at": self.at,
            "actor": self.actor,
            "actorName": self.actor_name,
            "role": self.role,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "detail": self.detail,
        }


class AuditTrail:
    """The ``audit_trail`` table, through the tracker's views port."""

    def __init__(self, views: ViewDatabase, clock: Callable[[], datetime]) -> None:
        self.views = views
        self.clock = clock

    def create_tables(self) -> None:
        with self.views.transaction() as tx:
            if tx.dialect == "postgres":
                # Two processes starting at once would race on CREATE OR REPLACE FUNCTION
                # ("tuple concurrently updated"); the lock queues the second.
                tx.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(b"audit_trail"),))
                tx.execute(_POSTGRES_TABLE)
                for statement in _POSTGRES_GUARDS:
                    tx.execute(statement)
            else:
                tx.execute(_SQLITE_TABLE)
                for statement in _SQLITE_GUARDS:
                    tx.execute(statement)

    def record(
        self,
        actor: Actor,
        action: str,
        target: str,
        outcome: str = ALLOWED,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        with self.views.transaction() as tx:
            append(tx, self.clock(), actor, action, target, outcome, detail)

    def entries(self, after: int = 0, limit: int = 100) -> list[AuditEntry]:
        """Entries after sequence number ``after``, oldest first."""
        with self.views.transaction() as tx:
            tx.execute(
                f"SELECT {_COLUMNS} FROM audit_trail WHERE sequence > %s "
                "ORDER BY sequence LIMIT %s",
                (after, limit),
            )
            return [_entry(row) for row in tx.fetchall()]

    def latest(self, limit: int = 100) -> list[AuditEntry]:
        """The last ``limit`` entries, oldest first."""
        with self.views.transaction() as tx:
            tx.execute(
                f"SELECT {_COLUMNS} FROM audit_trail ORDER BY sequence DESC LIMIT %s", (limit,)
            )
            return [_entry(row) for row in reversed(tx.fetchall())]


def append(
    tx: Transaction,
    at: datetime,
    actor: Actor,
    action: str,
    target: str,
    outcome: str = ALLOWED,
    detail: Mapping[str, Any] | None = None,
) -> None:
    tx.execute(
        "INSERT INTO audit_trail (at, actor, actor_name, role, action, target, outcome, detail) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (at.isoformat(), actor.id, actor.name, actor.role, action, target, outcome,
         json.dumps(dict(detail or {}), sort_keys=True)),
    )  # fmt: skip


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    sequence, at, actor, name, role, action, target, outcome, detail = row
    return AuditEntry(
        int(sequence), str(at), str(actor), str(name), str(role), str(action), str(target),
        str(outcome), json.loads(detail),
    )  # fmt: skip


def offenders_named(answer: Any) -> list[str]:
    """Every MAPPA reference an answer lists (under ``mappa_ref``), for the audit trail."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key == "mappa_ref" and isinstance(inner, str):
                    found.add(inner)
                else:
                    walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(answer)
    return sorted(found)
