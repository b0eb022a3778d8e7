#!/usr/bin/env bash
# Gateway overhead: goload against one etcd member directly and through the gateway, in the
# same run on the same 3-member loopback cluster (the machine is noisy: compare ratios).
# Usage: services/api-gateway/scripts/measure-overhead.sh [total-ops]   (from the repo root)
set -euo pipefail
TOTAL="${1:-20000}"
GOLOAD="${GOLOAD:-/tmp/goload-bin/goload}"
cd "$(dirname "$0")/../../.."
RUN=(node --conditions=source --import tsx)
OUT="$(mktemp -d)"
cleanup() {
  [[ -n "${GW_PID:-}" ]] && kill "$GW_PID" 2>/dev/null || true
  [[ -n "${CLUSTER_PID:-}" ]] && kill "$CLUSTER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$OUT"
}
trap cleanup EXIT

"${RUN[@]}" services/api-gateway/src/testing/start-cluster-cli.ts >"$OUT/cluster.json" &
CLUSTER_PID=$!
for _ in $(seq 1 200); do [[ -s "$OUT/cluster.json" ]] && break; sleep 0.1; done
ENDPOINTS="$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).endpoints.join(","))' "$OUT/cluster.json")"
FIRST="${ENDPOINTS%%,*}"
GW_PORT="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
"${RUN[@]}" services/api-gateway/src/main.ts --endpoints="$ENDPOINTS" --listen-addr="127.0.0.1:$GW_PORT" \
  --json-listen-addr=127.0.0.1:0 --log-level=warn &
GW_PID=$!
for _ in $(seq 1 100); do
  ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$GW_PORT" put foo bar >/dev/null 2>&1 && break
  sleep 0.1
done

for op in put range-ser range-lin; do
  for target in direct gateway; do
    if [[ "$target" == direct ]]; then ep="$FIRST"; else ep="127.0.0.1:$GW_PORT"; fi
    "$GOLOAD" -endpoints "$ep" -conns 10 -clients 100 -total "$TOTAL" -op "$op" -label "$op/$target" -timeout-s 120
  done
done
