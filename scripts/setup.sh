#!/usr/bin/env bash
# Installs everything the store and its tests need on a fresh Debian machine (idempotent):
# npm dependencies, Debian's etcd 3.4 (the real etcd the tests and benchmarks compare
# against, and etcdctl, the client the integration tests drive), and Debian's nats-server
# (control-plane events: `npm start` runs one, the tests start their own).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v etcdctl >/dev/null || need_apt+=(etcd-client)
command -v etcd >/dev/null || need_apt+=(etcd-server)
# /usr/sbin is not on every user's PATH: look for the file.
[ -x /usr/sbin/nats-server ] || [ -x /usr/bin/nats-server ] || need_apt+=(nats-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install ${need_apt[*]} with apt-get" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # Debian starts the etcd and nats-server services on install; our tests and `npm start` need
  # their ports free.
  for service in etcd nats-server; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
      systemctl stop "$service" || true
    fi
  done
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
