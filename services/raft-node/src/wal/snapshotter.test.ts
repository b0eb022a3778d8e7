import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { Snapshotter, snapshotFileName } from "./snapshotter.js";
import type { WalLogger } from "./wal.js";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function freshDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "snap-test-"));
  dirs.push(d);
  return join(d, "snap");
}

function snapshot(index: number, term = 1, data = `state at ${index}`) {
  return {
    metadata: { index, term, confState: { voters: [1n, 2n, 3n], learners: [4n] } },
    data: Buffer.from(data),
  };
}

test("a saved snapshot loads back with its metadata and data", async () => {
  const dir = await freshDir();
  const snapper = new Snapshotter(dir);
  const path = await snapper.save(snapshot(42, 3));
  assert.equal(path, join(dir, "0000000000000003-000000000000002a.snap"));
  const { loaded, broken } = await snapper.loadNewest();
  assert.deepEqual(broken, []);
  assert.deepEqual(loaded?.snapshot.metadata, snapshot(42, 3).metadata);
  assert.equal(Buffer.from(loaded?.snapshot.data ?? []).toString(), "state at 42");
  assert.deepEqual(await readdir(dir), ["0000000000000003-000000000000002a.snap"]);
});

test("the newest valid snapshot wins; a corrupt newer one is skipped, reported and set aside", async () => {
  const dir = await freshDir();
  const warnings: unknown[] = [];
  const logger: WalLogger = { info() {}, warn: (d) => warnings.push(d), error() {} };
  const snapper = new Snapshotter(dir, { logger });
  await snapper.save(snapshot(10));
  await snapper.save(snapshot(20));
  const newest = join(dir, snapshotFileName(snapshot(20).metadata));
  const bytes = await readFile(newest);
  bytes[bytes.length - 9] ^= 0x01;
  await writeFile(newest, bytes);
  const { loaded, broken } = await snapper.loadNewest();
  assert.equal(loaded?.snapshot.metadata.index, 10);
  assert.equal(broken.length, 1);
  assert.equal(broken[0].file, newest);
  assert.match(broken[0].reason, /checksum mismatch/);
  assert.equal(warnings.length, 1);
  assert.ok((await readdir(dir)).includes(`${snapshotFileName(snapshot(20).metadata)}.broken`));
});

test("a truncated snapshot file is rejected", async () => {
  const dir = await freshDir();
  const snapper = new Snapshotter(dir);
  const path = await snapper.save(snapshot(5, 1, "x".repeat(1000)));
  const bytes = await readFile(path);
  await writeFile(path, bytes.subarray(0, 500));
  const { loaded, broken } = await snapper.loadNewest();
  assert.equal(loaded, undefined);
  assert.equal(broken.length, 1);
});

test("loadNewest honours the caller's filter (e.g. snapshots the WAL has markers for)", async () => {
  const dir = await freshDir();
  const snapper = new Snapshotter(dir);
  for (const i of [5, 10, 15]) await snapper.save(snapshot(i));
  const { loaded } = await snapper.loadNewest((m) => m.index <= 10);
  assert.equal(loaded?.snapshot.metadata.index, 10);
});

test("purge keeps the newest N and removes leftover temp files", async () => {
  const dir = await freshDir();
  const snapper = new Snapshotter(dir);
  for (const i of [1, 2, 3, 4, 5]) await snapper.save(snapshot(i));
  await writeFile(join(dir, "0000000000000001-0000000000000006.snap.tmp"), "half written");
  const removed = await snapper.purge(2);
  assert.equal(removed.length, 4);
  assert.deepEqual(
    (await snapper.list()).map((r) => r.index),
    [5, 4],
  );
  assert.equal((await readdir(dir)).length, 2);
  await assert.rejects(snapper.purge(0), RangeError);
});

test("an empty or missing directory has no snapshot", async () => {
  const dir = await freshDir();
  const { loaded, broken } = await new Snapshotter(dir).loadNewest();
  assert.equal(loaded, undefined);
  assert.deepEqual(broken, []);
});
