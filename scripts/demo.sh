#!/bin/sh
# `make demo`: start a server (SQLite under ./.armillary), apply examples/quickstart,
# show what the server holds, then keep serving until Ctrl-C.
set -eu
PORT="${ARMILLARY_PORT:-7400}"
export ARMILLARY_URL="http://127.0.0.1:$PORT"
armillary server --port "$PORT" &
server=$!
cleanup() {
  status=$?
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
i=0
until armillary get orgs >/dev/null 2>&1; do
  i=$((i + 1))
  if [ $i -gt 100 ] || ! kill -0 $server 2>/dev/null; then
    echo "demo: the server did not come up" >&2
    exit 1
  fi
  sleep 0.1
done
armillary plan -f examples/quickstart
armillary apply -f examples/quickstart
echo
armillary get tenants -o wide
echo
armillary get stacks
echo
echo "Server: $ARMILLARY_URL  (API docs: $ARMILLARY_URL/api/v1/docs; token in .armillary/context.json)"
echo "Try: edit examples/quickstart/tenants.yaml, then 'armillary plan -f examples/quickstart'. Ctrl-C stops."
if [ -n "${DEMO_EXIT:-}" ]; then exit 0; fi
wait $server
