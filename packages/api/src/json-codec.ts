// etcd's JSON encoding of its messages, as its gRPC gateway speaks it (grpc-gateway JSONPb
// with proto field names, defaults omitted): field names as written in the .proto
// (snake_case, or "TTL", "peerURLs"), 64-bit integers as decimal strings, bytes as base64,
// enums by name. Input accepts both the proto name and the lowerCamelCase JSON name, integers
// as numbers or strings, and both base64 alphabets; unknown fields are ignored, as etcd 3.4's
// gateway (grpc-gateway v1, allowUnknownFields = true) ignores them.
//
// ts-proto's generated toJSON/fromJSON are turned off (see packages/api/README.md): they
// print int64 as JSON numbers and parse loosely (Boolean("false") is true, a bad number
// becomes NaN). This codec walks tables generated from the descriptors
// (gen/json-fields.ts) and works on the objects ts-proto's encode/decode use.

import { JSON_ENUMS, JSON_MESSAGES } from "./gen/json-fields.js";

export type JsonScalarKind =
  | "double"
  | "float"
  | "int64"
  | "uint64"
  | "int32"
  | "fixed64"
  | "fixed32"
  | "bool"
  | "string"
  | "bytes"
  | "uint32"
  | "sfixed32"
  | "sfixed64"
  | "sint32"
  | "sint64";

export interface JsonField {
  /** The name in the .proto: the key written on output. */
  readonly name: string;
  /** protoc's lowerCamelCase JSON name, also accepted on input. */
  readonly jsonName: string;
  /** The property of the ts-proto object. */
  readonly key: string;
  readonly kind: JsonScalarKind | "enum" | "message";
  /** Full name of the message or enum type, for kind "message" and "enum". */
  readonly type?: string;
  readonly repeated?: true;
  /** The oneof this field belongs to: it has presence, so it is written even when zero. */
  readonly oneof?: string;
}

export type JsonMessageTable = Readonly<Record<string, readonly JsonField[]>>;
export type JsonEnumTable = Readonly<Record<string, Readonly<Record<string, number>>>>;

/** Input that is not etcd JSON for the expected message; the gateway answers 400. */
export class JsonFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "JsonFormatError";
  }
}

const INT64_KINDS = new Set<JsonField["kind"]>(["int64", "uint64", "fixed64", "sfixed64", "sint64"]);
const UNSIGNED_KINDS = new Set<JsonField["kind"]>(["uint64", "fixed64", "uint32", "fixed32"]);

function fieldsOf(typeName: string): readonly JsonField[] {
  const fields = JSON_MESSAGES[typeName];
  if (fields === undefined) throw new Error(`no JSON table for message ${typeName}`);
  return fields;
}

function enumOf(typeName: string): Readonly<Record<string, number>> {
  const values = JSON_ENUMS[typeName];
  if (values === undefined) throw new Error(`no JSON table for enum ${typeName}`);
  return values;
}

const enumNames = new Map<string, Map<number, string>>();
function enumName(typeName: string, value: number): string | number {
  let names = enumNames.get(typeName);
  if (names === undefined) {
    names = new Map(Object.entries(enumOf(typeName)).map(([name, n]) => [n, name]));
    enumNames.set(typeName, names);
  }
  // protojson prints a value the schema does not know as its number.
  return names.get(value) ?? value;
}

// ---------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------

/** A ts-proto message (as decode returns or a handler builds it) as etcd's gateway prints it. */
export function toEtcdJson(typeName: string, message: object): Record<string, unknown> {
  const source = message as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const field of fieldsOf(typeName)) {
    const value = source[field.key];
    if (value === undefined || value === null) continue;
    if (field.repeated) {
      const list = value as readonly unknown[];
      if (list.length > 0) out[field.name] = list.map((item) => valueToJson(field, item));
    } else if (field.oneof !== undefined || field.kind === "message" || !isDefault(field, value)) {
      out[field.name] = valueToJson(field, value);
    }
  }
  return out;
}

function isDefault(field: JsonField, value: unknown): boolean {
  switch (field.kind) {
    case "bool":
      return value === false;
    case "string":
      return value === "";
    case "bytes":
      return (value as Uint8Array).length === 0;
    default:
      return value === 0 || value === 0n;
  }
}

function valueToJson(field: JsonField, value: unknown): unknown {
  switch (field.kind) {
    case "message":
      return toEtcdJson(field.type!, value as object);
    case "enum":
      return enumName(field.type!, value as number);
    case "bytes":
      return Buffer.from(
        (value as Uint8Array).buffer,
        (value as Uint8Array).byteOffset,
        (value as Uint8Array).byteLength,
      ).toString("base64");
    case "double":
    case "float": {
      const n = value as number;
      if (Number.isNaN(n)) return "NaN";
      if (n === Number.POSITIVE_INFINITY) return "Infinity";
      if (n === Number.NEGATIVE_INFINITY) return "-Infinity";
      return n;
    }
    default:
      return INT64_KINDS.has(field.kind) ? String(value) : value;
  }
}

// ---------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------

const byJsonKey = new Map<string, Map<string, JsonField>>();
function lookupOf(typeName: string): Map<string, JsonField> {
  let lookup = byJsonKey.get(typeName);
  if (lookup === undefined) {
    lookup = new Map();
    for (const field of fieldsOf(typeName)) {
      lookup.set(field.name, field);
      lookup.set(field.jsonName, field);
    }
    byJsonKey.set(typeName, lookup);
  }
  return lookup;
}

/**
 * Parses etcd JSON into the object ts-proto's encode takes for `typeName`: every scalar and
 * repeated field present (defaults filled in), message and oneof fields only when given.
 * Throws JsonFormatError on input protojson would refuse. 64-bit integers become bigints,
 * exact over their whole range (decimal strings are never read through a double).
 */
export function fromEtcdJson(typeName: string, json: unknown): Record<string, unknown> {
  return messageFromJson(typeName, json, typeName);
}

function messageFromJson(typeName: string, json: unknown, where: string): Record<string, unknown> {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new JsonFormatError(`${where}: expected a JSON object for ${typeName}`);
  }
  const out: Record<string, unknown> = {};
  for (const field of fieldsOf(typeName)) {
    if (field.oneof !== undefined || (field.kind === "message" && !field.repeated)) continue;
    out[field.key] = field.repeated ? [] : defaultOf(field);
  }
  const lookup = lookupOf(typeName);
  const seen = new Set<JsonField>();
  const oneofsSet = new Map<string, string>();
  for (const [jsonKey, value] of Object.entries(json as Record<string, unknown>)) {
    const field = lookup.get(jsonKey);
    if (field === undefined) continue;
    const path = `${where}.${field.name}`;
    if (seen.has(field)) throw new JsonFormatError(`${path}: field given twice`);
    seen.add(field);
    if (value === null) continue;
    if (field.oneof !== undefined) {
      const other = oneofsSet.get(field.oneof);
      if (other !== undefined) {
        throw new JsonFormatError(`${path}: oneof ${field.oneof} already set by ${other}`);
      }
      oneofsSet.set(field.oneof, field.name);
    }
    if (field.repeated) {
      if (!Array.isArray(value)) throw new JsonFormatError(`${path}: expected a JSON array`);
      out[field.key] = value.map((item, i) => valueFromJson(field, item, `${path}[${i}]`));
    } else {
      out[field.key] = valueFromJson(field, value, path);
    }
  }
  return out;
}

function defaultOf(field: JsonField): unknown {
  switch (field.kind) {
    case "bool":
      return false;
    case "string":
      return "";
    case "bytes":
      return Buffer.alloc(0);
    default:
      return INT64_KINDS.has(field.kind) ? 0n : 0;
  }
}

function valueFromJson(field: JsonField, value: unknown, path: string): unknown {
  switch (field.kind) {
    case "message":
      return messageFromJson(field.type!, value, path);
    case "enum":
      return enumFromJson(field.type!, value, path);
    case "bool":
      if (typeof value !== "boolean") throw new JsonFormatError(`${path}: expected true or false`);
      return value;
    case "string":
      if (typeof value !== "string") throw new JsonFormatError(`${path}: expected a string`);
      return value;
    case "bytes":
      return bytesFromJson(value, path);
    case "double":
    case "float":
      return floatFromJson(value, path);
    default:
      return integerFromJson(field.kind, value, path);
  }
}

function enumFromJson(typeName: string, value: unknown, path: string): number {
  if (typeof value === "string") {
    const n = enumOf(typeName)[value];
    if (n === undefined)
      throw new JsonFormatError(`${path}: unknown ${typeName} value ${JSON.stringify(value)}`);
    return n;
  }
  if (typeof value === "number" && Number.isInteger(value) && value >= -(2 ** 31) && value < 2 ** 31) {
    return value;
  }
  throw new JsonFormatError(`${path}: expected a ${typeName} name or number`);
}

const BASE64 = /^[A-Za-z0-9+/\-_]*={0,2}$/;

function bytesFromJson(value: unknown, path: string): Buffer {
  if (typeof value !== "string" || !BASE64.test(value) || value.replace(/=+$/, "").length % 4 === 1) {
    throw new JsonFormatError(`${path}: expected base64`);
  }
  // Node decodes both the standard and the URL-safe alphabet, padded or not.
  return Buffer.from(value, "base64");
}

const INTEGER_STRING = /^-?\d+$/;

const INT64_RANGE: [bigint, bigint] = [-(2n ** 63n), 2n ** 63n - 1n];
const UINT64_RANGE: [bigint, bigint] = [0n, 2n ** 64n - 1n];

/** 32-bit kinds give a number; 64-bit kinds a bigint (exact: decimal strings are read as such). */
function integerFromJson(kind: JsonField["kind"], value: unknown, path: string): number | bigint {
  if (INT64_KINDS.has(kind)) {
    let n: bigint;
    if (typeof value === "number" && Number.isInteger(value)) n = BigInt(value);
    else if (typeof value === "string" && INTEGER_STRING.test(value)) n = BigInt(value);
    else throw new JsonFormatError(`${path}: expected an integer (a number or a decimal string)`);
    const [min, max] = UNSIGNED_KINDS.has(kind) ? UINT64_RANGE : INT64_RANGE;
    if (UNSIGNED_KINDS.has(kind) && n < 0n) throw new JsonFormatError(`${path}: ${kind} cannot be negative`);
    if (n < min || n > max)
      throw new JsonFormatError(`${path}: ${String(value)} is out of range for ${kind}`);
    return n;
  }
  let n: number;
  if (typeof value === "number") {
    n = value;
  } else if (typeof value === "string" && INTEGER_STRING.test(value)) {
    n = Number(value);
  } else {
    throw new JsonFormatError(`${path}: expected an integer (a number or a decimal string)`);
  }
  if (!Number.isInteger(n)) throw new JsonFormatError(`${path}: expected an integer, got ${String(value)}`);
  if (UNSIGNED_KINDS.has(kind) && n < 0) throw new JsonFormatError(`${path}: ${kind} cannot be negative`);
  const [min, max] = UNSIGNED_KINDS.has(kind) ? [0, 2 ** 32 - 1] : [-(2 ** 31), 2 ** 31 - 1];
  if (n < min || n > max) throw new JsonFormatError(`${path}: ${String(value)} is out of range for ${kind}`);
  return n;
}

function floatFromJson(value: unknown, path: string): number {
  if (typeof value === "number") return value;
  if (value === "NaN") return Number.NaN;
  if (value === "Infinity") return Number.POSITIVE_INFINITY;
  if (value === "-Infinity") return Number.NEGATIVE_INFINITY;
  if (typeof value === "string" && value.trim() !== "" && Number.isFinite(Number(value)))
    return Number(value);
  throw new JsonFormatError(`${path}: expected a number`);
}
