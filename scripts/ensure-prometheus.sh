#!/bin/sh
# Install Debian's `prometheus` package (promtool and the server) when promtool is
# missing, so the metrics tests run: tests/unit/test_metrics_rules.py and
# tests/integration/test_prometheus.py start their own Prometheus, on a free port with
# their own config and data directory. Tests skip them only when it is absent and CI
# is not "true"; under CI=true they fail instead.
#
# The package's own service is not wanted: nothing here reads its port 9090. Where a
# service manager would start it on install, policy-rc.d refuses (exit 101) for the
# install's duration, and a service already running is left as it is.
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-prometheus: no apt-get; install Prometheus (promtool and prometheus) yourself" >&2
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
policy=/usr/sbin/policy-rc.d
added=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && added=1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends prometheus >/dev/null ||
  { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y --no-install-recommends prometheus >/dev/null; }
status=$?
[ -n "$added" ] && $SUDO rm -f "$policy"
if [ $status -ne 0 ]; then
  echo "ensure-prometheus: installing prometheus failed; its tests will skip (or fail under CI=true)" >&2
fi
exit 0
