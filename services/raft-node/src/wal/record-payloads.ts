// Payload encodings of the WAL's record types. Pure: no I/O.
//
// The Raft core does not export its entry/hard-state/snapshot-metadata codecs yet, so the
// WAL uses this small fixed-layout binary encoding of its own; it is the only module that
// knows how those payloads look. Integers are u64 little-endian (numbers stay below 2^53).

import type { ConfState, Entry, HardState, SnapshotMetadata } from "./raft-shapes.js";
import { FRAME_HEADER_BYTES, paddedFrameBytes, RecordType, sealFrame } from "./record-frame.js";

const TWO_32 = 2 ** 32;

export class PayloadFormatError extends Error {}

function writeU64(buf: Buffer, offset: number, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`WAL: ${value} is not a non-negative safe integer`);
  }
  buf.writeUInt32LE(value % TWO_32, offset);
  buf.writeUInt32LE(Math.floor(value / TWO_32), offset + 4);
}

function readU64(buf: Buffer, offset: number): number {
  const value = buf.readUInt32LE(offset + 4) * TWO_32 + buf.readUInt32LE(offset);
  if (!Number.isSafeInteger(value))
    throw new PayloadFormatError(`integer at payload offset ${offset} exceeds 2^53`);
  return value;
}

function requireLength(payload: Buffer, atLeast: number, what: string): void {
  if (payload.length < atLeast) {
    throw new PayloadFormatError(`${what} payload is ${payload.length} bytes, needs at least ${atLeast}`);
  }
}

// --- Entry -------------------------------------------------------------------------

const ENTRY_FIXED_BYTES = 17;

export function entryPayloadBytes(entry: Entry): number {
  return ENTRY_FIXED_BYTES + entry.data.length;
}

function writeEntryPayload(buf: Buffer, offset: number, entry: Entry): void {
  writeU64(buf, offset, entry.term);
  writeU64(buf, offset + 8, entry.index);
  buf[offset + 16] = entry.type;
  buf.set(entry.data, offset + ENTRY_FIXED_BYTES);
}

/** The entry's data is copied out, so it stays valid after the read buffer is dropped. */
export function decodeEntryPayload(payload: Buffer): Entry {
  requireLength(payload, ENTRY_FIXED_BYTES, "entry");
  return {
    term: readU64(payload, 0),
    index: readU64(payload, 8),
    type: payload[16],
    data: Uint8Array.prototype.slice.call(payload, ENTRY_FIXED_BYTES),
  };
}

// --- HardState ---------------------------------------------------------------------

const HARD_STATE_BYTES = 24;

function writeHardStatePayload(buf: Buffer, offset: number, hs: HardState): void {
  writeU64(buf, offset, hs.term);
  writeU64(buf, offset + 8, hs.vote);
  writeU64(buf, offset + 16, hs.commit);
}

export function decodeHardStatePayload(payload: Buffer): HardState {
  requireLength(payload, HARD_STATE_BYTES, "hard state");
  return { term: readU64(payload, 0), vote: readU64(payload, 8), commit: readU64(payload, 16) };
}

// --- SnapshotMarker ----------------------------------------------------------------

function snapshotMarkerBytes(meta: SnapshotMetadata): number {
  return 16 + 4 + 8 * meta.confState.voters.length + 4 + 8 * meta.confState.learners.length;
}

function writeSnapshotMarkerPayload(buf: Buffer, offset: number, meta: SnapshotMetadata): void {
  writeU64(buf, offset, meta.index);
  writeU64(buf, offset + 8, meta.term);
  let at = offset + 16;
  for (const ids of [meta.confState.voters, meta.confState.learners]) {
    buf.writeUInt32LE(ids.length, at);
    at += 4;
    for (const id of ids) {
      writeU64(buf, at, id);
      at += 8;
    }
  }
}

export function decodeSnapshotMarkerPayload(payload: Buffer): SnapshotMetadata {
  requireLength(payload, 24, "snapshot marker");
  const index = readU64(payload, 0);
  const term = readU64(payload, 8);
  let at = 16;
  const readIds = (): number[] => {
    requireLength(payload, at + 4, "snapshot marker");
    const count = payload.readUInt32LE(at);
    at += 4;
    requireLength(payload, at + 8 * count, "snapshot marker");
    const ids: number[] = [];
    for (let i = 0; i < count; i++, at += 8) ids.push(readU64(payload, at));
    return ids;
  };
  const confState: ConfState = { voters: readIds(), learners: readIds() };
  return { index, term, confState };
}

// --- SegmentHeader -----------------------------------------------------------------

const SEGMENT_MAGIC = Buffer.from("etcdtsWL", "latin1");
export const SEGMENT_FORMAT_VERSION = 1;
const SEGMENT_HEADER_BYTES = 32;

export interface SegmentHeader {
  /** Random per WAL directory; seeds every later record's CRC (see record-frame.ts). */
  salt: number;
  /** 0, 1, 2... with no gaps: a missing number is a missing file. */
  seq: number;
  /** The index the next entry appended to this segment was expected to have. */
  firstIndex: number;
}

export function encodeSegmentHeaderPayload(header: SegmentHeader): Buffer {
  const buf = Buffer.alloc(SEGMENT_HEADER_BYTES);
  SEGMENT_MAGIC.copy(buf, 0);
  buf.writeUInt32LE(SEGMENT_FORMAT_VERSION, 8);
  buf.writeUInt32LE(header.salt >>> 0, 12);
  writeU64(buf, 16, header.seq);
  writeU64(buf, 24, header.firstIndex);
  return buf;
}

export function decodeSegmentHeaderPayload(payload: Buffer): SegmentHeader {
  requireLength(payload, SEGMENT_HEADER_BYTES, "segment header");
  if (!payload.subarray(0, 8).equals(SEGMENT_MAGIC)) throw new PayloadFormatError("bad segment magic");
  const version = payload.readUInt32LE(8);
  if (version !== SEGMENT_FORMAT_VERSION) {
    throw new PayloadFormatError(
      `segment format version ${version}, this build reads ${SEGMENT_FORMAT_VERSION}`,
    );
  }
  return { salt: payload.readUInt32LE(12), seq: readU64(payload, 16), firstIndex: readU64(payload, 24) };
}

// --- SyncPoint ---------------------------------------------------------------------

export function decodeSyncPointPayload(payload: Buffer): number {
  requireLength(payload, 8, "sync point");
  return readU64(payload, 0);
}

// --- Batches -----------------------------------------------------------------------

/** What one save() contributes to the log, framed and checksummed, ready to write. */
export function encodeSaveRecords(
  hardState: HardState | undefined,
  entries: readonly Entry[],
  marker: SnapshotMetadata | undefined,
  salt: number,
): Buffer {
  let total = 0;
  for (const e of entries) total += paddedFrameBytes(entryPayloadBytes(e));
  if (marker) total += paddedFrameBytes(snapshotMarkerBytes(marker));
  if (hardState) total += paddedFrameBytes(HARD_STATE_BYTES);
  const buf = Buffer.allocUnsafe(total);
  let at = 0;
  // Entries precede the hard state: should the write tear, a surviving hard state must
  // never point its commit index past entries that did not make it to disk.
  for (const e of entries) {
    const bytes = entryPayloadBytes(e);
    writeEntryPayload(buf, at + FRAME_HEADER_BYTES, e);
    at = sealFrame(buf, at, RecordType.Entry, bytes, salt);
  }
  if (marker) {
    writeSnapshotMarkerPayload(buf, at + FRAME_HEADER_BYTES, marker);
    at = sealFrame(buf, at, RecordType.SnapshotMarker, snapshotMarkerBytes(marker), salt);
  }
  if (hardState) {
    writeHardStatePayload(buf, at + FRAME_HEADER_BYTES, hardState);
    at = sealFrame(buf, at, RecordType.HardState, HARD_STATE_BYTES, salt);
  }
  return buf;
}

export const SYNC_POINT_FRAME_BYTES = paddedFrameBytes(8);

export function encodeSyncPoint(offsetInSegment: number, salt: number): Buffer {
  const buf = Buffer.allocUnsafe(SYNC_POINT_FRAME_BYTES);
  writeU64(buf, FRAME_HEADER_BYTES, offsetInSegment);
  sealFrame(buf, 0, RecordType.SyncPoint, 8, salt);
  return buf;
}
