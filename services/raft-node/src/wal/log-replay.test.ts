import assert from "node:assert/strict";
import { test } from "node:test";
import { LogReplay, type SnapshotRef } from "./log-replay.js";
import { buildSegmentImage, entries, entry, type GroupSpec } from "./segment-image.fixture.js";
import { scanSegment } from "./segment-scan.js";
import { WalCorruptionError } from "./wal-errors.js";

const SALT = 5;

function replay(segments: { firstIndex: number; groups: GroupSpec[] }[], startAt?: SnapshotRef) {
  const r = new LogReplay();
  segments.forEach((seg, k) => {
    const file = `seg-${k}`;
    const scanned = scanSegment(
      buildSegmentImage(SALT, k, seg.firstIndex, seg.groups).bytes,
      file,
      k === segments.length - 1,
    );
    r.beginSegment(file, scanned.header);
    for (const frame of scanned.records) r.apply(frame);
  });
  return r.finish(startAt);
}

const view = (es: { index: number; term: number }[]) => es.map((e) => `${e.index}@${e.term}`);

test("an entry at a lower index replaces the suffix from there on", () => {
  const log = replay([
    {
      firstIndex: 1,
      groups: [{ entries: entries(1, 5, 1) }, { entries: entries(3, 4, 2) }, { entries: [entry(5, 3)] }],
    },
  ]);
  assert.deepEqual(view(log.entries), ["1@1", "2@1", "3@2", "4@2", "5@3"]);
  assert.equal(log.lastIndex, 5);
});

test("the newest hard state wins", () => {
  const log = replay([
    {
      firstIndex: 1,
      groups: [
        { entries: entries(1, 2), hardState: { term: 1, vote: 1n, commit: 1 } },
        { hardState: { term: 2, vote: 3n, commit: 2 } },
      ],
    },
  ]);
  assert.deepEqual(log.hardState, { term: 2, vote: 3n, commit: 2 });
});

test("an entry that skips indexes is corruption naming where it was found", () => {
  assert.throws(
    () => replay([{ firstIndex: 1, groups: [{ entries: entries(1, 3) }, { entries: entries(5, 6) }] }]),
    (err: unknown) =>
      err instanceof WalCorruptionError &&
      err.file === "seg-0" &&
      /entry 5 does not follow/.test(err.message),
  );
});

test("a segment that does not start where the previous one ended is corruption", () => {
  assert.throws(
    () =>
      replay([
        { firstIndex: 1, groups: [{ entries: entries(1, 3) }] },
        { firstIndex: 5, groups: [{ entries: entries(5, 6) }] },
      ]),
    /segment starts at index 5 but the log before it ends at 3/,
  );
});

test("entries come after the newest snapshot marker, including ones written before it", () => {
  const marker = { index: 4, term: 1, confState: { voters: [1n, 2n, 3n], learners: [] } };
  const log = replay([
    { firstIndex: 1, groups: [{ entries: entries(1, 6) }, { marker }, { entries: entries(7, 8) }] },
  ]);
  assert.deepEqual(log.snapshot, marker);
  assert.deepEqual(view(log.entries), ["5@1", "6@1", "7@1", "8@1"]);
});

test("a snapshot from the leader beyond the log restarts it after the snapshot", () => {
  const marker = { index: 50, term: 4, confState: { voters: [1n], learners: [] } };
  const log = replay([
    { firstIndex: 1, groups: [{ entries: entries(1, 3) }, { marker }, { entries: entries(51, 52, 4) }] },
  ]);
  assert.equal(log.snapshot?.index, 50);
  assert.deepEqual(view(log.entries), ["51@4", "52@4"]);
});

test("replay can start from an older marker, and fails clearly when its entries are gone", () => {
  const m3 = { index: 3, term: 1, confState: { voters: [1n], learners: [] } };
  const m6 = { index: 6, term: 1, confState: { voters: [1n], learners: [] } };
  const segments = [{ firstIndex: 1, groups: [{ entries: entries(1, 8) }, { marker: m3 }, { marker: m6 }] }];
  assert.deepEqual(view(replay(segments, { index: 3, term: 1 }).entries), [
    "4@1",
    "5@1",
    "6@1",
    "7@1",
    "8@1",
  ]);
  assert.equal(replay(segments, { index: 0, term: 0 }).entries.length, 8);
  assert.throws(() => replay(segments, { index: 3, term: 2 }), /no snapshot marker for index 3 term 2/);
  const released = [{ firstIndex: 5, groups: [{ marker: m6 }, { entries: entries(5, 8) }] }];
  assert.throws(
    () => replay(released, { index: 0, term: 0 }),
    /entries 1\.\.4 after the snapshot at 0 are no longer/,
  );
});

test("each segment reports the highest entry index it holds", () => {
  const log = replay([
    { firstIndex: 1, groups: [{ entries: entries(1, 9) }, { entries: entries(4, 5) }] },
    { firstIndex: 6, groups: [{ hardState: { term: 1, vote: 0n, commit: 5 } }] },
    { firstIndex: 6, groups: [{ entries: entries(6, 7) }] },
  ]);
  assert.deepEqual(log.segmentMaxIndex, [9, 0, 7]);
});
