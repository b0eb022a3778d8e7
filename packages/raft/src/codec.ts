// Compact, versionless binary encodings of the Raft data for the WAL and the peer transport.
// Integers are unsigned LEB128 varints (terms and indexes stay below 2^53; node IDs are
// full 64-bit values, as etcd's member IDs, read and written as bigint); byte
// strings are a varint length then the bytes. Fields come in a fixed order. Decoders
// check every bound and tag and reject trailing bytes, so a torn or corrupt record is
// an error, never a plausible-looking value. Decoded byte fields are views into the input
// (no copy): callers must not reuse the input buffer afterwards.

import { RaftError } from "./errors.js";
import {
  type ConfChange,
  ConfChangeType,
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  MessageType,
  type NodeId,
  type Snapshot,
  type SnapshotMetadata,
} from "./types.js";

const EMPTY = new Uint8Array(0);
const MAX_UINT64 = (1n << 64n) - 1n;
const SAFE_LIMIT = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * hi * 2^32 + lo as a bigint, both halves below 2^32: one allocation below 2^53, four above (the
 * bigint per 7 bits this replaced was ~13 KB of young garbage per put on the leader at one client,
 * profiled). @etcd-ts/api's wire reader has the same for uint64 fields; this package depends on none.
 */
function uint64FromHalves(lo: number, hi: number): bigint {
  return hi < 2 ** 21 ? BigInt(hi * 2 ** 32 + lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

/** What the encoders write to: bytes (Writer), or only their count (SizeCounter). */
interface Sink {
  uint(n: number): void;
  id(n: bigint): void;
  bytes(b: Uint8Array): void;
}

class Writer implements Sink {
  buf: Uint8Array;
  pos: number;

  /** A fresh buffer of `capacity` bytes, or `buffer` from `pos` on (grown into a copy if too small). */
  constructor(capacity: number);
  constructor(buffer: Uint8Array, pos: number);
  constructor(capacityOrBuffer: number | Uint8Array, pos = 0) {
    this.buf = typeof capacityOrBuffer === "number" ? new Uint8Array(capacityOrBuffer) : capacityOrBuffer;
    this.pos = pos;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.pos + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  // % and Math.floor rather than bit operators, which truncate to 32 bits.
  uint(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0)
      throw new RaftError(`cannot encode ${n}: not a safe unsigned integer`);
    this.ensure(8);
    const buf = this.buf;
    let pos = this.pos;
    while (n >= 0x80) {
      buf[pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    buf[pos++] = n;
    this.pos = pos;
  }

  /** A node ID: the same LEB128 bytes as uint() for values below 2^53, up to 2^64-1. */
  id(n: bigint): void {
    if (n < 0n || n > MAX_UINT64) throw new RaftError(`cannot encode node ID ${n}: not a uint64`);
    if (n < SAFE_LIMIT) {
      this.uint(Number(n));
      return;
    }
    // Two bigint operations, then numbers: not two allocations per 7 bits (every Raft message
    // carries two IDs; most member IDs are above 2^53).
    this.ensure(10);
    const buf = this.buf;
    let pos = this.pos;
    let lo = Number(n & 0xffffffffn);
    let hi = Number(n >> 32n);
    while (hi > 0 || lo >= 0x80) {
      buf[pos++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    buf[pos++] = lo;
    this.pos = pos;
  }

  bytes(b: Uint8Array): void {
    this.uint(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  finish(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }
}

/** Counts the bytes a Writer would write, with the same checks. */
class SizeCounter implements Sink {
  size = 0;

  uint(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0)
      throw new RaftError(`cannot encode ${n}: not a safe unsigned integer`);
    let bytes = 1;
    while (n >= 0x80) {
      n = Math.floor(n / 0x80);
      bytes++;
    }
    this.size += bytes;
  }

  id(n: bigint): void {
    if (n < 0n || n > MAX_UINT64) throw new RaftError(`cannot encode node ID ${n}: not a uint64`);
    if (n < SAFE_LIMIT) {
      this.uint(Number(n));
      return;
    }
    // At or above 2^53: 32 bits of the low half, and the high half's own.
    const hi = Number(n >> 32n);
    this.size += Math.ceil((64 - Math.clz32(hi)) / 7);
  }

  bytes(b: Uint8Array): void {
    this.uint(b.length);
    this.size += b.length;
  }
}

class Reader {
  private pos = 0;
  constructor(
    private readonly buf: Uint8Array,
    private readonly what: string,
  ) {}

  uint(): number {
    const buf = this.buf;
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.pos >= buf.length) throw new RaftError(`malformed ${this.what}: truncated varint`);
      const b = buf[this.pos++];
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) {
        if (!Number.isSafeInteger(result)) throw new RaftError(`malformed ${this.what}: integer too large`);
        if (b === 0 && i > 0) throw new RaftError(`malformed ${this.what}: non-minimal varint`);
        return result;
      }
      scale *= 0x80;
    }
    throw new RaftError(`malformed ${this.what}: varint too long`);
  }

  /** As uint() up to 2^64-1, the bits gathered as two 32-bit halves in numbers. */
  id(): bigint {
    const buf = this.buf;
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= buf.length) throw new RaftError(`malformed ${this.what}: truncated varint`);
      const b = buf[this.pos++];
      const bits = b & 0x7f;
      if (i < 4) lo += bits * 2 ** (7 * i);
      else if (i === 4) {
        lo += (bits & 0xf) * 2 ** 28;
        hi = bits >>> 4;
      } else hi += bits * 2 ** (7 * i - 32);
      if ((b & 0x80) === 0) {
        if (b === 0 && i > 0) throw new RaftError(`malformed ${this.what}: non-minimal varint`);
        if (hi >= 2 ** 32) throw new RaftError(`malformed ${this.what}: node ID beyond 64 bits`);
        return uint64FromHalves(lo, hi);
      }
    }
    throw new RaftError(`malformed ${this.what}: varint too long`);
  }

  enumValue<T extends number>(max: number, name: string): T {
    const v = this.uint();
    if (v > max) throw new RaftError(`malformed ${this.what}: bad ${name} ${v}`);
    return v as T;
  }

  bytes(): Uint8Array {
    const n = this.uint();
    if (n > this.buf.length - this.pos) throw new RaftError(`malformed ${this.what}: truncated bytes`);
    if (n === 0) return EMPTY;
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** A count of items each at least one byte long: bounds allocation by the input size. */
  count(): number {
    const n = this.uint();
    if (n > this.buf.length - this.pos)
      throw new RaftError(`malformed ${this.what}: count ${n} exceeds input`);
    return n;
  }

  end(): void {
    if (this.pos !== this.buf.length) throw new RaftError(`malformed ${this.what}: trailing bytes`);
  }
}

const MAX_ENTRY_TYPE = EntryType.ConfChange;
const MAX_CONF_CHANGE_TYPE = ConfChangeType.AddLearnerNode;
const MAX_MESSAGE_TYPE = MessageType.MsgPreVoteResp;

function writeEntry(w: Sink, e: Entry): void {
  w.uint(e.term);
  w.uint(e.index);
  w.uint(e.type);
  w.bytes(e.data);
}

function readEntry(r: Reader): Entry {
  const term = r.uint();
  const index = r.uint();
  const type = r.enumValue<EntryType>(MAX_ENTRY_TYPE, "entry type");
  return { term, index, type, data: r.bytes() };
}

export function encodeEntry(e: Entry): Uint8Array {
  const w = new Writer(e.data.length + 24);
  writeEntry(w, e);
  return w.finish();
}

export function decodeEntry(b: Uint8Array): Entry {
  const r = new Reader(b, "entry");
  const e = readEntry(r);
  r.end();
  return e;
}

export function encodeHardState(h: HardState): Uint8Array {
  const w = new Writer(24);
  w.uint(h.term);
  w.id(h.vote);
  w.uint(h.commit);
  return w.finish();
}

export function decodeHardState(b: Uint8Array): HardState {
  const r = new Reader(b, "hard state");
  const h = { term: r.uint(), vote: r.id(), commit: r.uint() };
  r.end();
  return h;
}

export function encodeConfChange(c: ConfChange): Uint8Array {
  const w = new Writer(c.context.length + 16);
  w.uint(c.type);
  w.id(c.nodeId);
  w.bytes(c.context);
  return w.finish();
}

export function decodeConfChange(b: Uint8Array): ConfChange {
  const r = new Reader(b, "conf change");
  const type = r.enumValue<ConfChangeType>(MAX_CONF_CHANGE_TYPE, "conf change type");
  const c = { type, nodeId: r.id(), context: r.bytes() };
  r.end();
  return c;
}

function writeIds(w: Sink, ids: readonly NodeId[]): void {
  w.uint(ids.length);
  for (let i = 0; i < ids.length; i++) w.id(ids[i]);
}

function readIds(r: Reader): NodeId[] {
  const n = r.count();
  const ids = new Array<NodeId>(n);
  for (let i = 0; i < n; i++) ids[i] = r.id();
  return ids;
}

function writeConfState(w: Sink, c: ConfState): void {
  writeIds(w, c.voters);
  writeIds(w, c.learners);
}

function readConfState(r: Reader): ConfState {
  return { voters: readIds(r), learners: readIds(r) };
}

export function encodeConfState(c: ConfState): Uint8Array {
  const w = new Writer(16 + 8 * (c.voters.length + c.learners.length));
  writeConfState(w, c);
  return w.finish();
}

export function decodeConfState(b: Uint8Array): ConfState {
  const r = new Reader(b, "conf state");
  const c = readConfState(r);
  r.end();
  return c;
}

function writeSnapshotMetadata(w: Sink, m: SnapshotMetadata): void {
  w.uint(m.index);
  w.uint(m.term);
  writeConfState(w, m.confState);
}

function readSnapshotMetadata(r: Reader): SnapshotMetadata {
  return { index: r.uint(), term: r.uint(), confState: readConfState(r) };
}

export function encodeSnapshotMetadata(m: SnapshotMetadata): Uint8Array {
  const w = new Writer(32 + 8 * (m.confState.voters.length + m.confState.learners.length));
  writeSnapshotMetadata(w, m);
  return w.finish();
}

export function decodeSnapshotMetadata(b: Uint8Array): SnapshotMetadata {
  const r = new Reader(b, "snapshot metadata");
  const m = readSnapshotMetadata(r);
  r.end();
  return m;
}

const FLAG_REJECT = 1;
const FLAG_SNAPSHOT = 2;
const FLAG_CONTEXT = 4;
const KNOWN_FLAGS = FLAG_REJECT | FLAG_SNAPSHOT | FLAG_CONTEXT;

export function encodeMessage(m: Message): Uint8Array {
  let capacity = 64;
  for (let i = 0; i < m.entries.length; i++) capacity += m.entries[i].data.length + 24;
  if (m.snapshot) capacity += m.snapshot.data.length + 64;
  if (m.context) capacity += m.context.length + 8;
  const w = new Writer(capacity);
  writeMessageFields(w, m);
  return w.finish();
}

/**
 * Room a buffer needs past the end of a message writeMessage writes into it: the writer checks
 * for a whole varint's room before each field, however few bytes the field then takes.
 */
export const MESSAGE_WRITE_SLACK = 10;

/** The length of encodeMessage(m), without encoding it. */
export function encodedMessageSize(m: Message): number {
  const counter = new SizeCounter();
  writeMessageFields(counter, m);
  return counter.size;
}

/**
 * encodeMessage(m)'s bytes written into `out` at `pos` (a batch of messages in one buffer, each
 * entry's data copied once); `out` must hold encodedMessageSize(m) + MESSAGE_WRITE_SLACK bytes
 * from `pos`. Returns the offset past the message.
 */
export function writeMessage(out: Uint8Array, pos: number, m: Message): number {
  const w = new Writer(out, pos);
  writeMessageFields(w, m);
  if (w.buf !== out) throw new RaftError("writeMessage: no room for the message where it was written");
  return w.pos;
}

function writeMessageFields(w: Sink, m: Message): void {
  w.uint(m.type);
  w.id(m.to);
  w.id(m.from);
  w.uint(m.term);
  w.uint(m.logTerm);
  w.uint(m.index);
  w.uint(m.commit);
  w.uint(m.rejectHint);
  w.uint((m.reject ? FLAG_REJECT : 0) | (m.snapshot ? FLAG_SNAPSHOT : 0) | (m.context ? FLAG_CONTEXT : 0));
  w.uint(m.entries.length);
  for (let i = 0; i < m.entries.length; i++) writeEntry(w, m.entries[i]);
  if (m.snapshot) {
    writeSnapshotMetadata(w, m.snapshot.metadata);
    w.bytes(m.snapshot.data);
  }
  if (m.context) w.bytes(m.context);
}

export function decodeMessage(b: Uint8Array): Message {
  const r = new Reader(b, "message");
  const type = r.enumValue<MessageType>(MAX_MESSAGE_TYPE, "message type");
  const to = r.id();
  const from = r.id();
  const term = r.uint();
  const logTerm = r.uint();
  const index = r.uint();
  const commit = r.uint();
  const rejectHint = r.uint();
  const flags = r.uint();
  if ((flags & ~KNOWN_FLAGS) !== 0) throw new RaftError(`malformed message: unknown flags ${flags}`);
  const n = r.count();
  const entries = new Array<Entry>(n);
  for (let i = 0; i < n; i++) entries[i] = readEntry(r);
  const m: Message = {
    type,
    to,
    from,
    term,
    logTerm,
    index,
    entries,
    commit,
    reject: (flags & FLAG_REJECT) !== 0,
    rejectHint,
  };
  if (flags & FLAG_SNAPSHOT) {
    const metadata = readSnapshotMetadata(r);
    const snapshot: Snapshot = { metadata, data: r.bytes() };
    m.snapshot = snapshot;
  }
  if (flags & FLAG_CONTEXT) m.context = r.bytes();
  r.end();
  return m;
}
