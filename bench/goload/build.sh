#!/usr/bin/env bash
# Builds goload, a lean load generator for any endpoint speaking the etcd v3 gRPC API,
# from Debian packages only (Go 1.19 + etcd 3.4's generated stubs), GOPATH mode.
# Output: ${OUT:-bench/goload/bin}/goload (git-ignored).  Usage: goload -h
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$HERE/bin}
if ! command -v go >/dev/null || [[ ! -d /usr/share/gocode/src/go.etcd.io/etcd/etcdserver/etcdserverpb ]]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y golang-go golang-etcd-server-dev
fi
mkdir -p "$OUT"
export GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=${GOCACHE:-/tmp/goload-gocache} GOFLAGS= CGO_ENABLED=0
go build -o "$OUT/goload" "$HERE/main.go"
echo "built $OUT/goload"
