#!/usr/bin/env bash
# Installs what Nexus needs on a Debian machine. Safe to run again: only what is missing.
#
#   scripts/setup.sh           npm packages only (enough for `make run`: embedded queue and PGlite)
#   scripts/setup.sh --all     also Debian's etcd, PostgreSQL 15, Chromium and prometheus (promtool, server)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--all" ]; then
  want=()
  command -v etcd >/dev/null 2>&1 || want+=(etcd-server)
  command -v etcdctl >/dev/null 2>&1 || want+=(etcd-client)
  [ -x /usr/lib/postgresql/15/bin/initdb ] || want+=(postgresql-15)
  command -v runuser >/dev/null 2>&1 || want+=(util-linux)
  # helm and kubectl for the deployment tests come from an npm package's zip (scripts/k8s-tools.sh).
  command -v unzip >/dev/null 2>&1 || want+=(unzip)
  command -v chromium >/dev/null 2>&1 || want+=(chromium)
  # promtool for the tests; promtool and the server for `make bench` (side by side with Prometheus).
  { command -v promtool && command -v prometheus; } >/dev/null 2>&1 || want+=(prometheus)
  if [ ${#want[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${want[*]}"
    sudo=""
    if [ "$(id -u)" != 0 ]; then
      if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
        echo "setup: need root (or sudo) to install ${want[*]}" >&2
        exit 1
      fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' own services from starting (the tests start their own).
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
      $sudo chmod +x /usr/sbin/policy-rc.d
      trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
  fi
  # PostgreSQL refuses to run as root: the test harness runs it as the postgres user.
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
  fi
fi

# npm packages: exactly the lockfile, and again only when it changed.
stamp=node_modules/.package-lock.stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi
