"""The ports through which projections reach their storage (implemented in ``infra``)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol


class Transaction(Protocol):
    """What a projection may do inside the writer's transaction (``%s`` placeholders)."""

    dialect: str  # "sqlite" or "postgres", for the rare statement that differs

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def fetchall(self) -> list[tuple[Any, ...]]: ...
    def fetchone(self) -> tuple[Any, ...] | None: ...


class ViewDatabase(Protocol):
    """A database of views: SQLite or PostgreSQL."""

    dialect: str

    def transaction(self) -> AbstractContextManager[Transaction]: ...
    def close(self) -> None: ...
