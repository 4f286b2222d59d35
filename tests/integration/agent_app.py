"""A tenant's agent for the agent run tests: stdlib only, run by a real node daemon.

Listens on $PORT: `GET /healthz`, and `POST /run` as the run worker calls it. What
it does with a run comes from, in order of precedence, the run's `input`, the
`agent` object of the event's JSON body, and env: `sleep_s` (AGENT_SLEEP_S) before
answering; `sleep_first_s`, only on the first call of a run id; `status`
(AGENT_STATUS) to answer with; `echo_token`, to put the run's token in its answer
(as a careless agent would). With the run's token it asks the API who it is
(`/api/v1/auth/whoami`) and puts the answer in its own.

It appends one JSON line per happening to `calls.log` in $AGENT_RECORD_DIR (shared by
every agent of a test module, under an exclusive lock so the order is the order of
events): `start` when a call arrives, `end` just before it answers, `done` the first
time a run id completes with a 2xx, `token` with the token it echoed, `replay` when a run id it completed before comes
again (answered as the first time, like a real agent honouring Idempotency-Key).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECORD = Path(os.environ.get("AGENT_RECORD_DIR") or os.environ["ARMILLARY_DATA_DIR"])
LOG = RECORD / "calls.log"
DONE = RECORD / "done"
SEEN: set[str] = set()
LOCK = threading.Lock()


def note(kind: str, run: str, **extra: Any) -> None:
    line = json.dumps({"e": kind, "run": run, "pid": os.getpid(), **extra}) + "\n"
    with LOG.open("a") as log:
        fcntl.flock(log, fcntl.LOCK_EX)
        log.write(line)
        log.flush()
        fcntl.flock(log, fcntl.LOCK_UN)


def behaviour(call: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {
        "sleep_s": float(os.environ.get("AGENT_SLEEP_S", "0")),
        "status": int(os.environ.get("AGENT_STATUS", "200")),
        "echo_token": False,
    }
    event_json = (call.get("event") or {}).get("json")
    if isinstance(event_json, dict) and isinstance(event_json.get("agent"), dict):
        found.update(event_json["agent"])
    found.update(
        {k: v for k, v in (call.get("input") or {}).items() if k in found or k == "sleep_first_s"}
    )
    return found


def whoami(call: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        call["context"]["api"] + "/api/v1/auth/whoami",
        headers={"Authorization": f"Bearer {call['token']}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return {"status": exc.code}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._answer(200 if self.path == "/healthz" else 404, {"ok": self.path == "/healthz"})

    def do_POST(self) -> None:
        call = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        run = call["run"]
        key = self.headers.get("Idempotency-Key")
        tenant = call["tenant"]
        note("start", run, key=key, auth=self.headers.get("Authorization"), tenant=tenant)
        done = DONE / f"{run}.json"
        if done.exists():
            note("replay", run, tenant=tenant)
            note("end", run, tenant=tenant)
            self._answer(200, json.loads(done.read_text()))
            return
        wanted = behaviour(call)
        with LOCK:
            first = run not in SEEN
            SEEN.add(run)
        time.sleep(
            float(wanted["sleep_s"]) + (float(wanted.get("sleep_first_s", 0)) if first else 0)
        )
        status = int(wanted["status"])
        body = {
            "run": run,
            "tenant": call["tenant"],
            "input": call["input"],
            "event": call["event"]["id"] if call["event"] else None,
            "routingKey": call["event"]["routingKey"] if call["event"] else None,
            "whoami": whoami(call),
            "attempt": call["attempt"],
        }
        if wanted["echo_token"]:
            body["token"] = call["token"]
            note("token", run, token=call["token"])
        if 200 <= status < 300:
            with LOCK:
                if not done.exists():
                    done.write_text(json.dumps(body))
                    note("done", run, tenant=tenant)
        note("end", run, tenant=tenant)
        self._answer(status, body)

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the worker gave up on this call (its timeout); it will call again


def main() -> None:
    DONE.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
