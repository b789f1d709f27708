"""Typed settings, read from the environment (``MAPPA_*``) and nowhere else.

The embedded default (SQLite files under ``MAPPA_DATA_DIR``, no servers) is what you get
with nothing set; ``MAPPA_DATABASE_URL`` switches the event store and views to PostgreSQL
and ``MAPPA_KAFKA_BOOTSTRAP`` names the Kafka brokers of the production pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "mappa"


class Settings(BaseSettings):
    """Everything the composition root needs; see the README for each variable."""

    model_config = SettingsConfigDict(env_prefix="MAPPA_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None
    database_schema: str = "public"
    kafka_bootstrap: str | None = None
    kafka_topic_prefix: str = ""
    areas: Path = Path(__file__).with_name("areas.json")
    log_format: Literal["console", "json"] = "console"
    log_level: str = "info"
    batch_size: int = Field(default=1000, ge=1)
    # Encryption at rest of the event store's event state (AES-GCM, base64 of 16, 24 or 32
    # bytes); a secret, so it never shows in a repr or a log line.
    cipher_key: SecretStr | None = None
    # The HTTP service (mappa serve): where it listens, and the limits on its input.
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    http_max_body_bytes: int = Field(default=1_048_576, ge=1)
    http_max_batch: int = Field(default=1000, ge=1)
    http_rate_per_minute: int = Field(default=600, ge=1)

    @property
    def uses_postgres(self) -> bool:
        return bool(self.database_url)

    def eventsourcing_environment(self) -> dict[str, str]:
        """The ``eventsourcing`` library's settings for the configured store."""
        return {**self._store_environment(), **self._cipher_environment()}

    def _cipher_environment(self) -> dict[str, str]:
        if not self.cipher_key:
            return {}
        return {
            "CIPHER_TOPIC": "eventsourcing.cipher:AESCipher",
            "CIPHER_KEY": self.cipher_key.get_secret_value(),
        }

    def _store_environment(self) -> dict[str, str]:
        if not self.database_url:
            return {
                "PERSISTENCE_MODULE": "infra.eventstore:IndexedSQLiteFactory",
                "SQLITE_DBNAME": str(self.data_dir / "events.sqlite"),
                "SQLITE_LOCK_TIMEOUT": "30",
            }
        url = urlparse(self.database_url)
        return {
            "PERSISTENCE_MODULE": "infra.eventstore:IndexedPostgresFactory",
            "POSTGRES_DBNAME": url.path.lstrip("/") or "mappa",
            "POSTGRES_HOST": url.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_USER": unquote(url.username or "mappa"),
            "POSTGRES_PASSWORD": unquote(url.password or ""),
            "POSTGRES_SCHEMA": self.database_schema,
            "POSTGRES_POOL_SIZE": "2",
            "POSTGRES_MAX_OVERFLOW": "4",
        }
