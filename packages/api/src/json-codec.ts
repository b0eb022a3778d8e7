// etcd's JSON encoding of its messages, as its gRPC gateway speaks it (grpc-gateway JSONPb
// with proto field names, defaults omitted): field names as written in the .proto
// (snake_case, or "TTL", "peerURLs"), 64-bit integers as decimal strings, bytes as base64,
// enums by name. Input is read as etcd 3.4's gateway reads it (grpc-gateway v1: golang/protobuf's
// jsonpb, each field by encoding/json): the proto name or the lowerCamelCase JSON name, integers
// as numbers or strings, bytes in standard padded base64, unknown fields ignored
// (allowUnknownFields = true), and a refusal worded as Go words it.
//
// ts-proto's generated toJSON/fromJSON are turned off (see packages/api/README.md): they
// print int64 as JSON numbers and parse loosely (Boolean("false") is true, a bad number
// becomes NaN). This codec walks tables generated from the descriptors
// (gen/json-fields.ts) and works on the objects ts-proto's encode/decode use.

import { JSON_ENUMS, JSON_MESSAGES } from "./gen/json-fields.js";
import { GoJsonSyntaxError, goTypeError, goValueName, JsonNumber, parseGoJson } from "./go-json.js";

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
  /** The field number on the wire. */
  readonly number: number;
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

/** A message's fields as input reads them: by either JSON name, and in jsonpb's order. */
interface InputTable {
  readonly byJsonKey: Map<string, JsonField>;
  /** Declaration order, oneof members after the others: the first refusal jsonpb meets. */
  readonly ordered: readonly JsonField[];
}

const inputTables = new Map<string, InputTable>();
function inputTableOf(typeName: string): InputTable {
  let table = inputTables.get(typeName);
  if (table === undefined) {
    const fields = fieldsOf(typeName);
    const byJsonKey = new Map<string, JsonField>();
    for (const field of fields) {
      byJsonKey.set(field.name, field);
      byJsonKey.set(field.jsonName, field);
    }
    const ordered = [
      ...fields.filter((f) => f.oneof === undefined),
      ...fields.filter((f) => f.oneof !== undefined),
    ];
    table = { byJsonKey, ordered };
    inputTables.set(typeName, table);
  }
  return table;
}

/**
 * Parses etcd JSON into the object ts-proto's encode takes for `typeName`: every scalar and
 * repeated field present (defaults filled in), message and oneof fields only when given.
 * Reads it as etcd 3.4's gateway does (golang/protobuf's jsonpb, each field by encoding/json)
 * and throws JsonFormatError with the message that gives for input it refuses. Numbers may be
 * JsonNumbers (go-json.ts keeps their literal) or JS numbers; 64-bit integers become bigints,
 * exact over their whole range (a literal is never read through a double).
 */
export function fromEtcdJson(typeName: string, json: unknown): Record<string, unknown> {
  return messageFromJson(typeName, json);
}

function messageFromJson(typeName: string, json: unknown): Record<string, unknown> {
  // null is an empty message (encoding/json leaves a nil map).
  if (json === null) return messageFromJson(typeName, {});
  if (typeof json !== "object" || Array.isArray(json) || json instanceof JsonNumber) {
    throw new JsonFormatError(goTypeError(goValueName(json), "map[string]json.RawMessage"));
  }
  const out: Record<string, unknown> = {};
  const { byJsonKey, ordered } = inputTableOf(typeName);
  for (const field of ordered) {
    if (field.oneof !== undefined || (field.kind === "message" && !field.repeated)) continue;
    out[field.key] = field.repeated ? [] : defaultOf(field);
  }
  // jsonpb takes a field's proto name or its lowerCamelCase name; given both, the latter.
  const given = new Map<JsonField, unknown>();
  for (const [jsonKey, value] of Object.entries(json as Record<string, unknown>)) {
    const field = byJsonKey.get(jsonKey);
    if (field === undefined) continue;
    if (jsonKey === field.jsonName || !given.has(field)) given.set(field, value);
  }
  const oneofsSet = new Map<string, string>();
  for (const field of ordered) {
    const value = given.get(field);
    if (value === undefined || value === null) continue;
    if (field.oneof !== undefined) {
      // jsonpb keeps whichever its map iteration sets last (random): refused here instead.
      const other = oneofsSet.get(field.oneof);
      if (other !== undefined) {
        throw new JsonFormatError(`${typeName}.${field.name}: oneof ${field.oneof} already set by ${other}`);
      }
      oneofsSet.set(field.oneof, field.name);
    }
    if (field.repeated) {
      if (!Array.isArray(value))
        throw new JsonFormatError(goTypeError(goValueName(value), "[]json.RawMessage"));
      out[field.key] = value.map((item) =>
        item === null && field.kind !== "message" ? defaultOf(field) : valueFromJson(field, item),
      );
    } else {
      out[field.key] = valueFromJson(field, value);
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

function valueFromJson(field: JsonField, value: unknown): unknown {
  switch (field.kind) {
    case "message":
      return messageFromJson(field.type!, value);
    case "enum":
      return enumFromJson(field.type!, value);
    case "bool":
      if (typeof value !== "boolean") throw new JsonFormatError(goTypeError(goValueName(value), "bool"));
      return value;
    case "string":
      if (typeof value !== "string") throw new JsonFormatError(goTypeError(goValueName(value), "string"));
      return value;
    case "bytes":
      if (typeof value !== "string") throw new JsonFormatError(goTypeError(goValueName(value), "[]uint8"));
      return goBase64(value);
    default:
      return numberFromJson(field.kind, value);
  }
}

/** The Go type of an enum as generated: its nested names joined by "_" (RangeRequest_SortOrder). */
function goEnumType(typeName: string): string {
  const dot = typeName.indexOf(".");
  return typeName.slice(0, dot + 1) + typeName.slice(dot + 1).replaceAll(".", "_");
}

function enumFromJson(typeName: string, value: unknown): number {
  if (typeof value === "string") {
    const n = enumOf(typeName)[value];
    if (n === undefined)
      throw new JsonFormatError(`unknown value ${JSON.stringify(value)} for enum ${goEnumType(typeName)}`);
    return n;
  }
  // A number is an int32 as encoding/json reads one: any value in range, named or not.
  const literal = numberLiteral(value);
  if (literal === undefined) throw new JsonFormatError(goTypeError(goValueName(value), goEnumType(typeName)));
  const n = /^-?\d+$/.test(literal) ? Number(literal) : Number.NaN;
  if (!(n >= -(2 ** 31) && n < 2 ** 31)) {
    throw new JsonFormatError(goTypeError(`number ${literal}`, goEnumType(typeName)));
  }
  return n;
}

function numberLiteral(value: unknown): string | undefined {
  if (value instanceof JsonNumber) return value.literal;
  // A JS number (a caller's object, not a parsed body): an integer as its exact decimal digits.
  if (typeof value === "number") return Number.isInteger(value) ? BigInt(value).toString() : String(value);
  return undefined;
}

const GO_NUMBER_TYPES: Partial<Record<JsonField["kind"], string>> = {
  int64: "int64",
  sint64: "int64",
  sfixed64: "int64",
  uint64: "uint64",
  fixed64: "uint64",
  int32: "int32",
  sint32: "int32",
  sfixed32: "int32",
  uint32: "uint32",
  fixed32: "uint32",
  double: "float64",
  float: "float32",
};

const INTEGER_BOUNDS: Partial<Record<string, [bigint, bigint]>> = {
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
};

/**
 * A number field as jsonpb reads it: a quoted value loses its quotes and what is inside is read
 * by encoding/json (so " 5" is 5, "abc" a syntax error, "1.5" no integer); the literal must then
 * parse as the Go type does (strconv.ParseInt: no fraction, no exponent, in range).
 * 32-bit kinds give a number, 64-bit kinds a bigint.
 */
function numberFromJson(kind: JsonField["kind"], value: unknown): number | bigint {
  const goType = GO_NUMBER_TYPES[kind]!;
  let inner = value;
  if (typeof value === "string") {
    if (goType.startsWith("float") && NON_FINITE[value] !== undefined) return NON_FINITE[value];
    try {
      inner = parseGoJson(value, "unmarshal");
    } catch (err) {
      if (err instanceof GoJsonSyntaxError) throw new JsonFormatError(err.message);
      throw err;
    }
    if (inner === null) return INT64_KINDS.has(kind) ? 0n : 0;
  }
  const literal = numberLiteral(inner);
  if (literal === undefined) throw new JsonFormatError(goTypeError(goValueName(inner), goType));
  if (goType.startsWith("float")) {
    const n = Number(literal);
    if (!Number.isFinite(n)) throw new JsonFormatError(goTypeError(`number ${literal}`, goType));
    return n;
  }
  const [min, max] = INTEGER_BOUNDS[goType]!;
  const n = /^-?\d+$/.test(literal) ? BigInt(literal) : undefined;
  if (n === undefined || n < min || n > max) {
    throw new JsonFormatError(goTypeError(`number ${literal}`, goType));
  }
  return INT64_KINDS.has(kind) ? n : Number(n);
}

const NON_FINITE: Record<string, number> = {
  NaN: Number.NaN,
  Infinity: Number.POSITIVE_INFINITY,
  "-Infinity": Number.NEGATIVE_INFINITY,
};

const BASE64_DECODE = new Uint8Array(256).fill(0xff);
for (const [i, c] of [..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"].entries()) {
  BASE64_DECODE[c.charCodeAt(0)] = i;
}

const corruptBase64 = (at: number) => new JsonFormatError(`illegal base64 data at input byte ${at}`);

/**
 * A bytes field as encoding/json decodes one: Go's base64.StdEncoding (the standard alphabet,
 * padded; CR and LF skipped), with its CorruptInputError offsets; bits past the last byte are
 * not checked (not strict).
 */
export function goBase64(text: string): Buffer {
  const src = Buffer.from(text, "utf8");
  const out = Buffer.allocUnsafe(Math.floor(src.length / 4) * 3 + 3);
  let n = 0;
  let si = 0;
  const skipNewlines = () => {
    while (si < src.length && (src[si] === 0x0a || src[si] === 0x0d)) si++;
  };
  for (;;) {
    const quantum = [0, 0, 0, 0];
    let length = 4;
    let last = false;
    for (let j = 0; j < 4; j++) {
      if (si === src.length) {
        if (j === 0) return out.subarray(0, n);
        throw corruptBase64(si - j);
      }
      const c = src[si]!;
      si++;
      const sextet = BASE64_DECODE[c]!;
      if (sextet !== 0xff) {
        quantum[j] = sextet;
        continue;
      }
      if (c === 0x0a || c === 0x0d) {
        j--;
        continue;
      }
      if (c !== 0x3d || j < 2) throw corruptBase64(si - 1);
      if (j === 2) {
        // "==": the second one must follow.
        skipNewlines();
        if (si === src.length) throw corruptBase64(src.length);
        if (src[si] !== 0x3d) throw corruptBase64(si - 1);
        si++;
      }
      skipNewlines();
      if (si < src.length) throw corruptBase64(si);
      length = j;
      last = true;
      break;
    }
    const bits = (quantum[0]! << 18) | (quantum[1]! << 12) | (quantum[2]! << 6) | quantum[3]!;
    out[n++] = (bits >> 16) & 0xff;
    if (length > 2) out[n++] = (bits >> 8) & 0xff;
    if (length > 3) out[n++] = bits & 0xff;
    if (last) return out.subarray(0, n);
  }
}
