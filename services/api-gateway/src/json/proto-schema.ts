// etcd's message schemas, loaded from the repository's .proto files with protobufjs
// reflection. The JSON gateway needs every field's number, proto name and 64-bit type to
// translate JSON to wire bytes and back without losing 64-bit values (etcd's cluster,
// member and lease IDs are random 63/64-bit numbers, beyond what a JS number holds).

import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";

const PROTO_FILES = ["etcdserverpb/rpc.proto", "v3electionpb/v3election.proto", "v3lockpb/v3lock.proto"];

/** proto/ at the repository root: three levels above both src/json and dist/json. */
export function defaultProtoDir(): string {
  return process.env.ETCD_GATEWAY_PROTO_DIR ?? fileURLToPath(new URL("../../../../proto/", import.meta.url));
}

let cached: protobuf.Root | undefined;

export function loadEtcdSchema(protoDir = defaultProtoDir()): protobuf.Root {
  if (cached !== undefined) return cached;
  if (!existsSync(path.join(protoDir, PROTO_FILES[0]!))) {
    throw new Error(`etcd .proto files not found under ${protoDir} (set ETCD_GATEWAY_PROTO_DIR)`);
  }
  const root = new protobuf.Root();
  // google/protobuf/descriptor.proto (imported by google/api/annotations.proto) ships
  // with protobufjs; everything else is the repository's.
  const protobufjsDir = path.dirname(fileURLToPath(import.meta.resolve("protobufjs/package.json")));
  root.resolvePath = (_origin, target) =>
    target.startsWith("google/protobuf/") ? path.join(protobufjsDir, target) : path.join(protoDir, target);
  root.loadSync(PROTO_FILES, { keepCase: true });
  root.resolveAll();
  cached = root;
  return root;
}
