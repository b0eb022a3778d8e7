// Torn writes inside RocksDB's own files. The store writes each applied batch to RocksDB's WAL
// without fsync (mvcc/store.ts: the Raft WAL, fsynced before anything is acknowledged, is what
// replays lost state). A member is SIGKILLed while clients write, then the newest RocksDB WAL
// file (`NNNNNN.log`) is cut at a random byte or has bytes flipped in its tail, as a crash of
// the machine can leave it. The store must open on what is left as a consistent prefix (a
// batch is one WAL record: all of it or none), never ahead of the Raft log, and the member,
// replaying its own Raft WAL from the store's applied index, must serve every acknowledged put.
//
// RocksDB's WAL recovery mode is its default, kPointInTimeRecovery (the binding does not expose
// the option): replay stops at the first bad record and the database opens with everything
// before it. That is the mode this layering needs: kAbsoluteConsistency would refuse to open
// (a torn tail is normal after a crash), kTolerateCorruptedTailRecords is for synced WALs, and
// kSkipAnyCorruptedRecords could apply a later batch without an earlier one (a hole that no
// Raft replay mends, since replay starts after the applied index). Only the newest WAL file is
// damaged: RocksDB syncs a WAL file before a flush moves its data into SST files, so the
// unsynced bytes a crash can lose are all in the newest one.
import assert from "node:assert/strict";
import { cp, mkdtemp, open, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Prng } from "@etcd-ts/raft";
import { EXTRA_COLUMNS } from "../bootstrap/data-dir.js";
import { MvccStore } from "../mvcc/mod.js";
import { rangeRequest } from "../mvcc/request-builders.js";
import { Wal } from "../wal/mod.js";
import { AckedWrites } from "./acked-writes.fixture.js";
import { eventually } from "./eventually.fixture.js";
import { addressOf, LocalCluster } from "./local-cluster.js";

const ROUNDS = 4;

/** Cuts the newest RocksDB WAL file at a random byte, or flips 1-8 bytes in its last 4 KiB. */
async function tearNewestLog(dbDir: string, rng: Prng): Promise<string> {
  const logs = (await readdir(dbDir)).filter((f) => /^\d+\.log$/.test(f)).sort();
  const newest = logs.at(-1);
  if (newest === undefined) return "no WAL file";
  const path = join(dbDir, newest);
  const { size } = await stat(path);
  if (size === 0) return `${newest} empty`;
  const file = await open(path, "r+");
  try {
    if (rng.chance(0.5)) {
      const at = rng.between(0, size - 1);
      await file.truncate(at);
      return `${newest} cut at byte ${at} of ${size}`;
    }
    const tail = Math.min(size, 4096);
    const flipped: number[] = [];
    for (let i = rng.between(1, 8); i > 0; i--) {
      const at = size - 1 - rng.between(0, tail - 1);
      const byte = Buffer.alloc(1);
      await file.read(byte, 0, 1, at);
      byte[0] = byte[0]! ^ rng.between(1, 255);
      await file.write(byte, 0, 1, at);
      flipped.push(at);
    }
    return `${newest}: flipped bytes ${flipped.sort((a, b) => a - b).join(",")} of ${size}`;
  } finally {
    await file.close();
  }
}

/** The last index in the Raft WAL (read from a copy: opening a WAL may repair its tail). */
async function raftLastIndex(walDir: string): Promise<number> {
  const copy = await mkdtemp(join(tmpdir(), "torn-rocksdb-wal-copy-"));
  try {
    await cp(walDir, copy, { recursive: true });
    const { wal, recovered } = await Wal.open(copy);
    await wal.close();
    return recovered.entries.at(-1)?.index ?? recovered.snapshot?.index ?? 0;
  } finally {
    await rm(copy, { recursive: true, force: true });
  }
}

describe("torn writes in RocksDB's WAL", { timeout: 240_000 }, () => {
  it(`a member SIGKILLed ${ROUNDS} times, its newest RocksDB WAL file torn each time, serves every acknowledged put`, async (t) => {
    const seed = Number(process.env.TORN_SEED ?? Math.floor(Math.random() * 1_000_000));
    const context = `seed ${seed} (TORN_SEED replays the damage)`;
    const rng = new Prng(seed);
    // No snapshot in the run (etcd's default count): the Raft WAL holds every entry, so any
    // cut of RocksDB's WAL, even of bytes an earlier fsync had made durable, can be replayed.
    const cluster = await LocalCluster.start({ size: 1 });
    const m = cluster.members[0]!;
    const dbDir = join(m.dataDir, "member", "snap", "db");
    const walDir = join(m.dataDir, "member", "wal");
    const writes = new AckedWrites([addressOf(m)]);
    let roundsThatLostAcked = 0;
    try {
      for (let round = 0; round < ROUNDS; round++) {
        let stop = false;
        const load = writes.run(() => stop, 60_000);
        const before = writes.acked.size;
        await eventually("puts acknowledged", async () => writes.acked.size >= before + 50, 30_000);
        await new Promise((r) => setTimeout(r, rng.between(0, 300)));
        stop = true;
        // Puts in flight die with the member: their outcome is unknown, as for etcd's clients.
        await cluster.stop(m, "SIGKILL");
        await load;
        const damage = await tearNewestLog(dbDir, rng);

        const store = await MvccStore.open(dbDir, { extraColumns: EXTRA_COLUMNS });
        let applied: number;
        let lost: number;
        try {
          applied = store.appliedIndex;
          const revision = store.revision;
          const served = new Map(
            (await store.range(rangeRequest({ key: "durable/", rangeEnd: "durable0" }))).kvs.map((kv) => [
              kv.key.toString(),
              { value: kv.value.toString(), modRevision: kv.modRevision },
            ]),
          );
          // A prefix of the history: every acknowledged put at or below the store's revision is
          // there as written, none above it.
          lost = 0;
          for (const [key, value] of writes.acked) {
            const rev = writes.revisions.get(key)!;
            const kv = served.get(key);
            if (rev > revision) {
              lost++;
              assert.equal(
                kv,
                undefined,
                `${context}, round ${round} (${damage}): ${key} at ${rev} > ${revision}`,
              );
            } else {
              assert.deepEqual(
                kv,
                { value, modRevision: rev },
                `${context}, round ${round} (${damage}): ${key}`,
              );
            }
          }
        } finally {
          await store.close();
        }
        const raftLast = await raftLastIndex(walDir);
        assert.ok(
          applied <= raftLast,
          `${context}, round ${round} (${damage}): store at ${applied}, past the Raft log's ${raftLast}`,
        );
        if (lost > 0) roundsThatLostAcked++;
        t.diagnostic(
          `round ${round}: ${damage}; store at index ${applied} (Raft log ${raftLast}), ${lost} acknowledged puts to replay`,
        );

        await cluster.restart(m);
        assert.deepEqual(
          await writes.missingOn(addressOf(m)),
          [],
          `${context}, round ${round} (${damage}): acknowledged puts missing after the replay`,
        );
      }
      // The damage must have bitten for the replay to have been shown.
      assert.ok(roundsThatLostAcked > 0, `${context}: no round lost an acknowledged put from RocksDB`);
      t.diagnostic(
        `${context}: ${writes.acked.size} puts acknowledged, ${roundsThatLostAcked}/${ROUNDS} rounds replayed lost ones`,
      );
    } finally {
      await cluster.close();
    }
  });
});
