"""Decisions and the loops that act on them: the pure helpers (`plan`, `expand`,
`revisions`, `references`, `cron`, `firing`, `schedule_status`) and the controllers
that run them under `driver` (`tenants`, `schedules`), with apply and provisioning."""
