#!/bin/sh
# Start the machine's Postgres cluster if it is installed and not answering, so the
# Postgres half of the suite runs. Tests skip Postgres only when it is absent and
# CI is not "true"; under CI=true they fail instead.
port_open() {
  python3 - <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", 5432)) == 0 else 1)
PY
}
port_open && exit 0
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  i=0
  while [ $i -lt 30 ]; do port_open && exit 0; i=$((i + 1)); sleep 1; done
fi
echo "ensure-postgres: no Postgres at 127.0.0.1:5432; its tests will skip (or fail under CI=true)" >&2
exit 0
