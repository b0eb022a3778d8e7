// Power loss: every write since the last fsync is gone. Members run on ext4 on loop devices
// (@etcd-ts/testing's disk-faults.ts); a power loss is a copy of a loop device's image taken
// the moment its member is SIGKILLed: it holds what reached the device (every fsync'ed write)
// and none of what was only in the mounted file system's page cache. Members restart on those
// copies (one member's while the others go on, or all three at once), and every acknowledged
// put must be served.
//
// The first test shows the copy really drops unsynced writes, so a member that acknowledged
// before its fsync (or skipped one: a directory entry, the state machine before a WAL release)
// would lose puts here and fail the last test.
import assert from "node:assert/strict";
import { closeSync, fsyncSync, openSync, readFileSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { diskFaultsUnavailable, LoopDisk } from "@etcd-ts/testing";
import { AckedWrites } from "./acked-writes.fixture.js";
import { eventually } from "./eventually.fixture.js";
import { addressOf } from "./local-cluster.js";
import { suiteResources } from "./suite-clusters.fixture.js";

function writeFile(path: string, data: string, sync: boolean): void {
  const fd = openSync(path, "a");
  writeSync(fd, data);
  if (sync) fsyncSync(fd);
  closeSync(fd);
}

// The whole suite (three tests of 1-70 s each on a loaded 2-core machine).
describe("power loss", { timeout: 300_000, skip: diskFaultsUnavailable() }, () => {
  const owned = suiteResources();

  it("the power-loss image keeps fsync'ed writes and drops the rest", () => {
    const disk = owned.disk(LoopDisk.create({ diskBytes: 64 * 1024 * 1024 }));
    const synced = join(disk.mountPoint, "synced");
    writeFile(synced, "a".repeat(5000), true);
    const dir = openSync(disk.mountPoint, "r");
    fsyncSync(dir);
    closeSync(dir);
    writeFile(synced, "b".repeat(5000), false);
    writeFile(join(disk.mountPoint, "unsynced"), "c".repeat(5000), false);
    const image = owned.disk(disk.powerLossImage());
    assert.equal(readFileSync(join(image.mountPoint, "synced"), "utf8"), "a".repeat(5000));
    assert.throws(() => statSync(join(image.mountPoint, "unsynced")), { code: "ENOENT" });
    // The live file system still has both: only the device lost them.
    assert.equal(statSync(synced).size, 10_000);
  });

  /**
   * m1 loses power once `before` puts are acknowledged, the other two take 200 more, then m1
   * restarts on its disk's image and must serve every acknowledged put.
   */
  async function oneMemberLosesPower(snapshotCount: number, before: number): Promise<void> {
    const disk = owned.disk(LoopDisk.create());
    const cluster = await owned.cluster({
      size: 3,
      flags: ["--snapshot-count", String(snapshotCount)],
      dataDirs: { m1: join(disk.mountPoint, "m1") },
    });
    const m1 = cluster.members[0]!;
    const writes = new AckedWrites(cluster.members.map(addressOf));
    let stop = false;
    const load = writes.run(() => stop, 40_000);
    // Counts small enough for a loaded 2-core machine (~20 puts/s seen there under others' load).
    await eventually("puts acknowledged", async () => writes.acked.size >= before, 30_000);
    await cluster.stop(m1, "SIGKILL");
    const image = owned.disk(disk.powerLossImage());
    const ackedAtLoss = writes.acked.size;
    await eventually(
      "puts acknowledged by the other two",
      async () => writes.acked.size >= ackedAtLoss + 200,
      30_000,
    ).catch((err: Error) => {
      const tails = cluster.members.map((m) => `${m.name}:\n${m.output.split("\n").slice(-8).join("\n")}`);
      throw new Error(
        `${err.message}: ${writes.acked.size - ackedAtLoss} acknowledged, ${writes.failed} failed\n${tails.join("\n")}`,
      );
    });
    m1.dataDir = join(image.mountPoint, "m1");
    await cluster.restart(m1);
    stop = true;
    await load;
    for (const m of cluster.members) {
      await eventually(
        `${m.name} serves every acknowledged put`,
        async () => (await writes.missingOn(addressOf(m))).length === 0,
        20_000,
      );
    }
  }

  it("one member loses power while the others go on: it restarts on what its disk kept and catches up", () =>
    oneMemberLosesPower(300, 300));

  // Its store synced nothing yet (RocksDB is synced at a snapshot): it restarts with an empty
  // store and replays the whole log, the bootstrap entries too, which must tell it where its
  // peers are (it ran with no link to any peer, answering nothing, until they did).
  it("one member loses power before its first snapshot: it replays its whole log and catches up", () =>
    oneMemberLosesPower(10_000, 50));

  it("all three members lose power at once: every acknowledged put is served after the restart", async () => {
    const members = ["m1", "m2", "m3"];
    const own = members.map(() => owned.disk(LoopDisk.create()));
    const cluster = await owned.cluster({
      size: 3,
      // Snapshots, WAL releases and the state machine's sync before them happen during the load.
      flags: ["--snapshot-count", "300"],
      dataDirs: Object.fromEntries(members.map((name, i) => [name, join(own[i]!.mountPoint, name)])),
    });
    const writes = new AckedWrites(cluster.members.map(addressOf));
    let stop = false;
    const load = writes.run(() => stop, 30_000);
    await eventually("puts acknowledged", async () => writes.acked.size >= 600, 30_000);
    // The power goes: processes die, and the disks keep only what reached them.
    await Promise.all(cluster.members.map((m) => cluster.stop(m, "SIGKILL")));
    const images = own.map((d) => owned.disk(d.powerLossImage()));
    stop = true;
    await load;
    assert.ok(writes.acked.size >= 600);

    cluster.members.forEach((m, i) => {
      m.dataDir = join(images[i]!.mountPoint, m.name);
      cluster.spawn(m);
    });
    await Promise.all(cluster.members.map((m) => cluster.waitReady(m)));
    for (const m of cluster.members) {
      await eventually(
        `${m.name} serves every acknowledged put`,
        async () => (await writes.missingOn(addressOf(m))).length === 0,
        20_000,
      );
    }
  });

  it("a member whose fsyncs lie loses acknowledged puts to it: the image shows a lying disk", async (t) => {
    // --unsafe-no-fsync skips every fsync and O_DSYNC: to the member each one succeeds, and the
    // data stays in the page cache, as on a disk that acknowledges flushes it never does. No
    // member can survive that; this proves the power-loss image would expose one.
    const disk = owned.disk(LoopDisk.create());
    const cluster = await owned.cluster({
      size: 1,
      flags: ["--unsafe-no-fsync"],
      dataDirs: { m1: join(disk.mountPoint, "m1") },
    });
    const m = cluster.members[0]!;
    const writes = new AckedWrites([addressOf(m)]);
    await writes.run(() => writes.acked.size >= 100, 30_000, 2);
    assert.ok(writes.acked.size >= 100);
    await cluster.stop(m, "SIGKILL");
    const image = owned.disk(disk.powerLossImage());
    m.dataDir = join(image.mountPoint, "m1");
    const started = await cluster.startUntilServingOrExit(m);
    if (started === "ready") {
      const missing = await writes.missingOn(addressOf(m));
      assert.ok(missing.length > 0, "every acknowledged put survived a disk that never flushed");
      t.diagnostic(`restarted missing ${missing.length} of ${writes.acked.size} acknowledged puts`);
    } else {
      // It could not even start on what the disk kept: lost all the same.
      t.diagnostic(
        `could not restart (exit ${started.code ?? started.signal}): ${m.output.split("\n").find((l) => l.startsWith("etcd: "))}`,
      );
    }
  });
});
