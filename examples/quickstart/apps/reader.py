"""The quickstart reader: a public web page that fetches from the tenant's agent.

`AGENT_URL` is injected because the reader `depends_on` the agent.
"""

import html
import json
import os
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TENANT = os.environ.get("ARMILLARY_TENANT", "unknown")
AGENT_URL = os.environ.get("AGENT_URL", "")


def ask_agent() -> str:
    request = urllib.request.Request(  # noqa: S310 - AGENT_URL is our own agent
        f"{AGENT_URL}/run",
        data=json.dumps({"from": "reader"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
            return response.read().decode()
    except OSError as exc:
        return f"agent unreachable: {exc}"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            body, kind = b"ok", "text/plain"
        else:
            answer = html.escape(ask_agent())
            body = (
                f"<!doctype html><title>{TENANT} reader</title>"
                f"<h1>Reader for {html.escape(TENANT)}</h1>"
                f"<p>The agent says:</p><pre>{answer}</pre>"
            ).encode()
            kind = "text/html; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print(f"reader[{TENANT}] {format % args}", flush=True)


if __name__ == "__main__":
    port = int(os.environ["PORT"])
    print(f"reader for {TENANT} on 127.0.0.1:{port}, agent at {AGENT_URL}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
