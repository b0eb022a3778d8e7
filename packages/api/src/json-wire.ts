// etcd's JSON to protobuf wire bytes and back, for the JSON gateway, through the same generated
// codecs every other part of the project uses (one protobuf runtime): JSON -> fromEtcdJson ->
// ts-proto encode, and ts-proto decode -> toEtcdJson. 64-bit integers stay exact both ways.
import * as authpb from "./gen/authpb/auth.js";
import * as etcdserverpb from "./gen/etcdserverpb/rpc.js";
import * as mvccpb from "./gen/mvccpb/kv.js";
import * as v3electionpb from "./gen/v3electionpb/v3election.js";
import * as v3lockpb from "./gen/v3lockpb/v3lock.js";
import { fromEtcdJson, toEtcdJson } from "./json-codec.js";

interface MessageCodec {
  encode(message: never): { finish(): Uint8Array };
  decode(bytes: Uint8Array): object;
}

const PACKAGES: Record<string, Record<string, unknown>> = {
  authpb,
  etcdserverpb,
  mvccpb,
  v3electionpb,
  v3lockpb,
};

/** The generated codec of a message named as the JSON tables and HTTP_ROUTES name it. */
function codecOf(typeName: string): MessageCodec {
  const dot = typeName.indexOf(".");
  const codec = PACKAGES[typeName.slice(0, dot)]?.[typeName.slice(dot + 1)] as MessageCodec | undefined;
  if (codec === undefined || typeof codec.encode !== "function") throw new Error(`no codec for ${typeName}`);
  return codec;
}

/** Encodes etcd JSON as `typeName`'s wire bytes; throws JsonFormatError on input protojson refuses. */
export function jsonToWire(typeName: string, json: unknown): Buffer {
  const message = fromEtcdJson(typeName, json);
  return Buffer.from(
    codecOf(typeName)
      .encode(message as never)
      .finish(),
  );
}

/** Decodes `typeName`'s wire bytes to etcd's JSON (proto names, 64-bit integers as strings). */
export function wireToJson(typeName: string, bytes: Uint8Array): Record<string, unknown> {
  return toEtcdJson(typeName, codecOf(typeName).decode(bytes));
}
