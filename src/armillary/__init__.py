"""Armillary: a self-hosted control plane for per-tenant service stacks."""

__version__ = "0.1.0"
