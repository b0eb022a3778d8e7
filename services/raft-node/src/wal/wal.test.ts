import assert from "node:assert/strict";
import { constants as fsConstants, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, stat, truncate, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { Entry, EntryType } from "@etcd-ts/raft";
import { isAllZero, RecordType, readFrame } from "./record-frame.js";
import { entries, entry } from "./segment-image.fixture.js";
import { scanSegment } from "./segment-scan.js";
import { Wal, type WalLogger } from "./wal.js";
import { WalCorruptionError, WalFailedError, WalNotFoundError } from "./wal-errors.js";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function freshDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "wal-test-"));
  dirs.push(d);
  return join(d, "wal");
}

function recordingLogger() {
  const lines: { level: string; details: Record<string, unknown>; message: string }[] = [];
  const logger: WalLogger = {
    info: (details, message) => lines.push({ level: "info", details, message }),
    warn: (details, message) => lines.push({ level: "warn", details, message }),
    error: (details, message) => lines.push({ level: "error", details, message }),
  };
  return { logger, lines };
}

const view = (es: Entry[]) => es.map((e) => `${e.index}@${e.term}:${Buffer.from(e.data).toString()}`);

test("saved entries and hard state come back after reopening", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir);
  await wal.save({ term: 1, vote: 1n, commit: 0 }, entries(1, 3));
  await wal.save({ term: 2, vote: 2n, commit: 2 }, [entry(3, 2, "replaced"), entry(4, 2)]);
  await wal.close();
  const { wal: reopened, recovered } = await Wal.open(dir);
  assert.deepEqual(view(recovered.entries), ["1@1:entry-1", "2@1:entry-2", "3@2:replaced", "4@2:entry-4"]);
  assert.deepEqual(recovered.hardState, { term: 2, vote: 2n, commit: 2 });
  assert.equal(recovered.tornTail, undefined);
  await reopened.save(undefined, [entry(5, 2)]);
  await reopened.close();
  const again = await Wal.open(dir);
  assert.equal(again.recovered.entries.at(-1)?.index, 5);
  await again.wal.close();
});

test("concurrent saves share one write and one fdatasync, and land in call order", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir);
  const durable: number[] = [];
  const saves = [];
  for (let i = 1; i <= 64; i++)
    saves.push(wal.save({ term: 1, vote: 0n, commit: i - 1 }, [entry(i)]).then(() => durable.push(i)));
  await Promise.all(saves);
  const stats = wal.stats();
  assert.equal(stats.writes, 1);
  assert.equal(stats.fsyncs, 1);
  assert.equal(stats.saves, 64);
  assert.ok(stats.fsyncSecondsTotal > 0);
  assert.deepEqual(
    durable,
    [...Array(64).keys()].map((k) => k + 1),
  );
  await wal.close();
  const { wal: reopened, recovered } = await Wal.open(dir);
  assert.equal(recovered.entries.length, 64);
  assert.equal(recovered.hardState?.commit, 63);
  await reopened.close();
});

test("a save resolves only after the fdatasync covering it has returned", async () => {
  const dir = await freshDir();
  let fsyncsDone = 0;
  // No zero writes between groups (preallocateBytes): they would change the grouping counted here.
  const wal = await Wal.create(dir, { onFsync: () => fsyncsDone++, preallocateBytes: 0 });
  const seenAtResolve: number[] = [];
  const saves = [];
  for (let i = 1; i <= 5; i++) {
    saves.push(wal.save(undefined, [entry(i)]).then(() => seenAtResolve.push(fsyncsDone)));
    if (i === 3) await new Promise((r) => setImmediate(r));
  }
  await Promise.all(saves);
  assert.equal(seenAtResolve.length, 5);
  for (const seen of seenAtResolve) assert.ok(seen >= 1);
  // Saves 4 and 5 were queued while the first group's fsync was in flight: they need a second one.
  assert.ok(seenAtResolve[3] >= 2 && seenAtResolve[4] >= 2, `resolved after ${seenAtResolve} fsyncs`);
  await wal.close();
});

test("saves arriving during an fsync form the next group; the fsync hook sees each one", async () => {
  const dir = await freshDir();
  const observed: number[] = [];
  const wal = await Wal.create(dir, { onFsync: (s) => observed.push(s), preallocateBytes: 0 });
  const first = wal.save(undefined, [entry(1)]);
  await new Promise((r) => setImmediate(r));
  // The first group is now in flight; these three must wait and then go together.
  const rest = [
    wal.save(undefined, [entry(2)]),
    wal.save(undefined, [entry(3)]),
    wal.save(undefined, [entry(4)]),
  ];
  await Promise.all([first, ...rest]);
  assert.equal(wal.stats().fsyncs, 2);
  assert.equal(observed.length, 2);
  await wal.close();
});

test("a save that would leave a gap is refused and writes nothing", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir);
  await wal.save(undefined, entries(1, 2));
  await assert.rejects(wal.save(undefined, [entry(4)]), /entry 4 does not continue the log/);
  await assert.rejects(wal.save(undefined, [entry(3), entry(5)]), /consecutive/);
  await assert.rejects(wal.save(undefined, [{ ...entry(3), type: 7 as EntryType }]), /unknown type 7/);
  await wal.save(undefined, [entry(3)]);
  await wal.close();
  const { wal: reopened, recovered } = await Wal.open(dir);
  assert.deepEqual(
    recovered.entries.map((e) => e.index),
    [1, 2, 3],
  );
  await reopened.close();
});

test("segments roll at the size limit with etcd-style names and replay across them", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir, { segmentBytes: 1024 });
  for (let i = 1; i <= 60; i++) await wal.save({ term: 1, vote: 1n, commit: i }, [entry(i)]);
  const stats = wal.stats();
  assert.ok(stats.segmentsCreated >= 3, `only ${stats.segmentsCreated} segments`);
  assert.ok(stats.dirFsyncs >= stats.segmentsCreated - 1);
  await wal.close();
  const names = (await readdir(dir)).sort();
  assert.equal(names.length, stats.segmentsCreated);
  assert.match(names[0], /^0000000000000000-0000000000000001\.wal$/);
  for (const name of names) assert.ok((await stat(join(dir, name))).size < 1024 + 512, `${name} overshoots`);
  const { wal: reopened, recovered } = await Wal.open(dir);
  assert.deepEqual(
    recovered.entries.map((e) => e.index),
    [...Array(60).keys()].map((k) => k + 1),
  );
  assert.equal(recovered.hardState?.commit, 60);
  await reopened.close();
});

test("releaseTo drops whole segments up to the newest snapshot marker and the log still replays", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir, { segmentBytes: 1024 });
  for (let i = 1; i <= 40; i++) await wal.save({ term: 1, vote: 1n, commit: i }, [entry(i)]);
  const before = wal.segmentPaths().length;
  assert.equal(await wal.releaseTo(30), 0, "nothing may go before a snapshot marker exists");
  const marker = { index: 30, term: 1, confState: { voters: [1n], learners: [] } };
  await wal.saveSnapshotMarker(marker);
  for (let i = 41; i <= 60; i++) await wal.save({ term: 1, vote: 1n, commit: i }, [entry(i)]);
  await wal.releaseTo(1000);
  // Released segments may already have gone when a later segment was started.
  assert.ok(wal.stats().segmentsRemoved > 0);
  assert.ok(wal.segmentPaths().length < before + 10);
  await wal.close();
  const { wal: reopened, recovered } = await Wal.open(dir);
  assert.deepEqual(recovered.snapshot, marker);
  assert.deepEqual(
    recovered.entries.map((e) => e.index),
    [...Array(30).keys()].map((k) => k + 31),
  );
  assert.equal(recovered.hardState?.commit, 60);
  const firstIndexes = (await readdir(dir)).map((n) => Number.parseInt(n.slice(17, 33), 16));
  assert.ok(Math.min(...firstIndexes) <= 31, "a segment holding entry 31 was released");
  await reopened.close();
});

test("a torn last record is truncated, reported and logged, and appending continues", async () => {
  const dir = await freshDir();
  // No zeros after the records: the file's end is the last record's.
  const wal = await Wal.create(dir, { preallocateBytes: 0 });
  await wal.save({ term: 1, vote: 1n, commit: 1 }, entries(1, 5));
  await wal.save(undefined, entries(6, 7));
  await wal.close();
  const [name] = await readdir(dir);
  const path = join(dir, name);
  const size = (await stat(path)).size;
  await truncate(path, size - 5);
  const { logger, lines } = recordingLogger();
  const { wal: reopened, recovered } = await Wal.open(dir, { logger, preallocateBytes: 0 });
  assert.ok(recovered.tornTail);
  assert.equal(recovered.tornTail.file, path);
  assert.deepEqual(
    recovered.entries.map((e) => e.index),
    [1, 2, 3, 4, 5, 6],
  );
  assert.ok(
    lines.some(
      (l) =>
        l.level === "warn" && l.message.includes("torn") && l.details.offset === recovered.tornTail?.offset,
    ),
  );
  assert.equal((await stat(path)).size, recovered.tornTail.offset);
  await reopened.save(undefined, [entry(7, 2)]);
  await reopened.close();
  const again = await Wal.open(dir);
  assert.equal(again.recovered.tornTail, undefined);
  assert.deepEqual(view(again.recovered.entries).at(-1), "7@2:entry-7");
  await again.wal.close();
});

test("zeros after the last record (preallocated, or a torn write of which nothing reached the disk) stay as room for the next records", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir, { preallocateBytes: 0 });
  await wal.save(undefined, entries(1, 3));
  await wal.close();
  const [name] = await readdir(dir);
  const path = join(dir, name);
  const good = await readFile(path);
  await writeFile(path, Buffer.concat([good, Buffer.alloc(8192)]));
  const { wal: reopened, recovered } = await Wal.open(dir, { preallocateBytes: 0 });
  assert.equal(recovered.tornTail, undefined);
  assert.equal(recovered.entries.length, 3);
  // The next write goes over the zeros and the file keeps its length.
  await reopened.save(undefined, [entry(4)], true);
  await reopened.close();
  assert.equal((await stat(path)).size, good.length + 8192);
  const again = await Wal.open(dir);
  assert.equal(again.recovered.tornTail, undefined);
  assert.deepEqual(
    again.recovered.entries.map((e) => e.index),
    [1, 2, 3, 4],
  );
  await again.wal.close();
});

test("preallocation: zeros are written ahead of the records while no save waits, and a roll cuts them off the segment it leaves", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir, { segmentBytes: 2048, preallocateBytes: 512 });
  // The first zero write starts with the WAL; a save waits for it, then goes over its zeros.
  await wal.save({ term: 1, vote: 1n, commit: 1 }, [entry(1)]);
  const [first] = await readdir(dir);
  const firstBytes = await readFile(join(dir, first!));
  assert.ok(
    isAllZero(firstBytes, firstBytes.length - 64, firstBytes.length),
    "no zeros after the first save",
  );
  for (let i = 2; i <= 80; i++) await wal.save({ term: 1, vote: 1n, commit: i }, [entry(i)], i % 2 === 0);
  const paths = wal.segmentPaths();
  assert.ok(paths.length > 2, `${paths.length} segments`);
  for (const path of paths.slice(0, -1)) {
    // A left segment ends with its last record: reading it finds no damage.
    const bytes = await readFile(path);
    assert.ok(!isAllZero(bytes, bytes.length - 8, bytes.length), `${path} ends in zeros`);
    assert.equal(scanSegment(bytes, path, false).torn, undefined);
  }
  await wal.close();
  const last = await readFile(paths.at(-1)!);
  assert.ok(last.length <= 2048 + 512);
  const { wal: reopened, recovered } = await Wal.open(dir);
  assert.equal(recovered.tornTail, undefined);
  assert.deepEqual(
    recovered.entries.map((e) => e.index),
    [...Array(80).keys()].map((k) => k + 1),
  );
  await reopened.close();
});

test("a flipped bit in a synced record stops start-up, names the file and offset, and changes nothing", async () => {
  const dir = await freshDir();
  // The file is its records alone (a flip in preallocated zeros would damage no record).
  const wal = await Wal.create(dir, { preallocateBytes: 0 });
  await wal.save(undefined, entries(1, 3));
  await wal.save(undefined, entries(4, 6));
  await wal.close();
  const [name] = await readdir(dir);
  const path = join(dir, name);
  const bytes = await readFile(path);
  const flipAt = Math.floor(bytes.length / 3);
  bytes[flipAt] ^= 0x04;
  await writeFile(path, bytes);
  await assert.rejects(Wal.open(dir), (err: unknown) => {
    assert.ok(err instanceof WalCorruptionError);
    assert.equal(err.file, path);
    assert.ok(
      err.offset <= flipAt && flipAt - err.offset < 64,
      `offset ${err.offset} far from flip at ${flipAt}`,
    );
    assert.match(err.message, new RegExp(`at byte offset ${err.offset}`));
    return true;
  });
  assert.deepEqual(await readFile(path), bytes, "the corrupt file was modified");
});

test("damage in a segment other than the last stops start-up", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir, { segmentBytes: 512 });
  for (let i = 1; i <= 60; i++) await wal.save(undefined, [entry(i)]);
  await wal.close();
  const names = (await readdir(dir)).sort();
  assert.ok(names.length >= 3);
  const second = join(dir, names[1]);
  const size = (await stat(second)).size;
  await truncate(second, size - 8);
  await assert.rejects(
    Wal.open(dir),
    (err: unknown) => err instanceof WalCorruptionError && err.file === second,
  );
});

test("a missing middle segment stops start-up", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir, { segmentBytes: 512 });
  for (let i = 1; i <= 60; i++) await wal.save(undefined, [entry(i)]);
  await wal.close();
  const names = (await readdir(dir)).sort();
  assert.ok(names.length >= 3);
  await unlink(join(dir, names[1]));
  await assert.rejects(Wal.open(dir), /segment 1 is missing/);
});

test("an interrupted segment creation leaves a temp file that open removes", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir);
  await wal.save(undefined, entries(1, 2));
  await wal.close();
  await writeFile(join(dir, "0000000000000001-0000000000000003.wal.tmp"), Buffer.alloc(100, 9));
  const { wal: reopened, recovered } = await Wal.open(dir);
  assert.deepEqual(recovered.removedTempFiles, ["0000000000000001-0000000000000003.wal.tmp"]);
  assert.equal((await readdir(dir)).length, 1);
  await reopened.close();
});

test("create refuses an existing WAL; open refuses an empty directory", async () => {
  const dir = await freshDir();
  await assert.rejects(Wal.open(dir), WalNotFoundError);
  const wal = await Wal.create(dir);
  await wal.close();
  await assert.rejects(Wal.create(dir), /already exists/);
});

test("a WAL created from a snapshot starts after it", async () => {
  const dir = await freshDir();
  const snapshot = { index: 100, term: 7, confState: { voters: [1n, 2n, 3n], learners: [] } };
  const wal = await Wal.create(dir, { snapshot });
  await assert.rejects(wal.save(undefined, [entry(102, 7)]), /does not continue/);
  await wal.save({ term: 7, vote: 0n, commit: 101 }, [entry(101, 7)]);
  await wal.close();
  const { wal: reopened, recovered } = await Wal.open(dir);
  assert.deepEqual(recovered.snapshot, snapshot);
  assert.deepEqual(
    recovered.entries.map((e) => e.index),
    [101],
  );
  await reopened.close();
});

test("with sync disabled nothing is fsynced and no sync points are written", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir, { sync: false });
  await wal.save(undefined, entries(1, 3));
  assert.equal(wal.stats().fsyncs, 0);
  assert.equal(wal.stats().dirFsyncs, 0);
  await wal.close();
  const { wal: reopened, recovered } = await Wal.open(dir, { sync: false });
  assert.equal(recovered.entries.length, 3);
  await reopened.close();
});

test("saves after close are refused", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir);
  const pending = wal.save(undefined, [entry(1)]);
  await wal.close();
  await pending;
  await assert.rejects(wal.save(undefined, [entry(2)]), /closed/);
});

test("after a failed write every queued and later save is rejected, never reported durable", async () => {
  const dir = await freshDir();
  const { logger, lines } = recordingLogger();
  const wal = await Wal.create(dir, { logger });
  await wal.save(undefined, [entry(1)]);
  // Pull the file out from under the WAL so its next write fails (EBADF).
  await (wal as unknown as { active: { handle: { close(): Promise<void> } } }).active.handle.close();
  const queued = [wal.save(undefined, [entry(2)]), wal.save(undefined, [entry(3)])];
  for (const p of queued) await assert.rejects(p, WalFailedError);
  await assert.rejects(wal.save(undefined, [entry(4)]), WalFailedError);
  assert.ok(lines.some((l) => l.level === "error"));
  await wal.close();
  const { wal: reopened, recovered } = await Wal.open(dir);
  assert.deepEqual(
    recovered.entries.map((e) => e.index),
    [1],
  );
  await reopened.close();
});

test("empty saves cost no write", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir);
  await wal.save(undefined, [entry(1)]);
  await Promise.all([wal.save(undefined, []), wal.save(undefined, [])]);
  assert.equal(wal.stats().writes, 1);
  await wal.close();
});

test("open can replay from an older marker the caller picks from those found", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir);
  await wal.save(undefined, entries(1, 30));
  const confState = { voters: [1n], learners: [] };
  await wal.saveSnapshotMarker({ index: 10, term: 1, confState });
  await wal.saveSnapshotMarker({ index: 20, term: 1, confState });
  await wal.close();
  let offered: number[] = [];
  const { wal: reopened, recovered } = await Wal.open(dir, {
    startAt: async (markers) => {
      offered = markers.map((m) => m.index);
      // As if the snapshot file at 20 failed its checksum and only the one at 10 loaded.
      return { index: 10, term: 1 };
    },
  });
  assert.deepEqual(offered, [10, 20]);
  assert.equal(recovered.snapshot?.index, 10);
  assert.deepEqual(
    recovered.entries.map((e) => e.index),
    [...Array(20).keys()].map((k) => k + 11),
  );
  await reopened.close();
  const latest = await Wal.open(dir);
  assert.equal(latest.recovered.snapshot?.index, 20);
  assert.equal(latest.recovered.entries[0].index, 21);
  await latest.wal.close();
});

test("a damaged snapshot marker in a fresh segment stops start-up instead of being cut off", async () => {
  const dir = await freshDir();
  const snapshot = { index: 100, term: 7, confState: { voters: [1n, 2n, 3n], learners: [] } };
  const wal = await Wal.create(dir, { snapshot, preallocateBytes: 0 });
  await wal.close();
  const [name] = await readdir(dir);
  const path = join(dir, name);
  const bytes = await readFile(path);
  bytes[bytes.length - 3] ^= 0x01;
  await writeFile(path, bytes);
  await assert.rejects(Wal.open(dir), /synced when the segment was created/);
});

test("a snapshot installed from the leader beyond the log: marker, then entries after it", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir);
  await wal.save({ term: 1, vote: 1n, commit: 3 }, entries(1, 5));
  const marker = { index: 50, term: 3, confState: { voters: [1n, 2n, 3n], learners: [] } };
  const markerSaved = wal.saveSnapshotMarker(marker);
  await wal.save({ term: 3, vote: 0n, commit: 51 }, [entry(51, 3), entry(52, 3)]);
  await markerSaved;
  await wal.close();
  const { wal: reopened, recovered } = await Wal.open(dir);
  assert.deepEqual(recovered.snapshot, marker);
  assert.deepEqual(view(recovered.entries), ["51@3:entry-51", "52@3:entry-52"]);
  assert.equal(recovered.hardState?.commit, 51);
  await reopened.close();
});

test("concurrent releaseTo calls delete strictly oldest first", async () => {
  const dir = await freshDir();
  const gapsSeen: string[][] = [];
  const logger: WalLogger = {
    info: (_details, message) => {
      if (message !== "wal: released segment") return;
      // After every deletion the files left must still be a gap-free run of sequences.
      const seqs = readdirSync(dir)
        .filter((n) => n.endsWith(".wal"))
        .map((n) => Number.parseInt(n.slice(0, 16), 16))
        .sort((a, b) => a - b);
      if (seqs.some((seq, k) => k > 0 && seq !== seqs[k - 1] + 1)) gapsSeen.push(readdirSync(dir).sort());
    },
    warn() {},
    error() {},
  };
  const wal = await Wal.create(dir, { segmentBytes: 512, logger });
  for (let i = 1; i <= 80; i++) await wal.save(undefined, [entry(i)]);
  await wal.saveSnapshotMarker({ index: 80, term: 1, confState: { voters: [1n], learners: [] } });
  await wal.save(undefined, [entry(81)]);
  assert.ok(wal.segmentPaths().length >= 6);
  // Two releases racing, as two callers finishing snapshots at once would.
  const [first, second] = await Promise.all([wal.releaseTo(20), wal.releaseTo(80)]);
  assert.ok(first > 0 && second > 0);
  assert.deepEqual(gapsSeen, []);
  await wal.close();
  const { wal: reopened, recovered } = await Wal.open(dir);
  assert.deepEqual(
    recovered.entries.map((e) => e.index),
    [81],
  );
  await reopened.close();
});

/** The open(2) flags of this process's descriptors for `path` (Linux /proc). */
function openFlagsOf(path: string): number[] {
  const flags: number[] = [];
  for (const fd of readdirSync("/proc/self/fd")) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (target !== path) continue;
    const m = /^flags:\s+([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"));
    if (m) flags.push(Number.parseInt(m[1]!, 8));
  }
  return flags;
}

test("the segment being written is open O_DSYNC when the WAL syncs, and not when it does not", {
  skip: process.platform === "linux" ? false : "reads /proc",
}, async () => {
  for (const sync of [true, false]) {
    const dir = await freshDir();
    const wal = await Wal.create(dir, { sync });
    const [name] = await readdir(dir);
    const flags = openFlagsOf(join(dir, name!));
    assert.equal(flags.length, 1, "one descriptor on the active segment");
    assert.equal((flags[0]! & fsConstants.O_DSYNC) !== 0, sync);
    await wal.close();
  }
});

test("each write is its own fdatasync (O_DSYNC): one per group, none for an empty save", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir);
  await wal.save({ term: 1, vote: 1n, commit: 0 }, entries(1, 2));
  assert.deepEqual([wal.stats().writes, wal.stats().fsyncs], [1, 1]);
  // Saves issued in one turn share one write.
  await Promise.all([wal.save({ term: 1, vote: 1n, commit: 2 }, []), wal.save(undefined, [entry(3)])]);
  assert.deepEqual([wal.stats().writes, wal.stats().fsyncs], [2, 2]);
  // Nothing to write: nothing to sync.
  await wal.save(undefined, []);
  assert.deepEqual([wal.stats().writes, wal.stats().fsyncs], [2, 2]);
  await wal.save(undefined, [entry(4)]);
  await wal.close();

  // Every write follows a durable one, so every write is led by a SyncPoint.
  const [name] = await readdir(dir);
  const bytes = await readFile(join(dir, name));
  const scanned = scanSegment(bytes, name, true);
  let syncPoints = 0;
  for (let at = 0; at < scanned.end; ) {
    const frame = readFrame(bytes, at, scanned.header.salt);
    const read = frame.ok ? frame : readFrame(bytes, at, 0);
    assert.ok(read.ok);
    if (read.frame.type === RecordType.SyncPoint) syncPoints++;
    at = read.frame.end;
  }
  assert.equal(syncPoints, 3);
  const { wal: reopened, recovered } = await Wal.open(dir);
  assert.deepEqual(
    recovered.entries.map((e) => e.index),
    [1, 2, 3, 4],
  );
  assert.equal(recovered.hardState?.commit, 2);
  await reopened.close();
});

test("rolling needs no extra fsync: every write to the old segment was durable", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir, { segmentBytes: 512 });
  for (let i = 1; i <= 40; i++) await wal.save(undefined, [entry(i)]);
  const stats = wal.stats();
  assert.ok(stats.segmentsCreated >= 3);
  assert.equal(stats.fsyncs, stats.writes);
  await wal.close();
  assert.equal(wal.stats().fsyncs, stats.fsyncs, "close has nothing left to sync");
  const { wal: reopened, recovered } = await Wal.open(dir);
  assert.equal(recovered.entries.length, 40);
  await reopened.close();
});

test("maxSegments keeps at most that many files, deleting only released ones; 0 keeps every file", async () => {
  const fill = async (wal: Wal, from: number, to: number) => {
    for (let i = from; i <= to; i++) await wal.save({ term: 1, vote: 1n, commit: i }, [entry(i)]);
  };
  const capped = await Wal.create(await freshDir(), { segmentBytes: 512, maxSegments: 3 });
  await fill(capped, 1, 60);
  const made = capped.segmentPaths().length;
  assert.ok(made >= 6, `made ${made} segments`);
  // Released up to 60 but no snapshot marker yet: nothing is wholly before a snapshot.
  assert.equal(await capped.releaseTo(60), 0);
  await capped.saveSnapshotMarker({ index: 30, term: 1, confState: { voters: [1n], learners: [] } });
  await capped.releaseTo(60);
  // Only segments wholly <= 30 (the marker) may go, even though more than 3 remain.
  const left = capped.segmentPaths();
  assert.ok(left.length > 3);
  const firstIndex = (path: string) => Number.parseInt(path.slice(-20, -4), 16);
  assert.ok(firstIndex(left[0]) <= 31, "the segment holding entry 31 is kept");
  await capped.saveSnapshotMarker({ index: 60, term: 1, confState: { voters: [1n], learners: [] } });
  await capped.releaseTo(60);
  assert.equal(capped.segmentPaths().length, 3, "released files beyond the newest 3 are deleted");
  // Writing on rolls new segments; each roll deletes a released file so 3 stay.
  const rolledFrom = capped.stats().segmentsCreated;
  await fill(capped, 61, 100);
  assert.ok(capped.stats().segmentsCreated > rolledFrom + 1);
  await capped.releaseTo(60);
  const kept = capped.segmentPaths();
  assert.ok(kept.length >= 3);
  await capped.close();
  assert.deepEqual((await readdir(capped.dir)).filter((n) => n.endsWith(".wal")).length, kept.length);

  const unlimited = await Wal.create(await freshDir(), { segmentBytes: 512, maxSegments: 0 });
  await fill(unlimited, 1, 60);
  await unlimited.saveSnapshotMarker({ index: 60, term: 1, confState: { voters: [1n], learners: [] } });
  const all = unlimited.segmentPaths().length;
  assert.equal(await unlimited.releaseTo(60), 0);
  assert.equal(unlimited.segmentPaths().length, all);
  await unlimited.close();
});

test("reopening reads only the segments from the one holding the entry after the newest snapshot marker (etcd's selectWALFiles)", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir, { segmentBytes: 512, maxSegments: 0 });
  for (let i = 1; i <= 60; i++) await wal.save({ term: 1, vote: 1n, commit: i }, [entry(i)]);
  const marker = { index: 40, term: 1, confState: { voters: [1n], learners: [] } };
  await wal.saveSnapshotMarker(marker);
  for (let i = 61; i <= 80; i++) await wal.save({ term: 1, vote: 1n, commit: i }, [entry(i)]);
  await wal.close();
  const names = (await readdir(dir)).sort();
  const firstIndex = (name: string) => Number.parseInt(name.slice(17, 33), 16);
  assert.ok(firstIndex(names[2]) <= 41, "the test needs two segments wholly before the marker");
  // Damage in a segment the snapshot covers is never read, as in etcd.
  const covered = join(dir, names[0]);
  const bytes = await readFile(covered);
  bytes.fill(0xee, 100, 200);
  await writeFile(covered, bytes);
  const { logger, lines } = recordingLogger();
  const { wal: reopened, recovered } = await Wal.open(dir, { logger });
  assert.deepEqual(recovered.snapshot, marker);
  assert.deepEqual(
    recovered.entries.map((e) => e.index),
    [...Array(40).keys()].map((k) => k + 41),
  );
  assert.equal(recovered.hardState?.commit, 80);
  const opened = lines.find((l) => l.message === "wal: opened");
  assert.equal(opened?.details.segments, names.length);
  assert.ok((opened?.details.segmentsRead as number) < names.length - 1);
  // The log goes on from there: appends, and a restart replays them.
  await reopened.save({ term: 1, vote: 1n, commit: 81 }, [entry(81)]);
  await reopened.close();
  const again = await Wal.open(dir);
  assert.equal(again.recovered.entries.at(-1)?.index, 81);
  await again.wal.close();
  // A caller replaying from the start still reads every segment, and finds the damage.
  await assert.rejects(Wal.open(dir, { startAt: { index: 0, term: 0 } }), WalCorruptionError);
});

test("an inline save is written and synced before save() returns, only while no write is queued or in flight", async () => {
  const dir = await freshDir();
  let fsyncs = 0;
  // No zero write in flight (preallocateBytes), which would send the first save to the queue.
  const wal = await Wal.create(dir, { onFsync: () => fsyncs++, preallocateBytes: 0 });
  // Idle WAL: written on the calling thread; durable before the promise is even looked at.
  const first = wal.save({ term: 1, vote: 1n, commit: 0 }, [entry(1)], true);
  assert.equal(fsyncs, 1);
  assert.deepEqual([wal.stats().writes, wal.stats().saves], [1, 1]);
  await first;
  // A queued save makes the next inline one queue behind it: writes never overlap, and saves
  // land in call order.
  const queued = wal.save(undefined, [entry(2)]);
  const inlineBehind = wal.save(undefined, [entry(3)], true);
  assert.equal(fsyncs, 1);
  await Promise.all([queued, inlineBehind]);
  assert.equal(fsyncs, 2);
  // And one while a write is in flight.
  const inFlight = wal.save(undefined, [entry(4)]);
  await new Promise((r) => setImmediate(r));
  const duringFlight = wal.save(undefined, [entry(5)], true);
  await Promise.all([inFlight, duringFlight]);
  await wal.save(undefined, [entry(6)], true);
  await wal.close();
  const { wal: reopened, recovered } = await Wal.open(dir);
  assert.deepEqual(
    recovered.entries.map((e) => e.index),
    [1, 2, 3, 4, 5, 6],
  );
  assert.equal(recovered.hardState?.commit, 0);
  await reopened.close();
});

test("an inline save goes through the thread pool once a sync took longer than inlineMaxSyncSeconds (a slow disk)", async () => {
  const dir = await freshDir();
  let fsyncs = 0;
  // Every real sync takes longer than a nanosecond: after the first, no save is written inline.
  const wal = await Wal.create(dir, {
    onFsync: () => fsyncs++,
    inlineMaxSyncSeconds: 1e-9,
    preallocateBytes: 0,
  });
  const first = wal.save(undefined, [entry(1)], true);
  assert.equal(fsyncs, 1, "no sync measured yet: the first save is inline");
  await first;
  const second = wal.save(undefined, [entry(2)], true);
  assert.equal(fsyncs, 1, "written on the thread pool, after save() returned");
  await second;
  assert.equal(fsyncs, 2);
  await wal.close();
});

test("a failed inline write rejects that save and every later one", async () => {
  const dir = await freshDir();
  const wal = await Wal.create(dir);
  await wal.save(undefined, [entry(1)], true);
  await (wal as unknown as { active: { handle: { close(): Promise<void> } } }).active.handle.close();
  await assert.rejects(wal.save(undefined, [entry(2)], true), WalFailedError);
  await assert.rejects(wal.save(undefined, [entry(3)]), WalFailedError);
  await wal.close();
  const { wal: reopened, recovered } = await Wal.open(dir);
  assert.deepEqual(
    recovered.entries.map((e) => e.index),
    [1],
  );
  await reopened.close();
});
