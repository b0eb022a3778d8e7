#!/usr/bin/env bash
# Regenerates packages/api/src/gen/ from proto/. The output is committed (CI never runs
# this), so the script must be deterministic: running it twice gives no diff.
#
# ts-proto options, and why (packages/api/README.md has the longer story):
#   outputServices=grpc-js   service definitions, server interfaces and client classes for
#                            @grpc/grpc-js, the gRPC library every service uses.
#   env=node                 bytes fields are Buffers (keys compare with Buffer.compare,
#                            print as text, and grpc-js hands us Buffers anyway).
#   forceLong=bigint         int64/uint64 are bigints, exact over their whole range (etcd's
#                            member, cluster and lease IDs use all 64 bits). See the int64
#                            policy in packages/api/README.md.
#   useOptionals=messages    message-typed fields may be omitted when building a message;
#                            scalars are always present after decode (proto3 defaults).
#   oneof=properties         each oneof member is its own optional property, as in etcd's
#                            Go code (GetRequestRange()); presence is kept for scalar members
#                            such as Compare.version = 0.
#   outputJsonMethods=false  no generated toJSON/fromJSON: they print int64 as JSON numbers
#                            and camelCase names where etcd's gateway prints strings and proto
#                            names, and parse loosely. packages/api/src/json-codec.ts does
#                            etcd's JSON from tables this script generates.
#   esModuleInterop=true     default imports of CommonJS packages, as tsconfig has it.
#   importSuffix=.js         NodeNext ESM resolution.
#   useExactTypes=false      create()/fromPartial() accept object spreads from other messages.
#   annotateFilesWithVersion=false  keeps tool versions out of the output, so the same
#                            protos give the same bytes on any machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v protoc >/dev/null 2>&1; then
  echo "gen-proto: protoc not found; installing Debian's protobuf-compiler" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq protobuf-compiler >/dev/null
fi

PLUGIN=node_modules/.bin/protoc-gen-ts_proto
if [ ! -x "$PLUGIN" ]; then
  echo "gen-proto: $PLUGIN missing; run npm ci first" >&2
  exit 1
fi

# google/protobuf/descriptor.proto (imported by google/api/annotations.proto) ships with
# protoc; find its include directory instead of assuming /usr/include.
WKT_INCLUDE=""
for dir in /usr/include /usr/local/include "$(dirname "$(command -v protoc)")/../include"; do
  if [ -f "$dir/google/protobuf/descriptor.proto" ]; then WKT_INCLUDE="$dir"; break; fi
done
if [ -z "$WKT_INCLUDE" ]; then
  echo "gen-proto: google/protobuf/descriptor.proto not found next to protoc" >&2
  exit 1
fi

OUT=packages/api/src/gen
# Only the API's own files: google/api/* is read for its HTTP options, never generated.
PROTOS=(
  mvccpb/kv.proto
  authpb/auth.proto
  etcdserverpb/rpc.proto
  v3electionpb/v3election.proto
  v3lockpb/v3lock.proto
  internal/peer.proto
  internal/auth-backend.proto
  internal/forward.proto
  grpc/health/v1/health.proto
)

TS_PROTO_OPTS="outputServices=grpc-js,env=node,forceLong=bigint,useOptionals=messages"
TS_PROTO_OPTS+=",oneof=properties,outputJsonMethods=false,esModuleInterop=true,importSuffix=.js"
TS_PROTO_OPTS+=",useExactTypes=false,annotateFilesWithVersion=false,emitImportedFiles=false"

rm -rf "$OUT"
mkdir -p "$OUT"
protoc \
  --proto_path=proto \
  --proto_path="$WKT_INCLUDE" \
  --plugin=protoc-gen-ts_proto="$PLUGIN" \
  --ts_proto_out="$OUT" \
  --ts_proto_opt="$TS_PROTO_OPTS" \
  "${PROTOS[@]}"

# The route table and the JSON field tables come from the descriptors, options included.
DESCRIPTORS="$(mktemp)"
trap 'rm -f "$DESCRIPTORS"' EXIT
protoc \
  --proto_path=proto \
  --proto_path="$WKT_INCLUDE" \
  --include_imports \
  --descriptor_set_out="$DESCRIPTORS" \
  "${PROTOS[@]}"
node --import tsx packages/api/scripts/gen-from-descriptors.ts "$DESCRIPTORS" "$OUT"

echo "gen-proto: wrote $(find "$OUT" -name '*.ts' | wc -l) files under $OUT"
