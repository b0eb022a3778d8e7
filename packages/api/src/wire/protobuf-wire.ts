// A minimal protobuf wire-format reader and writer, for hot paths where the generated codecs
// do too much: the gateway forwards etcd messages as raw bytes and only looks at the few
// fields it routes or coalesces on, and a member fanning one event out to thousands of
// watchers encodes the event once and splices its bytes into each watcher's response. 64-bit values are
// read as bigint where they can exceed 2^53 (etcd's member and cluster IDs are random
// uint64s), and as numbers where etcd keeps them small (revisions, TTLs, flags).

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LENGTH_DELIMITED = 2;
export const WIRE_FIXED32 = 5;

/** Bytes that are not a valid protobuf encoding (truncated, bad varint, unknown wire type). */
export class WireFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WireFormatError";
  }
}

/**
 * Walks the fields of one message. `next()` reads a tag; then exactly one of the value
 * readers (or `skip()`) must consume the value before the next `next()`.
 */
export class WireReader {
  fieldNumber = 0;
  wireType = 0;
  /** Offset of the current field's tag: with `pos` after reading, the field's raw extent. */
  fieldStart = 0;
  pos: number;

  constructor(
    readonly buf: Uint8Array,
    start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start;
  }

  next(): boolean {
    if (this.pos >= this.end) return false;
    this.fieldStart = this.pos;
    const tag = this.varint();
    this.fieldNumber = Math.floor(tag / 8);
    this.wireType = tag & 7;
    if (this.fieldNumber === 0) throw new WireFormatError("field number 0");
    return true;
  }

  /** A varint as a JS number; exact up to 2^53, which covers every field read this way. */
  varint(): number {
    let result = 0;
    let multiplier = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new WireFormatError("truncated varint");
      const byte = this.buf[this.pos++]!;
      result += (byte & 0x7f) * multiplier;
      if (byte < 0x80) return result;
      multiplier *= 128;
    }
    throw new WireFormatError("varint longer than 10 bytes");
  }

  /**
   * A varint as an unsigned 64-bit bigint (uint64 IDs), truncated to 64 bits as protobuf does. The
   * bits are gathered as two 32-bit halves in numbers and made a bigint once: one to four bigint
   * allocations per value instead of four per 7 bits (a member reads the cluster and two member IDs
   * of every peer batch: ~8 KB of young garbage per put at one client, profiled).
   */
  varintU64(): bigint {
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new WireFormatError("truncated varint");
      const byte = this.buf[this.pos++]!;
      const bits = byte & 0x7f;
      if (i < 4) lo += bits * 2 ** (7 * i);
      else if (i === 4) {
        lo += (bits & 0xf) * 2 ** 28;
        hi = bits >>> 4;
      } else hi += bits * 2 ** (7 * i - 32);
      if (byte < 0x80) return uint64FromHalves(lo, hi % 2 ** 32);
    }
    throw new WireFormatError("varint longer than 10 bytes");
  }

  /** A varint as a signed int64 (watch IDs are -1 when a create fails). */
  varintI64(): number {
    return Number(BigInt.asIntN(64, this.varintU64()));
  }

  bool(): boolean {
    return this.varint() !== 0;
  }

  /** A length-delimited value as a view into the buffer (no copy). */
  bytes(): Uint8Array {
    const length = this.varint();
    const start = this.pos;
    if (start + length > this.end) throw new WireFormatError("truncated length-delimited field");
    this.pos = start + length;
    return this.buf.subarray(start, start + length);
  }

  /** Start and end offsets of a length-delimited value, for readers nested in place. */
  lengthDelimitedRange(): [number, number] {
    const length = this.varint();
    const start = this.pos;
    if (start + length > this.end) throw new WireFormatError("truncated length-delimited field");
    this.pos = start + length;
    return [start, start + length];
  }

  skip(): void {
    switch (this.wireType) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_FIXED64:
        this.advance(8);
        return;
      case WIRE_LENGTH_DELIMITED:
        this.lengthDelimitedRange();
        return;
      case WIRE_FIXED32:
        this.advance(4);
        return;
      default:
        throw new WireFormatError(`unsupported wire type ${this.wireType}`);
    }
  }

  private advance(n: number): void {
    if (this.pos + n > this.end) throw new WireFormatError("truncated fixed-width field");
    this.pos += n;
  }
}

/** hi * 2^32 + lo as a bigint, both halves below 2^32: one allocation below 2^53. */
function uint64FromHalves(lo: number, hi: number): bigint {
  return hi < 2 ** 21 ? BigInt(hi * 2 ** 32 + lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

/** Appends protobuf fields to a growing list of chunks, concatenated once at the end. */
export class WireWriter {
  private readonly chunks: Uint8Array[] = [];
  private scratch: number[] = [];

  /** A varint field; bigint or negative numbers are written as 64-bit two's complement. */
  varintField(fieldNumber: number, value: number | bigint | boolean): this {
    this.key(fieldNumber, WIRE_VARINT);
    this.varint(typeof value === "boolean" ? (value ? 1 : 0) : value);
    return this;
  }

  bytesField(fieldNumber: number, value: Uint8Array | string): this {
    const bytes = typeof value === "string" ? Buffer.from(value) : value;
    this.key(fieldNumber, WIRE_LENGTH_DELIMITED);
    this.varint(bytes.length);
    this.flushScratch();
    this.chunks.push(bytes);
    return this;
  }

  /** Copies already-encoded fields verbatim (fields a rewrite keeps as they were). */
  raw(bytes: Uint8Array): this {
    this.flushScratch();
    this.chunks.push(bytes);
    return this;
  }

  finish(): Buffer {
    this.flushScratch();
    return Buffer.concat(this.chunks);
  }

  private key(fieldNumber: number, wireType: number): void {
    this.varint(fieldNumber * 8 + wireType);
  }

  private varint(value: number | bigint): void {
    if (typeof value === "number" && value >= 0 && value <= Number.MAX_SAFE_INTEGER) {
      let v = value;
      while (v >= 0x80) {
        this.scratch.push((v % 128) | 0x80);
        v = Math.floor(v / 128);
      }
      this.scratch.push(v);
      return;
    }
    // As two 32-bit halves: two bigint operations per value instead of one (and an allocation)
    // per 7 bits; every response header carries two 64-bit member and cluster IDs.
    const v = BigInt.asUintN(64, BigInt(value));
    let lo = Number(v & 0xffffffffn);
    let hi = Number(v >> 32n);
    while (hi > 0 || lo >= 0x80) {
      this.scratch.push((lo & 0x7f) | 0x80);
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    this.scratch.push(lo);
  }

  private flushScratch(): void {
    if (this.scratch.length > 0) {
      this.chunks.push(Uint8Array.from(this.scratch));
      this.scratch = [];
    }
  }
}
