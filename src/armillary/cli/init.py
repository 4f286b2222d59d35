"""`armillary init [DIR]`: write a small, runnable stack, org and tenant to start from."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Annotated

import typer

from armillary.cli.console import fail, out
from armillary.errors import Invalid

STACK = """\
# A stack is the template every tenant runs: here one web service.
apiVersion: armillary.dev/v1
kind: Stack
metadata:
  name: hello
spec:
  description: One static web page per tenant.
  components:
    - name: web
      command: ["sh", "-c", "exec python3 -m http.server --bind 127.0.0.1 $PORT"]
      ports:
        - name: http
      health_check:
        http: {path: /, port: http}
        interval_s: 2
      exposure: public
"""

TENANTS = """\
# An org is a customer; each tenant is one of its teams, running one stack.
apiVersion: armillary.dev/v1
kind: Org
metadata:
  name: example
spec:
  display_name: Example Inc.
---
apiVersion: armillary.dev/v1
kind: Tenant
metadata:
  name: example-support
  labels:
    tier: trial
spec:
  org: example
  stack: hello
  env:
    GREETING: hello from example-support
"""


def init(
    directory: Annotated[Path, typer.Argument(help="Where to write the files.")] = Path("."),
    secret_key: Annotated[
        bool,
        typer.Option(
            "--secret-key", help="Print a new ARMILLARY_SECRET_KEY instead (32 random bytes)."
        ),
    ] = False,
) -> None:
    """Scaffold stack.yaml and tenants.yaml; existing files are never overwritten."""
    if secret_key:
        # The server's key format (auth/keys.py): 32 bytes, url-safe base64.
        out.print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(), markup=False)
        return
    files = {directory / "stack.yaml": STACK, directory / "tenants.yaml": TENANTS}
    existing = [str(p) for p in files if p.exists()]
    if existing:
        fail(Invalid(f"{', '.join(existing)} already exist(s); nothing was written"))
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
        out.print(f"wrote {path}")
    out.print(f"Next: armillary plan -f {directory} && armillary apply -f {directory}")


def register(app: typer.Typer) -> None:
    app.command()(init)
