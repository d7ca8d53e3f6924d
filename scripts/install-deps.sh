#!/usr/bin/env bash
# Debian packages the simulator needs: PostgreSQL, Redis, Prometheus (for its scrape test) and Chromium (the dashboard's test). Go >= 1.26 must already be on PATH
# (Debian 12's golang-go is too old for Kubernetes 1.36).
# Idempotent and quiet when everything is present.
set -euo pipefail
need=()
[ -x /usr/lib/postgresql/15/bin/pg_ctl ] || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
command -v prometheus >/dev/null || need+=(prometheus)
command -v wrk >/dev/null || need+=(wrk)  # load generator of the benchmarks
command -v ss >/dev/null || need+=(iproute2)
[ -x /usr/bin/chromium ] || need+=(chromium)  # the dashboard's browser test (driven by Playwright)  # the test that every listening socket is on loopback
command -v python3 >/dev/null || need+=(python3 python3-venv)
python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "[k8sim] installing Debian packages: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "[k8sim] Go >= 1.26 is required on PATH to build the control plane" >&2; exit 1; }
