"""The quickstart agent: an internal HTTP service that answers `POST /run`.

It says which tenant answered, which run and attempt it handled, and the run's
input, and counts its runs. It echoes nothing secret: not the run's token (which the
server would redact anyway), nor the event's headers and body.
Listens on 127.0.0.1:$PORT; `GET /healthz` is its health check.
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TENANT = os.environ.get("ARMILLARY_TENANT", "unknown")
runs = 0


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send(200, {"status": "ok"})
        else:
            self._send(200, {"agent": TENANT, "runs": runs})

    def do_POST(self) -> None:
        global runs
        if self.path != "/run":
            self._send(404, {"error": "POST /run"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._send(400, {"error": "expected a JSON body"})
            return
        runs += 1
        event = request.get("event") or {}
        handled = {
            "run": request.get("run"),
            "attempt": request.get("attempt"),
            "input": request.get("input"),
            "event": event.get("id"),
            "eventType": event.get("eventType"),
        }
        self._send(200, {"tenant": TENANT, "runs": runs, "handled": handled})

    def log_message(self, format: str, *args: object) -> None:
        print(f"agent[{TENANT}] {format % args}", flush=True)


if __name__ == "__main__":
    port = int(os.environ["PORT"])
    print(f"agent for {TENANT} listening on 127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
