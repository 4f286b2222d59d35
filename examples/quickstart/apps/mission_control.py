"""The quickstart mission control: a public page about the tenant's stack.

It shows the tenant, the agent it talks to, and what the seed job left in the
tenant's data directory.
"""

import html
import os
import pathlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TENANT = os.environ.get("ARMILLARY_TENANT", "unknown")
DATA = pathlib.Path(os.environ.get("ARMILLARY_DATA_DIR", "."))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            body, kind = b"ok", "text/plain"
        else:
            seed = DATA / "seed.txt"
            seeded = seed.read_text() if seed.exists() else "(not seeded)"
            body = (
                f"<!doctype html><title>{TENANT} mission control</title>"
                f"<h1>Mission control: {html.escape(TENANT)}</h1>"
                f"<p>Agent: {html.escape(os.environ.get('AGENT_URL', '-'))}</p>"
                f"<p>Seed: {html.escape(seeded)}</p>"
            ).encode()
            kind = "text/html; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print(f"mission-control[{TENANT}] {format % args}", flush=True)


if __name__ == "__main__":
    port = int(os.environ["PORT"])
    print(f"mission control for {TENANT} on 127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
