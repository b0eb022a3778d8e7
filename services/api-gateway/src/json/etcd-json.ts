// etcd's JSON encoding, as its grpc-gateway (v1, jsonpb with OrigName and without
// EmitDefaults) writes and reads it, translated straight to and from wire bytes:
// - output: proto field names ("cluster_id", "TTL", "peerURLs"), declaration order, zero
//   values omitted except for set oneof members, 64-bit integers as decimal strings, bytes
//   as standard base64, enums by name;
// - input: proto or lowerCamelCase names, integers as numbers or decimal strings, bytes in
//   either base64 alphabet, enums by name or number, null as absent, unknown fields ignored.
// Works from protobufjs reflection, so one walker serves every message.

import Long from "long";
import protobuf from "protobufjs";

// protobufjs represents 64-bit fields with Long only when it is configured to.
protobuf.util.Long = Long;
protobuf.configure();

export class JsonBodyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "JsonBodyError";
  }
}

const LONG_TYPES = new Set(["int64", "uint64", "sint64", "fixed64", "sfixed64"]);
const UNSIGNED_LONG = new Set(["uint64", "fixed64"]);
const INT32_TYPES = new Set(["int32", "sint32", "sfixed32"]);
const UINT32_TYPES = new Set(["uint32", "fixed32"]);

// ---------------------------------------------------------------------------------------
// Wire -> JSON
// ---------------------------------------------------------------------------------------

export function wireToJson(type: protobuf.Type, bytes: Uint8Array): Record<string, unknown> {
  return messageToJson(type, type.decode(bytes) as unknown as Record<string, unknown>);
}

function messageToJson(type: protobuf.Type, message: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of type.fieldsArray) {
    if (!Object.hasOwn(message, field.name)) continue;
    const value = message[field.name];
    if (value === null || value === undefined) continue;
    if (field.repeated) {
      const list = value as unknown[];
      if (list.length > 0) out[field.name] = list.map((item) => valueToJson(field, item));
      continue;
    }
    if (
      field.partOf === null &&
      field.resolvedType instanceof protobuf.Type === false &&
      isZero(field, value)
    )
      continue;
    out[field.name] = valueToJson(field, value);
  }
  return out;
}

function isZero(field: protobuf.Field, value: unknown): boolean {
  if (LONG_TYPES.has(field.type)) return Long.isLong(value) ? (value as Long).isZero() : value === 0;
  if (typeof value === "boolean") return value === false;
  if (typeof value === "string") return value === "";
  if (value instanceof Uint8Array) return value.length === 0;
  return value === 0;
}

function valueToJson(field: protobuf.Field, value: unknown): unknown {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) return messageToJson(resolved, value as Record<string, unknown>);
  if (resolved instanceof protobuf.Enum) return resolved.valuesById[value as number] ?? value;
  if (LONG_TYPES.has(field.type)) {
    if (Long.isLong(value)) {
      const long = value as Long;
      return (UNSIGNED_LONG.has(field.type) ? long.toUnsigned() : long.toSigned()).toString();
    }
    return String(value);
  }
  if (value instanceof Uint8Array)
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64");
  if (
    typeof value === "number" &&
    (field.type === "double" || field.type === "float") &&
    !Number.isFinite(value)
  ) {
    return Number.isNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity";
  }
  return value;
}

// ---------------------------------------------------------------------------------------
// JSON -> wire
// ---------------------------------------------------------------------------------------

export function jsonToWire(type: protobuf.Type, json: unknown): Buffer {
  const message = messageFromJson(type, json, type.name);
  return Buffer.from(type.encode(message).finish());
}

/** protoc's JSON name: underscores dropped, the following letter capitalised. */
export function lowerCamelName(protoName: string): string {
  return protoName.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

const lookups = new WeakMap<protobuf.Type, Map<string, protobuf.Field>>();

function lookupOf(type: protobuf.Type): Map<string, protobuf.Field> {
  let lookup = lookups.get(type);
  if (lookup === undefined) {
    lookup = new Map();
    for (const field of type.fieldsArray) {
      lookup.set(field.name, field);
      lookup.set(lowerCamelName(field.name), field);
    }
    lookups.set(type, lookup);
  }
  return lookup;
}

function messageFromJson(type: protobuf.Type, json: unknown, where: string): protobuf.Message {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new JsonBodyError(`json: cannot unmarshal ${jsonKind(json)} into Go value of type ${where}`);
  }
  const props: Record<string, unknown> = {};
  const lookup = lookupOf(type);
  const oneofs = new Map<string, string>();
  for (const [key, value] of Object.entries(json as Record<string, unknown>)) {
    const field = lookup.get(key);
    // grpc-gateway v1 in etcd 3.4 ignores fields it does not know.
    if (field === undefined || value === null) continue;
    if (Object.hasOwn(props, field.name))
      throw new JsonBodyError(`${where}.${field.name}: field given twice`);
    if (field.partOf !== null) {
      const other = oneofs.get(field.partOf.name);
      if (other !== undefined)
        throw new JsonBodyError(
          `${where}: oneof ${field.partOf.name} set by both ${other} and ${field.name}`,
        );
      oneofs.set(field.partOf.name, field.name);
    }
    const path = `${where}.${field.name}`;
    if (field.repeated) {
      if (!Array.isArray(value))
        throw new JsonBodyError(
          `json: cannot unmarshal ${jsonKind(value)} into Go value of type []${field.type} (${path})`,
        );
      props[field.name] = value.map((item, i) => valueFromJson(field, item, `${path}[${i}]`));
    } else {
      props[field.name] = valueFromJson(field, value, path);
    }
  }
  return type.create(props);
}

function valueFromJson(field: protobuf.Field, value: unknown, path: string): unknown {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) return messageFromJson(resolved, value, path);
  if (resolved instanceof protobuf.Enum) {
    if (typeof value === "string" && Object.hasOwn(resolved.values, value)) return resolved.values[value];
    if (typeof value === "number" && Number.isInteger(value)) return value;
    throw new JsonBodyError(
      `unknown value ${JSON.stringify(value)} for enum ${resolved.fullName.slice(1)} (${path})`,
    );
  }
  if (LONG_TYPES.has(field.type)) return longFromJson(field.type, value, path);
  if (INT32_TYPES.has(field.type) || UINT32_TYPES.has(field.type)) {
    const n = typeof value === "string" && /^-?\d+$/.test(value) ? Number(value) : value;
    const [min, max] = UINT32_TYPES.has(field.type) ? [0, 2 ** 32 - 1] : [-(2 ** 31), 2 ** 31 - 1];
    if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) {
      throw new JsonBodyError(
        `json: cannot unmarshal ${JSON.stringify(value)} into Go value of type ${field.type} (${path})`,
      );
    }
    return n;
  }
  switch (field.type) {
    case "bool":
      if (typeof value !== "boolean")
        throw new JsonBodyError(
          `json: cannot unmarshal ${jsonKind(value)} into Go value of type bool (${path})`,
        );
      return value;
    case "string":
      if (typeof value !== "string")
        throw new JsonBodyError(
          `json: cannot unmarshal ${jsonKind(value)} into Go value of type string (${path})`,
        );
      return value;
    case "bytes":
      return bytesFromJson(value, path);
    case "double":
    case "float": {
      if (typeof value === "number") return value;
      if (value === "NaN") return Number.NaN;
      if (value === "Infinity") return Number.POSITIVE_INFINITY;
      if (value === "-Infinity") return Number.NEGATIVE_INFINITY;
      if (typeof value === "string" && value.trim() !== "" && Number.isFinite(Number(value)))
        return Number(value);
      throw new JsonBodyError(
        `json: cannot unmarshal ${jsonKind(value)} into Go value of type ${field.type} (${path})`,
      );
    }
  }
  throw new JsonBodyError(`unsupported field type ${field.type} (${path})`);
}

const MAX_U64 = (1n << 64n) - 1n;
const MIN_I64 = -(1n << 63n);
const MAX_I64 = (1n << 63n) - 1n;

function longFromJson(type: string, value: unknown, path: string): Long {
  let big: bigint;
  if (typeof value === "number" && Number.isInteger(value)) big = BigInt(value);
  else if (typeof value === "string" && /^-?\d+$/.test(value)) big = BigInt(value);
  else
    throw new JsonBodyError(
      `json: cannot unmarshal ${describeNumber(value)} into Go value of type ${type} (${path})`,
    );
  const unsigned = UNSIGNED_LONG.has(type);
  if (unsigned ? big < 0n || big > MAX_U64 : big < MIN_I64 || big > MAX_I64) {
    throw new JsonBodyError(`json: ${String(value)} overflows ${type} (${path})`);
  }
  return Long.fromString(big.toString(), unsigned);
}

const BASE64 = /^[A-Za-z0-9+/\-_]*={0,2}$/;

function bytesFromJson(value: unknown, path: string): Buffer {
  if (typeof value !== "string")
    throw new JsonBodyError(
      `json: cannot unmarshal ${jsonKind(value)} into Go value of type []byte (${path})`,
    );
  if (!BASE64.test(value) || value.replace(/=+$/, "").length % 4 === 1) {
    throw new JsonBodyError(`illegal base64 data (${path})`);
  }
  return Buffer.from(value, "base64");
}

function jsonKind(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "object") return "object";
  return typeof value;
}

function describeNumber(value: unknown): string {
  return typeof value === "number" ? `number ${value}` : jsonKind(value);
}

// ---------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------

/**
 * Splits a body into the JSON values it holds, one after another (grpc-gateway reads a
 * streaming RPC's requests that way); an empty body is one empty message, as in etcd.
 */
export function parseJsonValues(body: string): unknown[] {
  const values: unknown[] = [];
  let i = 0;
  const n = body.length;
  while (i < n) {
    while (i < n && /\s/.test(body[i]!)) i++;
    if (i >= n) break;
    const start = i;
    if (body[i] === "{" || body[i] === "[") {
      let depth = 0;
      let inString = false;
      for (; i < n; i++) {
        const c = body[i]!;
        if (inString) {
          if (c === "\\") i++;
          else if (c === '"') inString = false;
        } else if (c === '"') inString = true;
        else if (c === "{" || c === "[") depth++;
        else if (c === "}" || c === "]") {
          depth--;
          if (depth === 0) {
            i++;
            break;
          }
        }
      }
      if (depth !== 0) throw new JsonBodyError("unexpected EOF");
    } else {
      while (i < n && !/\s/.test(body[i]!)) i++;
    }
    try {
      values.push(JSON.parse(body.slice(start, i)));
    } catch (err) {
      throw new JsonBodyError((err as Error).message);
    }
  }
  if (values.length === 0) values.push({});
  return values;
}
