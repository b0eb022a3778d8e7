// mvccpb.KeyValue in protobuf wire format, written the way etcd's gogoproto Marshal writes it
// (fields in number order, zero values omitted), so stored values and therefore HashKV match
// etcd's bytes. Hand-written: this runs for every stored and every read revision, and a
// generic protobuf runtime would allocate far more.
import type { KeyValue } from "./types.js";

const EMPTY = Buffer.alloc(0);
const TWO_POW_32 = 4294967296;

const TAG_KEY = 0x0a; // field 1, length-delimited
const TAG_CREATE_REVISION = 0x10; // field 2, varint
const TAG_MOD_REVISION = 0x18; // field 3, varint
const TAG_VERSION = 0x20; // field 4, varint
const TAG_VALUE = 0x2a; // field 5, length-delimited
const TAG_LEASE = 0x30; // field 6, varint

export function encodeKeyValue(kv: KeyValue): Buffer {
  let size = 0;
  if (kv.key.length > 0) size += 1 + varintSize(kv.key.length) + kv.key.length;
  if (kv.createRevision !== 0) size += 1 + int64Size(kv.createRevision);
  if (kv.modRevision !== 0) size += 1 + int64Size(kv.modRevision);
  if (kv.version !== 0) size += 1 + int64Size(kv.version);
  if (kv.value.length > 0) size += 1 + varintSize(kv.value.length) + kv.value.length;
  if (kv.lease !== 0n) size += 1 + leaseVarintSize(kv.lease);

  const out = Buffer.allocUnsafe(size);
  let pos = 0;
  if (kv.key.length > 0) {
    out[pos++] = TAG_KEY;
    pos = writeVarint(out, pos, kv.key.length);
    pos += kv.key.copy(out, pos);
  }
  if (kv.createRevision !== 0) {
    out[pos++] = TAG_CREATE_REVISION;
    pos = writeInt64(out, pos, kv.createRevision);
  }
  if (kv.modRevision !== 0) {
    out[pos++] = TAG_MOD_REVISION;
    pos = writeInt64(out, pos, kv.modRevision);
  }
  if (kv.version !== 0) {
    out[pos++] = TAG_VERSION;
    pos = writeInt64(out, pos, kv.version);
  }
  if (kv.value.length > 0) {
    out[pos++] = TAG_VALUE;
    pos = writeVarint(out, pos, kv.value.length);
    pos += kv.value.copy(out, pos);
  }
  if (kv.lease !== 0n) {
    out[pos++] = TAG_LEASE;
    pos = writeLease(out, pos, kv.lease);
  }
  return out;
}

/**
 * Encoded KeyValues (stored revisions are encodeKeyValue's bytes) as consecutive occurrences
 * of a length-delimited field `field` of the enclosing message, in one buffer: a chunk of a
 * Range answer written straight from what RocksDB returned, with no KeyValue object between.
 */
export function keyValueFields(field: number, encoded: readonly Buffer[]): Buffer {
  const tag = field * 8 + 2; // < 128 for every field that carries KeyValues
  let size = 0;
  for (let i = 0; i < encoded.length; i++) {
    const n = encoded[i]!.length;
    size += 1 + varintSize(n) + n;
  }
  const out = Buffer.allocUnsafe(size);
  let pos = 0;
  for (let i = 0; i < encoded.length; i++) {
    const kv = encoded[i]!;
    out[pos++] = tag;
    pos = writeVarint(out, pos, kv.length);
    // TypedArray#set, not Buffer#copy: the same bytes without Buffer's JS argument checks, which
    // cost more than the copy itself for values of a few hundred bytes (a Range copies millions).
    out.set(kv, pos);
    pos += kv.length;
  }
  return out;
}

/** A stored KeyValue re-encoded without its value (keys_only of a key's older revision). */
export function withoutValue(stored: Buffer): Buffer {
  const kv = decodeKeyValue(stored);
  kv.value = EMPTY;
  return encodeKeyValue(kv);
}

/** Decodes a stored KeyValue; key and value are views into `bytes`, not copies. */
export function decodeKeyValue(bytes: Buffer): KeyValue {
  const kv: KeyValue = { key: EMPTY, createRevision: 0, modRevision: 0, version: 0, value: EMPTY, lease: 0n };
  let pos = 0;
  const end = bytes.length;
  while (pos < end) {
    const tag = bytes[pos++]!;
    const wireType = tag & 7;
    if (wireType === 2) {
      const length = readVarint(bytes, pos);
      const next = nextPos;
      pos = next + length;
      if (pos > end) throw new Error("mvcc: truncated KeyValue");
      if (tag === TAG_KEY) kv.key = bytes.subarray(next, pos);
      else if (tag === TAG_VALUE) kv.value = bytes.subarray(next, pos);
    } else if (wireType === 0) {
      if (tag === TAG_LEASE) {
        kv.lease = readLease(bytes, pos);
        pos = nextPos;
        continue;
      }
      const value = readInt64(bytes, pos);
      pos = nextPos;
      if (tag === TAG_CREATE_REVISION) kv.createRevision = value;
      else if (tag === TAG_MOD_REVISION) kv.modRevision = value;
      else if (tag === TAG_VERSION) kv.version = value;
    } else {
      throw new Error(`mvcc: unexpected wire type ${wireType} in KeyValue`);
    }
  }
  return kv;
}

/** The fields the key index needs from a stored KeyValue, read without allocating views. */
export interface IndexFields {
  key: string;
  createRevision: number;
  version: number;
  lease: bigint;
}

/**
 * The key of an encoded KeyValue (latin1, one char per byte) without decoding the rest: a
 * history scan filters most rows out on it.
 */
export function keyOfEncodedKeyValue(bytes: Buffer): string {
  let pos = 0;
  const end = bytes.length;
  while (pos < end) {
    const tag = bytes[pos++]!;
    const wireType = tag & 7;
    if (wireType === 2) {
      const length = readVarint(bytes, pos);
      const next = nextPos;
      pos = next + length;
      if (pos > end) throw new Error("mvcc: truncated KeyValue");
      if (tag === TAG_KEY) return bytes.toString("latin1", next, pos);
    } else if (wireType === 0) {
      readInt64(bytes, pos);
      pos = nextPos;
    } else {
      throw new Error(`mvcc: unexpected wire type ${wireType} in KeyValue`);
    }
  }
  return "";
}

/** Decodes only what restoring the key index needs; `out` is reused across calls. */
export function decodeIndexFields(bytes: Buffer, out: IndexFields): IndexFields {
  out.key = "";
  out.createRevision = 0;
  out.version = 0;
  out.lease = 0n;
  let pos = 0;
  const end = bytes.length;
  while (pos < end) {
    const tag = bytes[pos++]!;
    const wireType = tag & 7;
    if (wireType === 2) {
      const length = readVarint(bytes, pos);
      const next = nextPos;
      pos = next + length;
      if (pos > end) throw new Error("mvcc: truncated KeyValue");
      if (tag === TAG_KEY) out.key = bytes.toString("latin1", next, pos);
    } else if (wireType === 0) {
      if (tag === TAG_LEASE) {
        out.lease = readLease(bytes, pos);
        pos = nextPos;
        continue;
      }
      const value = readInt64(bytes, pos);
      pos = nextPos;
      if (tag === TAG_CREATE_REVISION) out.createRevision = value;
      else if (tag === TAG_VERSION) out.version = value;
    } else {
      throw new Error(`mvcc: unexpected wire type ${wireType} in KeyValue`);
    }
  }
  return out;
}

export function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

export function int64Size(n: number): number {
  // Negative int64s are sign-extended to ten bytes on the wire.
  return n < 0 ? 10 : varintSize(n);
}

export function writeVarint(out: Buffer, pos: number, n: number): number {
  while (n >= 128) {
    out[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  out[pos++] = n;
  return pos;
}

export function writeInt64(out: Buffer, pos: number, n: number): number {
  if (n >= 0) return writeVarint(out, pos, n);
  let big = BigInt.asUintN(64, BigInt(n));
  for (let i = 0; i < 9; i++) {
    out[pos++] = Number(big & 0x7fn) | 0x80;
    big >>= 7n;
  }
  out[pos++] = Number(big);
  return pos;
}

// Lease IDs are int64s that use all 64 bits (etcd's generator puts the member's bits at the
// top), so they go through BigInt; only keys attached to a lease pay for it.
/** Varint bytes of an int64 lease ID (ten for a negative one), as proto3 writes it. */
export function leaseVarintSize(lease: bigint): number {
  // Below 2^53 the number loop gives the size without BigInt arithmetic.
  if (lease >= 0n && lease <= 9007199254740991n) return varintSize(Number(lease));
  let n = BigInt.asUintN(64, lease);
  let size = 1;
  while (n >= 0x80n) {
    n >>= 7n;
    size++;
  }
  return size;
}

function writeLease(out: Buffer, pos: number, lease: bigint): number {
  let n = BigInt.asUintN(64, lease);
  while (n >= 0x80n) {
    out[pos++] = Number(n & 0x7fn) | 0x80;
    n >>= 7n;
  }
  out[pos++] = Number(n);
  return pos;
}

function readLease(bytes: Buffer, pos: number): bigint {
  let n = 0n;
  for (let shift = 0n; shift < 70n; shift += 7n) {
    if (pos >= bytes.length) throw new Error("mvcc: truncated varint");
    const byte = bytes[pos++]!;
    n |= BigInt(byte & 0x7f) << shift;
    if (byte < 0x80) {
      nextPos = pos;
      return BigInt.asIntN(64, n);
    }
  }
  throw new Error("mvcc: varint too long");
}

// Position after the last varint read; a module-level cursor instead of a returned tuple keeps
// decoding allocation-free apart from the KeyValue itself.
let nextPos = 0;

function readVarint(bytes: Buffer, pos: number): number {
  let result = 0;
  let multiplier = 1;
  for (;;) {
    if (pos >= bytes.length) throw new Error("mvcc: truncated varint");
    const byte = bytes[pos++]!;
    result += (byte & 0x7f) * multiplier;
    if (byte < 0x80) {
      nextPos = pos;
      return result;
    }
    multiplier *= 128;
    if (multiplier > 2 ** 63) throw new Error("mvcc: varint too long");
  }
}

function readInt64(bytes: Buffer, pos: number): number {
  // The tenth byte only appears for negative values; decode those through BigInt.
  let length = 0;
  while (bytes[pos + length]! & 0x80) length++;
  if (length < 9) return readVarint(bytes, pos);
  let big = 0n;
  for (let i = length; i >= 0; i--) big = (big << 7n) | BigInt(bytes[pos + i]! & 0x7f);
  nextPos = pos + length + 1;
  return Number(BigInt.asIntN(64, big));
}

export function uint64Bytes(n: number): Buffer {
  const out = Buffer.allocUnsafe(8);
  out.writeUInt32BE(Math.floor(n / TWO_POW_32), 0);
  out.writeUInt32BE(n >>> 0, 4);
  return out;
}

export function readUint64Bytes(bytes: Buffer): number {
  return bytes.readUInt32BE(0) * TWO_POW_32 + bytes.readUInt32BE(4);
}
