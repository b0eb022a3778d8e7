import assert from "node:assert/strict";
import { test } from "node:test";
import { type Entry, EntryType, encodeEntry } from "@etcd-ts/raft";
import { encodeFrame, FRAME_ALIGNMENT, RecordType, readFrame } from "./record-frame.js";
import {
  decodeEntryPayload,
  decodeHardStatePayload,
  decodeSegmentHeaderPayload,
  decodeSnapshotMarkerPayload,
  encodeSaveRecords,
  encodeSegmentHeaderPayload,
  PayloadFormatError,
} from "./record-payloads.js";

const SALT = 0x5eed1234;

test("frames are 8-byte aligned and read back with their type and payload", () => {
  for (let len = 0; len < 20; len++) {
    const payload = Buffer.alloc(len, 0xab);
    const frame = encodeFrame(RecordType.Entry, payload, SALT);
    assert.equal(frame.length % FRAME_ALIGNMENT, 0);
    const read = readFrame(frame, 0, SALT);
    assert.ok(read.ok);
    assert.equal(read.frame.type, RecordType.Entry);
    assert.deepEqual([...read.frame.payload], [...payload]);
    assert.equal(read.frame.end, frame.length);
  }
});

test("every single-bit flip anywhere in a frame, padding included, is detected", () => {
  const frame = encodeFrame(RecordType.HardState, Buffer.from("hard state bytes!"), SALT);
  for (let bit = 0; bit < frame.length * 8; bit++) {
    const damaged = Buffer.from(frame);
    damaged[bit >> 3] ^= 1 << (bit & 7);
    assert.equal(readFrame(damaged, 0, SALT).ok, false, `flip of bit ${bit} went unnoticed`);
  }
});

test("a frame sealed under another WAL's salt does not verify", () => {
  const frame = encodeFrame(RecordType.Entry, Buffer.from("x"), SALT);
  const read = readFrame(frame, 0, SALT + 1);
  assert.equal(read.ok, false);
  assert.equal(!read.ok && read.defect.kind, "checksum");
});

test("a short buffer is reported as truncated, zeros as a zero-filled header", () => {
  const frame = encodeFrame(RecordType.Entry, Buffer.alloc(40, 1), SALT);
  const short = readFrame(frame.subarray(0, frame.length - 1), 0, SALT);
  assert.equal(!short.ok && short.defect.kind, "truncated");
  const zeros = readFrame(Buffer.alloc(64), 0, SALT);
  assert.ok(!zeros.ok && zeros.defect.detail.includes("zero-filled"));
});

test("entries, hard state and snapshot markers round-trip through one save's records", () => {
  const entries = [
    { term: 3, index: 7, type: 0, data: Buffer.from("seven") },
    { term: 2 ** 40, index: 2 ** 52, type: 1, data: new Uint8Array(0) },
  ];
  const hardState = { term: 9, vote: 2n ** 64n - 3n, commit: 6 };
  const marker = { index: 5, term: 2, confState: { voters: [1n, 2n, 2n ** 63n + 5n], learners: [4n] } };
  const buf = encodeSaveRecords(hardState, entries, marker, SALT);
  const frames = [];
  for (let at = 0; at < buf.length; ) {
    const read = readFrame(buf, at, SALT);
    assert.ok(read.ok);
    frames.push(read.frame);
    at = read.frame.end;
  }
  assert.deepEqual(
    frames.map((f) => f.type),
    [RecordType.Entry, RecordType.Entry, RecordType.SnapshotMarker, RecordType.HardState],
  );
  const decoded = frames.slice(0, 2).map((f) => decodeEntryPayload(f.payload));
  assert.deepEqual(
    decoded.map((e) => ({ ...e, data: [...e.data] })),
    entries.map((e) => ({ ...e, data: [...e.data] })),
  );
  assert.deepEqual(decodeSnapshotMarkerPayload(frames[2].payload), marker);
  assert.deepEqual(decodeHardStatePayload(frames[3].payload), hardState);
});

test("integers beyond 2^53 are refused on write", () => {
  assert.throws(
    () => encodeSaveRecords({ term: 2 ** 53, vote: 0n, commit: 0 }, [], undefined, SALT),
    /not a safe unsigned integer/,
  );
});

test("segment headers round-trip and a wrong magic is rejected", () => {
  const header = { salt: 0xffffffff, seq: 12, firstIndex: 4097, createdBytes: 200 };
  const payload = encodeSegmentHeaderPayload(header);
  assert.deepEqual(decodeSegmentHeaderPayload(payload), header);
  payload[0] ^= 1;
  assert.throws(() => decodeSegmentHeaderPayload(payload), PayloadFormatError);
});

test("entries framed in place are byte-identical to @etcd-ts/raft's encodeEntry", () => {
  const values = [0, 1, 127, 128, 16383, 16384, 2 ** 31, 2 ** 32 + 5, 2 ** 49, Number.MAX_SAFE_INTEGER];
  const sample: Entry[] = [];
  for (const term of values) {
    for (const index of values)
      sample.push({ term, index, type: EntryType.Normal, data: Buffer.alloc(index % 300, 7) });
  }
  sample.push({ term: 3, index: 4, type: EntryType.ConfChange, data: Buffer.alloc(200, 1) });
  const buf = encodeSaveRecords(undefined, sample, undefined, SALT);
  let at = 0;
  for (const e of sample) {
    const read = readFrame(buf, at, SALT);
    assert.ok(read.ok);
    assert.deepEqual([...read.frame.payload], [...encodeEntry(e)]);
    at = read.frame.end;
  }
  assert.equal(at, buf.length);
});
