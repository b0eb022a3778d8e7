import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { progressLine } from "./backup-command.js";
import { backupId } from "./backup-job.js";
import { BackupError, beyondRetention, DirectoryStore } from "./directory-store.js";
import { pickSource } from "./snapshot-source.js";

/** A snapshot-shaped stream: `body` then its sha256, cut into `pieces` messages of odd sizes. */
async function* stream(body: Buffer, trailer = createHash("sha256").update(body).digest(), pieces = 7) {
  const all = Buffer.concat([body, trailer]);
  const step = Math.ceil(all.length / pieces);
  for (let at = 0; at < all.length; at += step)
    yield { blob: all.subarray(at, at + step), remaining: all.length - at - step };
}

describe("directory store", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "backup-store-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("stores a stream whose trailer matches, with its sha256 beside it, and lists it", async () => {
    const store = new DirectoryStore(join(dir, "ok"));
    const body = Buffer.alloc(10_000, 3);
    const seen: number[] = [];
    const entry = await store.write("b1", stream(body), (p) => seen.push(p.bytes));
    assert.equal(entry.size, 10_032);
    assert.equal(seen.at(-1), 10_032);
    const whole = createHash("sha256").update(
      Buffer.concat([body, createHash("sha256").update(body).digest()]),
    );
    assert.equal(entry.sha256, whole.digest("hex"));
    assert.deepEqual(await store.list(), [entry]);
    assert.deepEqual(await store.checkHash("b1"), entry);
    await assert.rejects(store.write("b1", stream(body)), /already exists/);
  });

  it("refuses a stream with a wrong trailer or cut short, leaving nothing behind", async () => {
    const store = new DirectoryStore(join(dir, "bad"));
    const body = Buffer.alloc(5000, 9);
    await assert.rejects(
      store.write("wrong", stream(body, Buffer.alloc(32))),
      /snapshot stream is corrupt: trailer 0{64}/,
    );
    await assert.rejects(store.write("short", stream(Buffer.alloc(0), Buffer.alloc(10))), /too short/);
    assert.deepEqual(await readdir(join(dir, "bad")), []);
    assert.deepEqual(await store.list(), []);
  });

  it("finds a backup that changed on disk, and one whose hash file is missing", async () => {
    const store = new DirectoryStore(join(dir, "rot"));
    await store.write("b1", stream(Buffer.alloc(3000, 1)));
    await writeFile(store.path("b1"), Buffer.alloc(3032, 2));
    await assert.rejects(
      store.checkHash("b1"),
      (err: Error) => err instanceof BackupError && /b1 is corrupt: sha256/.test(err.message),
    );
    await rm(join(dir, "rot", "b1.sha256"));
    assert.deepEqual(await store.list(), []);
    await assert.rejects(store.checkHash("nope"), /no backup nope/);
  });

  it("keeps the last N, and ids sort by time", () => {
    assert.deepEqual(beyondRetention(["a", "b", "c", "d"], 2), ["a", "b"]);
    assert.deepEqual(beyondRetention(["a"], 3), []);
    assert.throws(() => beyondRetention([], 0), /at least 1/);
    const ids = [new Date("2026-12-04T09:59:59.999Z"), new Date("2026-12-04T10:00:00.000Z")].map(backupId);
    assert.deepEqual([...ids].sort(), ids);
    assert.match(ids[0]!, /^[A-Za-z0-9._-]+$/);
  });

  it("prints progress with rate and ETA", () => {
    assert.equal(progressLine(20e6, 60e6, 2000), "20.0 MB, 10.0 MB/s, ETA 6 s");
    assert.equal(progressLine(0, undefined, 0), "0.0 MB, 0.0 MB/s");
  });

  it("takes the snapshot from a follower, the leader only when no follower answers", () => {
    const leader = { endpoint: "a", memberId: "1", leaderId: "1" };
    const follower = { endpoint: "b", memberId: "2", leaderId: "1" };
    const down = { endpoint: "c" };
    assert.equal(pickSource([leader, down, follower])?.endpoint, "b");
    assert.equal(pickSource([leader, down])?.endpoint, "a");
    assert.equal(
      pickSource([{ endpoint: "l", memberId: "3", leaderId: "1", isLearner: true }, leader])?.endpoint,
      "a",
    );
    assert.equal(pickSource([down, { endpoint: "d", memberId: "4", leaderId: "0" }]), undefined);
  });
});
