#!/usr/bin/env bash
# Makes a Docker engine and the base images the project's Dockerfile and compose files need
# available on a Debian machine without a container registry (idempotent; see deploy/README.md).
#   - installs Debian's docker.io, docker-compose (1.29) and mmdebstrap when missing;
#   - starts dockerd when none answers, without touching the host's firewall or forwarding;
#   - builds the base images locally, tagged with their upstream names, only when missing:
#     debian:bookworm-slim (mmdebstrap from the host's apt sources), node:20-bookworm-slim
#     (that base + the host's node and npm), nats (+ Debian's nats-server), haproxy:2.6
#     (+ Debian's haproxy; the compose file's load balancer).
# Every step is bounded in time. When Docker cannot run here the script says why and exits 0:
# the container tests then skip with that reason instead of failing CI.
set -uo pipefail
cd "$(dirname "$0")/.."

log() { echo "docker-setup: $*"; }
give_up() {
  log "Docker is not usable on this machine: $* (container tests will skip)"
  exit 0
}

if [ "$(id -u)" -ne 0 ] && ! docker info >/dev/null 2>&1; then
  give_up "not root and no running engine"
fi

need_apt=()
[ -x /usr/bin/dockerd ] || command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]} (apt)"
  timeout 120 apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed or timed out"
  if ! timeout 420 env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" >/dev/null 2>&1; then
    give_up "apt-get install ${need_apt[*]} failed or timed out"
  fi
fi

# Start dockerd when none answers. Without iptables, forwarding or masquerading the engine
# leaves the host's network alone; containers still reach each other on user-defined
# bridges and publish ports through docker-proxy on the host.
if ! timeout 10 docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || give_up "dockerd not installed"
  if [ "$(sysctl -n net.ipv4.ip_forward 2>/dev/null || echo '?')" != "0" ]; then
    log "note: net.ipv4.ip_forward is not 0; dockerd is started with --ip-forward=false anyway"
  fi
  log "starting dockerd (log: /var/log/etcd-ts-dockerd.log)"
  nohup dockerd --iptables=false --ip-forward=false --ip-masq=false \
    >/var/log/etcd-ts-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    timeout 5 docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  timeout 10 docker info >/dev/null 2>&1 ||
    give_up "dockerd did not answer within 30 s ($(tail -n 3 /var/log/etcd-ts-dockerd.log | tr '\n' ' '))"
fi

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# base + a few Debian packages, as a Dockerfile building FROM debian:bookworm-slim would with
# apt; done here because builds have no network.
derive_image() { # tag, packages...
  local tag=$1
  shift
  have_image "$tag" && return 0
  log "building $tag (debian:bookworm-slim + $*)"
  local dir
  dir=$(mktemp -d)
  local pkgs
  pkgs=$(
    IFS=,
    echo "$*"
  )
  if ! timeout 600 mmdebstrap --quiet --variant=minbase --include="$pkgs" \
    --dpkgopt='path-exclude=/usr/share/{doc,man,locale}/*' bookworm "$dir/rootfs.tar" >/dev/null 2>&1; then
    rm -rf "$dir"
    give_up "mmdebstrap for $tag failed or timed out"
  fi
  timeout 300 docker import "$dir/rootfs.tar" "$tag" >/dev/null || give_up "docker import $tag failed"
  rm -rf "$dir"
}

derive_image debian:bookworm-slim ca-certificates
derive_image nats nats-server
derive_image haproxy:2.6 haproxy

if ! have_image node:20-bookworm-slim; then
  log "building node:20-bookworm-slim (debian:bookworm-slim + the host's node $(node --version))"
  dir=$(mktemp -d)
  mkdir -p "$dir/usr/local/bin" "$dir/usr/local/lib"
  cp "$(command -v node)" "$dir/usr/local/bin/node"
  npm_root=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  cp -a "$npm_root" "$dir/usr/local/lib/npm"
  ln -s ../lib/npm/bin/npm-cli.js "$dir/usr/local/bin/npm"
  ln -s ../lib/npm/bin/npx-cli.js "$dir/usr/local/bin/npx"
  printf 'FROM debian:bookworm-slim\nCOPY usr /usr\nCMD ["node"]\n' >"$dir/Dockerfile"
  timeout 300 docker build --quiet --network none -t node:20-bookworm-slim "$dir" >/dev/null ||
    give_up "building node:20-bookworm-slim failed"
  rm -rf "$dir"
fi

log "engine $(docker version --format '{{.Server.Version}}'), base images ready"
