// Whether etcd would accept a request's bytes, and if not, its words. etcd's messages are
// decoded by gogo/protobuf's generated Unmarshal (etcdserverpb/rpc.pb.go), stricter than the
// proto3 spec and than our generated decoders: a known field with another wire type, a tag 0, an
// end-group tag, a varint of 11 bytes or a length past the end is refused, and grpc-go answers
// INTERNAL "grpc: error unmarshalling request: <gogo's error>". Our decoders skip such a field as
// unknown and go on, so a Lock with a wrongly typed name would take a lock etcd never takes. This
// walks the bytes as gogo's Unmarshal does (no values built), from the generated field tables;
// a server runs it on every request before its handler decodes it (http2-server.ts).

import { JSON_MESSAGES } from "../gen/json-fields.js";
import { REQUEST_TYPES } from "../gen/request-types.js";
import type { JsonField } from "../json-codec.js";

/** Why a request's bytes would be refused by etcd's Unmarshal (gogo's error text), or undefined. */
export type RequestCheck = (message: Uint8Array) => string | undefined;

const UNEXPECTED_EOF = "unexpected EOF";
const INTEGER_OVERFLOW = "proto: integer overflow";
const NEGATIVE_LENGTH = "proto: negative length found during unmarshaling";
/**
 * Messages nested deeper than this (Txns in Txns) are refused: our generated decoders stop at
 * 100 levels (gogo has no limit), and a walk this deep must not exhaust the stack.
 */
export const MAX_NESTING = 100;
const TOO_DEEP = "protobuf decode recursion limit exceeded";

interface WireField {
  /** The Go field name gogo's errors use (protoc-gen-go's CamelCase of the .proto name). */
  readonly goName: string;
  readonly wireType: number;
  /** A repeated numeric field: gogo takes it packed (wire type 2) or one value at a time. */
  readonly packable: boolean;
  /** The field's message type, checked in turn. */
  readonly message?: WireMessage;
}

interface WireMessage {
  /** The Go type name gogo's errors use. */
  readonly goName: string;
  readonly fields: Map<number, WireField>;
}

const WIRE_TYPE_OF_KIND: Record<JsonField["kind"], number> = {
  int32: 0,
  int64: 0,
  uint32: 0,
  uint64: 0,
  sint32: 0,
  sint64: 0,
  bool: 0,
  enum: 0,
  fixed64: 1,
  sfixed64: 1,
  double: 1,
  fixed32: 5,
  sfixed32: 5,
  float: 5,
  string: 2,
  bytes: 2,
  message: 2,
};

/** protoc-gen-go's CamelCase: "range_end" -> "RangeEnd", "peerURLs" -> "PeerURLs", "ID" -> "ID". */
export function goCamelCase(name: string): string {
  let out = "";
  let i = 0;
  if (name.startsWith("_")) {
    out = "X";
    i = 1;
  }
  const isLower = (c: string | undefined) => c !== undefined && c >= "a" && c <= "z";
  for (; i < name.length; i++) {
    let c = name[i]!;
    if (c === "_" && isLower(name[i + 1])) continue;
    if (c >= "0" && c <= "9") {
      out += c;
      continue;
    }
    if (isLower(c)) c = c.toUpperCase();
    out += c;
    while (isLower(name[i + 1])) out += name[++i];
  }
  return out;
}

const messages = new Map<string, WireMessage>();

function wireMessage(typeName: string): WireMessage {
  const known = messages.get(typeName);
  if (known !== undefined) return known;
  const table = JSON_MESSAGES[typeName];
  if (table === undefined) throw new Error(`unmarshal-check: no field table for ${typeName}`);
  // Go names a nested type Parent_Child; the package is not part of it.
  const goName = typeName.split(".").slice(1).join("_");
  const message: WireMessage = { goName, fields: new Map() };
  messages.set(typeName, message); // before the fields: a message may contain itself (TxnRequest)
  for (const f of table) {
    const wireType = WIRE_TYPE_OF_KIND[f.kind];
    message.fields.set(f.number, {
      goName: goCamelCase(f.name),
      wireType,
      packable: f.repeated === true && wireType !== 2,
      message: f.kind === "message" ? wireMessage(f.type!) : undefined,
    });
  }
  return message;
}

/** The check for requests of the gRPC method `path`, or undefined for a method not of etcd's API. */
export function etcdRequestCheck(path: string): RequestCheck | undefined {
  const typeName = REQUEST_TYPES[path];
  if (typeName === undefined) return undefined;
  const message = wireMessage(typeName);
  return (bytes) => checkMessage(message, bytes, 0, bytes.length, 0);
}

/** gogo's error for `bytes` as a `typeName` message (a full name, e.g. "etcdserverpb.PutRequest"). */
export function unmarshalError(typeName: string, bytes: Uint8Array): string | undefined {
  return checkMessage(wireMessage(typeName), bytes, 0, bytes.length, 0);
}

// Positions are returned as numbers >= 0; an error as its text. The varint loops follow gogo's:
// an 11th byte is an overflow, a missing byte an unexpected EOF.

/** Skips a varint at `pos`: the position after it, or the error. */
function skipVarint(b: Uint8Array, pos: number, end: number): number | string {
  for (let i = 0; ; i++) {
    if (i >= 10) return INTEGER_OVERFLOW;
    if (pos >= end) return UNEXPECTED_EOF;
    if (b[pos++]! < 0x80) return pos;
  }
}

/**
 * A length as gogo reads it into a Go int: [length, position after it]. Bits past 64 are
 * dropped and bit 63 (the 10th byte's lowest) makes it negative, returned as -1; a length of
 * 2^49 or more is past any buffer's end and returned as Infinity.
 */
function readLength(b: Uint8Array, pos: number, end: number): [number, number] | string {
  let length = 0;
  for (let i = 0; ; i++) {
    if (i >= 10) return INTEGER_OVERFLOW;
    if (pos >= end) return UNEXPECTED_EOF;
    const byte = b[pos++]!;
    const bits = byte & 0x7f;
    if (i < 7) length += bits * 2 ** (7 * i);
    else if (i < 9 && bits !== 0 && length >= 0) length = Number.POSITIVE_INFINITY;
    else if (i === 9 && (bits & 1) !== 0) length = -1;
    if (byte < 0x80) return [length, pos];
  }
}

/** A tag: [field number as gogo's int32(wire >> 3), wire type, position after], or the error. */
function readTag(b: Uint8Array, pos: number, end: number): [number, number, number] | string {
  const start = pos;
  const after = skipVarint(b, pos, end);
  if (typeof after === "string") return after;
  if (after - start <= 4) {
    // Under 2^28: exact as a number.
    let wire = 0;
    for (let i = start; i < after; i++) wire += (b[i]! & 0x7f) * 2 ** (7 * (i - start));
    return [Math.floor(wire / 8), wire & 7, after];
  }
  const wire = wideTag(b, start, after);
  return [Number(BigInt.asIntN(32, wire >> 3n)), Number(wire & 7n), after];
}

/** The tag between `start` and `after` as the uint64 gogo reads (bits past 64 dropped). */
function wideTag(b: Uint8Array, start: number, after: number): bigint {
  let wire = 0n;
  for (let i = start; i < after; i++) wire |= BigInt(b[i]! & 0x7f) << BigInt(7 * (i - start));
  return wire & 0xffff_ffff_ffff_ffffn;
}

/** gogo's skipRpc: the length of the unknown field at `pos` (tag included), or the error. */
function skipField(b: Uint8Array, pos: number, end: number): number | string {
  const start = pos;
  const tag = readTag(b, pos, end);
  if (typeof tag === "string") return tag;
  pos = tag[2];
  switch (tag[1]) {
    case 0: {
      const after = skipVarint(b, pos, end);
      return typeof after === "string" ? after : after - start;
    }
    case 1:
      return pos + 8 - start;
    case 2: {
      const length = readLength(b, pos, end);
      if (typeof length === "string") return length;
      if (length[0] < 0) return NEGATIVE_LENGTH;
      return length[1] + length[0] - start;
    }
    case 3:
      // A group: fields up to the next end-group tag, whatever its number (gogo does not match them).
      for (;;) {
        const inner = readTag(b, pos, end);
        if (typeof inner === "string") return inner;
        if (inner[1] === 4) return inner[2] - start;
        const skipped = skipField(b, pos, end);
        if (typeof skipped === "string") return skipped;
        pos += skipped;
      }
    case 4:
      return pos - start;
    case 5:
      return pos + 4 - start;
    default:
      return `proto: illegal wireType ${tag[1]}`;
  }
}

/** One value of `wireType` at `pos` (a known field's): the position after it, or the error. */
function skipValue(b: Uint8Array, pos: number, end: number, wireType: number): number | string {
  if (wireType === 0) return skipVarint(b, pos, end);
  const size = wireType === 1 ? 8 : 4;
  return pos + size > end ? UNEXPECTED_EOF : pos + size;
}

function checkMessage(
  message: WireMessage,
  b: Uint8Array,
  pos: number,
  end: number,
  depth: number,
): string | undefined {
  if (depth >= MAX_NESTING) return TOO_DEEP;
  while (pos < end) {
    const tag = readTag(b, pos, end);
    if (typeof tag === "string") return tag;
    const [fieldNumber, wireType, afterTag] = tag;
    if (wireType === 4) return `proto: ${message.goName}: wiretype end group for non-group`;
    if (fieldNumber <= 0) {
      // gogo prints the whole tag where it says "wire type".
      return `proto: ${message.goName}: illegal tag ${fieldNumber} (wire type ${wideTag(b, pos, afterTag)})`;
    }
    const field = message.fields.get(fieldNumber);
    if (field === undefined) {
      const skipped = skipField(b, pos, end);
      if (typeof skipped === "string") return skipped;
      if (pos + skipped > end) return UNEXPECTED_EOF;
      pos += skipped;
      continue;
    }
    pos = afterTag;
    if (wireType === field.wireType && field.wireType !== 2) {
      const after = skipValue(b, pos, end, wireType);
      if (typeof after === "string") return after;
      pos = after;
      continue;
    }
    if (wireType !== 2 || (field.wireType !== 2 && !field.packable)) {
      return `proto: wrong wireType = ${wireType} for field ${field.goName}`;
    }
    const length = readLength(b, pos, end);
    if (typeof length === "string") return length;
    if (length[0] < 0) return NEGATIVE_LENGTH;
    const valueEnd = length[1] + length[0];
    if (valueEnd > end) return UNEXPECTED_EOF;
    pos = length[1];
    if (field.packable) {
      // Packed values: each read against the message's end, as gogo's loop does.
      while (pos < valueEnd) {
        const after = skipValue(b, pos, end, field.wireType);
        if (typeof after === "string") return after;
        pos = after;
      }
      continue;
    }
    if (field.message !== undefined) {
      const inner = checkMessage(field.message, b, pos, valueEnd, depth + 1);
      if (inner !== undefined) return inner;
    }
    pos = valueEnd;
  }
  return undefined;
}
