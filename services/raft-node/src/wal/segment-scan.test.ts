import assert from "node:assert/strict";
import { test } from "node:test";
import { RecordType, readFrame } from "./record-frame.js";
import { decodeEntryPayload, encodeSaveRecords } from "./record-payloads.js";
import { buildSegmentImage, entries } from "./segment-image.fixture.js";
import { scanSegment } from "./segment-scan.js";
import { WalCorruptionError } from "./wal-errors.js";

const SALT = 77;
const FILE = "0000000000000000-0000000000000001.wal";

function threeGroups() {
  return buildSegmentImage(SALT, 0, 1, [
    { entries: entries(1, 3), hardState: { term: 1, vote: 1n, commit: 1 } },
    { entries: entries(4, 6), hardState: { term: 1, vote: 1n, commit: 4 } },
    { entries: entries(7, 9), hardState: { term: 1, vote: 1n, commit: 7 } },
  ]);
}

function entryIndexes(records: { type: RecordType; payload: Buffer }[]): number[] {
  return records.filter((r) => r.type === RecordType.Entry).map((r) => decodeEntryPayload(r.payload).index);
}

test("a clean segment yields all records and no torn tail", () => {
  const image = threeGroups();
  const scanned = scanSegment(image.bytes, FILE, true);
  assert.equal(scanned.torn, undefined);
  assert.equal(scanned.end, image.bytes.length);
  assert.deepEqual(entryIndexes(scanned.records), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(scanned.header.salt, SALT);
});

test("a tail truncated at every byte offset of the last record is cut at that record", () => {
  const image = threeGroups();
  const lastStart = image.groupRecordOffsets[2].at(-1)!;
  for (let cut = lastStart + 1; cut < image.bytes.length; cut++) {
    const scanned = scanSegment(image.bytes.subarray(0, cut), FILE, true);
    assert.ok(scanned.torn, `cut at ${cut} not reported`);
    assert.equal(scanned.torn.offset, lastStart);
    assert.equal(scanned.end, lastStart);
    assert.equal(scanned.torn.droppedBytes, cut - lastStart);
    assert.deepEqual(entryIndexes(scanned.records), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  }
  const atBoundary = scanSegment(image.bytes.subarray(0, lastStart), FILE, true);
  assert.equal(atBoundary.torn, undefined);
});

test("a zero-filled tail (preallocated or lost pages) is a torn tail", () => {
  const image = threeGroups();
  const bytes = Buffer.concat([image.bytes, Buffer.alloc(4096)]);
  const scanned = scanSegment(bytes, FILE, true);
  assert.ok(scanned.torn);
  assert.equal(scanned.torn.offset, image.bytes.length);
  assert.equal(scanned.torn.zeroFilled, true);
  assert.deepEqual(entryIndexes(scanned.records), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

test("a last write whose first pages were lost but later ones survived is still torn", () => {
  const image = threeGroups();
  const bytes = Buffer.from(image.bytes);
  const lastGroup = image.groupRecordOffsets[2];
  // Zero the SyncPoint and first entry of the final write; its later records stay intact.
  bytes.fill(0, lastGroup[0], lastGroup[2]);
  const scanned = scanSegment(bytes, FILE, true);
  assert.ok(scanned.torn);
  assert.equal(scanned.torn.offset, lastGroup[0]);
  assert.equal(scanned.torn.intactRecordsDropped, 3);
  assert.deepEqual(entryIndexes(scanned.records), [1, 2, 3, 4, 5, 6]);
});

test("a flipped bit before a later synced write stops the scan with file and offset", () => {
  const image = threeGroups();
  const bytes = Buffer.from(image.bytes);
  const victim = image.groupRecordOffsets[1][2];
  bytes[victim + 20] ^= 0x10;
  assert.throws(
    () => scanSegment(bytes, FILE, true),
    (err: unknown) =>
      err instanceof WalCorruptionError &&
      err.file === FILE &&
      err.offset === victim &&
      err.message.includes(`${FILE} at byte offset ${victim}`),
  );
});

test("a damaged length field mid-log is corruption, not a torn tail", () => {
  const image = threeGroups();
  const bytes = Buffer.from(image.bytes);
  const victim = image.groupRecordOffsets[0][1];
  bytes.writeUInt32LE(1_000_000, victim + 4);
  assert.throws(() => scanSegment(bytes, FILE, true), WalCorruptionError);
});

test("any damage in a segment that is not the last is corruption, even at its very end", () => {
  const image = threeGroups();
  const truncated = image.bytes.subarray(0, image.bytes.length - 3);
  assert.throws(
    () => scanSegment(truncated, FILE, false),
    (err: unknown) => err instanceof WalCorruptionError && err.offset === image.groupRecordOffsets[2].at(-1),
  );
  const zeroTail = Buffer.concat([image.bytes, Buffer.alloc(64)]);
  assert.throws(() => scanSegment(zeroTail, FILE, false), WalCorruptionError);
});

test("an unsynced log (sync disabled) treats any damage in the last segment as torn", () => {
  const image = buildSegmentImage(
    SALT,
    0,
    1,
    [{ entries: entries(1, 2) }, { entries: entries(3, 4) }],
    false,
  );
  const bytes = Buffer.from(image.bytes);
  bytes[image.groupRecordOffsets[0][0] + 14] ^= 1;
  const scanned = scanSegment(bytes, FILE, true);
  assert.equal(scanned.torn?.offset, image.groupRecordOffsets[0][0]);
  assert.equal(scanned.torn?.intactRecordsDropped, 3);
});

test("a damaged segment header is corruption at offset 0", () => {
  const image = threeGroups();
  const bytes = Buffer.from(image.bytes);
  bytes[13] ^= 1;
  assert.throws(
    () => scanSegment(bytes, FILE, true),
    (err: unknown) => err instanceof WalCorruptionError && err.offset === 0,
  );
});

test("a sync point copied to the wrong place is reported, not trusted", () => {
  const image = threeGroups();
  const bytes = Buffer.from(image.bytes);
  const first = image.groupRecordOffsets[0][0];
  const second = image.groupRecordOffsets[1][0];
  const read = readFrame(bytes, first, SALT);
  assert.ok(read.ok);
  bytes.set(bytes.subarray(first, read.frame.end), second);
  assert.throws(() => scanSegment(bytes, FILE, true), /misplaced/);
});

test("damage in the records a segment was created with is corruption even at the log's end", () => {
  const carried = encodeSaveRecords(
    { term: 4, vote: 2n, commit: 9 },
    [],
    { index: 9, term: 4, confState: { voters: [1n], learners: [] } },
    SALT,
  );
  const image = buildSegmentImage(SALT, 3, 10, [], true, carried);
  assert.equal(scanSegment(image.bytes, FILE, true).records.length, 2);
  const bytes = Buffer.from(image.bytes);
  bytes[bytes.length - 10] ^= 0x20;
  assert.throws(() => scanSegment(bytes, FILE, true), /synced when the segment was created/);
  // Cut short, too: the created region was synced before the file got its name.
  assert.throws(
    () => scanSegment(image.bytes.subarray(0, image.bytes.length - 4), FILE, true),
    WalCorruptionError,
  );
});
