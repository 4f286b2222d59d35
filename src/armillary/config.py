"""Server settings, read from `ARMILLARY_*` environment variables: the one place
defaults live. The CLI's own settings (server URL, token) live in cli/context.py.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORT = 7400


class Settings(BaseSettings):
    """Everything the server reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="ARMILLARY_", extra="ignore")

    home: Path = Field(default=Path(".armillary"), description="state directory")
    database_url: str | None = Field(
        default=None, description="Postgres URL; SQLite under `home` when unset"
    )
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    log_level: str = "info"
    node_heartbeat_s: float = Field(default=5.0, gt=0, description="how often nodes report usage")

    def sqlite_path(self) -> Path:
        return self.home / "armillary.db"

    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL of the store: Postgres if configured, else SQLite in `home`."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.sqlite_path().resolve()}"

    def public_url(self) -> str:
        """Where a CLI on this machine reaches the server."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"
