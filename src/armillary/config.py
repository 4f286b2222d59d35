"""Server settings, read from `ARMILLARY_*` environment variables: the one place
defaults live. The CLI's own settings (server URL, token) live in cli/context.py.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
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
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="largest request body accepted"
    )
    max_body_bytes_in_flight: int | None = Field(
        default=None,
        ge=1024,
        description="request body bytes all requests in flight may hold at once (503 "
        "beyond); unset: 8 × max_body_bytes",
    )
    max_apply_documents: int = Field(
        default=2000,
        ge=1,
        description="most documents one apply or plan may hold (413 beyond): all of them "
        "are written in one transaction, which must end well within a client's timeout",
    )
    body_timeout_s: float = Field(
        default=60, gt=0, description="how long a request may take to send its whole body"
    )
    header_timeout_s: float = Field(
        default=15,
        gt=0,
        description="how long a connection may take to send a request's headers, from when "
        "it opens or its previous answer was sent",
    )
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field(
        default="text", description="the server's own log: text lines, or one JSON object a line"
    )
    node_heartbeat_s: float = Field(
        default=1.0,
        gt=0,
        description="how often nodes send a heartbeat (with their usage); a node is judged "
        "by its heartbeats' age, so keep it well under node_lost_after_s",
    )
    node_lost_after_s: float = Field(
        default=6.0,
        gt=0,
        description="how long a node may be silent (no heartbeat) before it is declared lost "
        "and its replicas are started elsewhere (those with on_node_lost: replace)",
    )
    mode: Literal["dev", "production"] = Field(
        default="dev", description="production refuses to start without a secret key"
    )
    secret_key: str | None = Field(
        default=None, description="the key (or a file holding it) for secrets and tenant tokens"
    )
    secret_key_previous: str | None = Field(
        default=None, description="keys it replaced, comma-separated, while re-encrypting"
    )
    session_ttl_s: float = Field(default=12 * 3600, gt=0, description="dashboard session life")
    stream_recheck_s: float = Field(
        default=10.0,
        gt=0,
        description="how often an open log or exec stream re-checks its caller's credential",
    )
    login_max_failures: int = Field(default=5, ge=1, description="failed logins before lockout")
    login_lockout_s: float = Field(default=15 * 60, gt=0, description="how long a lockout lasts")
    rate_limit_per_s: float = Field(
        default=50.0, gt=0, description="API requests per second per caller, sustained"
    )
    rate_limit_burst: int = Field(default=200, ge=1, description="API requests per caller, burst")
    ws_ping_s: float = Field(
        default=30.0, gt=0, description="how often the live socket (/api/v1/ws) pings its client"
    )
    ws_pong_s: float = Field(
        default=10.0,
        gt=0,
        description="how long a live client may take to answer a ping before it is closed (4000)",
    )
    ws_queue: int = Field(
        default=1000,
        ge=10,
        description="frames a live client may have waiting to be sent; beyond, it is closed "
        "as a slow consumer (4008)",
    )
    ws_queue_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=64 * 1024,
        description="characters a live client may have waiting to be sent, every frame counted "
        "(a listing, errors and pings too); beyond, it is closed as a slow consumer (4008)",
    )
    ws_history: int = Field(
        default=10_000,
        ge=100,
        description="changes the live hub keeps for watches that resume from a resourceVersion",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="browser origins allowed to call the API (CORS)"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or networks (CIDR) of the proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed; none by default, so no client chooses its own address",
    )
    audit_retention_days: float = Field(
        default=90,
        gt=0,
        description="how long audit log rows are kept (older name of "
        "retention_audit_days, which wins when set)",
    )
    audit_cleanup_interval_s: float = Field(
        default=3600, gt=0, description="how often the retention pass runs"
    )
    retention_enabled: bool = Field(
        default=True,
        description="whether this server removes history past its retention (safe on every "
        "replica; turn it off on all but one to save the work)",
    )
    retention_batch: int = Field(
        default=500, ge=1, le=100_000, description="rows removed per write transaction"
    )
    # Retention (control/retention.py): per kind a maximum age in days and a maximum
    # count of rows, the newest kept; 0 turns that limit off. Unfinished runs, and the
    # events of runs still kept, stay whatever their age.
    retention_events_days: float = Field(
        default=30, ge=0, description="how long webhook events are kept (0: forever)"
    )
    retention_events_max: int = Field(
        default=0, ge=0, description="webhook events kept at most, the newest (0: no limit)"
    )
    retention_agent_runs_days: float = Field(
        default=30, ge=0, description="how long finished agent runs are kept (0: forever)"
    )
    retention_agent_runs_max: int = Field(
        default=0, ge=0, description="agent runs kept at most, the newest (0: no limit)"
    )
    retention_provisioning_runs_days: float = Field(
        default=90, ge=0, description="how long finished provisioning runs are kept (0: forever)"
    )
    retention_provisioning_runs_max: int = Field(
        default=0, ge=0, description="provisioning runs kept at most, the newest (0: no limit)"
    )
    retention_schedule_runs_days: float = Field(
        default=30, ge=0, description="how long finished schedule runs are kept (0: forever)"
    )
    retention_schedule_runs_max: int = Field(
        default=0, ge=0, description="schedule runs kept at most, the newest (0: no limit)"
    )
    retention_audit_days: float | None = Field(
        default=None,
        ge=0,
        description="how long audit log rows are kept (0: forever; unset: audit_retention_days)",
    )
    retention_audit_max: int = Field(
        default=0, ge=0, description="audit log rows kept at most, the newest (0: no limit)"
    )
    server_name: str | None = Field(
        default=None,
        max_length=253,
        description="this replica's name among the servers sharing a Postgres store "
        "(armillary servers); unset: <hostname>:<port>. Keep it the same across restarts: "
        "a replica resets only the node sessions recorded under its own name",
    )
    agent_run_worker: bool = Field(
        default=True,
        description="whether this server replica calls agents with queued runs (false: it "
        "only queues them, for another replica sharing the database to run)",
    )
    agent_run_concurrency: int = Field(
        default=8, ge=1, description="agent runs in flight at once, across every server replica"
    )
    agent_run_tenant_concurrency: int = Field(
        default=2, ge=1, description="agent runs of one tenant in flight at once"
    )
    agent_run_timeout_s: float = Field(
        default=60, gt=0, le=3600, description="how long one call to an agent may take"
    )
    agent_run_max_attempts: int = Field(
        default=5, ge=1, le=100, description="attempts before a run is dead"
    )
    agent_run_backoff_s: float = Field(
        default=2, gt=0, description="the wait before the second attempt; doubles after each"
    )
    agent_run_backoff_max_s: float = Field(
        default=300, gt=0, description="the longest wait between two attempts"
    )
    agent_run_lease_s: float = Field(
        default=30, ge=0.5, description="a claim's lease, renewed while the call runs"
    )
    agent_run_poll_s: float = Field(
        default=1.0, gt=0, description="how often the worker looks for due runs"
    )
    metrics: bool = Field(
        default=True,
        description="serve GET /metrics (to viewers) and count requests and queries for it; "
        "false: neither (docs/metrics.md)",
    )
    webhook_catalog_max_age_s: float = Field(
        default=2.0,
        gt=0,
        description="how long webhook sources, their secrets and tenant routing are kept in "
        "memory before they are read again (changes made through this server apply at once; "
        "this bounds how long a change made through another replica takes)",
    )

    @model_validator(mode="after")
    def _budget_holds_one_body(self) -> Settings:
        if self.max_body_bytes_in_flight is not None and (
            self.max_body_bytes_in_flight < self.max_body_bytes
        ):
            raise ValueError(
                f"ARMILLARY_MAX_BODY_BYTES_IN_FLIGHT ({self.max_body_bytes_in_flight}) is "
                f"less than ARMILLARY_MAX_BODY_BYTES ({self.max_body_bytes}): the largest "
                "body allowed could never be read"
            )
        return self

    @model_validator(mode="after")
    def _heartbeats_fit_the_window(self) -> Settings:
        if self.node_heartbeat_s * 2 > self.node_lost_after_s:
            raise ValueError(
                f"ARMILLARY_NODE_HEARTBEAT_S ({self.node_heartbeat_s:g}) is more than half of "
                f"ARMILLARY_NODE_LOST_AFTER_S ({self.node_lost_after_s:g}): one late heartbeat "
                "would declare a live node lost; expected at least two heartbeats per window"
            )
        return self

    def body_budget_bytes(self) -> int:
        """What `max_body_bytes_in_flight` resolves to."""
        if self.max_body_bytes_in_flight is not None:
            return self.max_body_bytes_in_flight
        return 8 * self.max_body_bytes

    def sqlite_path(self) -> Path:
        return self.home / "armillary.db"

    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL of the store: Postgres if configured, else SQLite in `home`."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.sqlite_path().resolve()}"

    def replica_name(self) -> str:
        """This server replica's name (`server_name`, or `<hostname>:<port>`)."""
        return self.server_name or f"{socket.gethostname()}:{self.port}"

    def public_url(self) -> str:
        """Where a CLI on this machine reaches the server."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"
