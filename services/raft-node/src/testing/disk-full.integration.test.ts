// A full disk (ENOSPC), as etcd 3.4 meets it. etcd stops on a WAL or backend write that fails
// (raft.go: "failed to save Raft hard state and entries", backend: "failed to commit tx", both
// lg.Fatal), and raises NOSPACE only for its backend quota (--quota-backend-bytes, see
// quota.integration.test.ts), never for the file system. So here: the member whose disk fills
// exits 1 without acknowledging what it could not store, and once space returns it restarts
// with every acknowledged write. A defragmentation or a snapshot file that runs out of space
// fails that one call and leaves the member serving its previous state.
//
// The disk is a real size-limited tmpfs (@etcd-ts/testing's disk-faults.ts).
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { SmallFilesystem } from "@etcd-ts/testing";
import { AckedWrites } from "./acked-writes.fixture.js";
import { etcdctl } from "./etcdctl.fixture.js";
import { eventually } from "./eventually.fixture.js";
import { addressOf } from "./local-cluster.js";
import { DISK_FAULT_SUITE, suiteResources } from "./suite-clusters.fixture.js";

const MiB = 1024 * 1024;
describe("a full disk", DISK_FAULT_SUITE, () => {
  const owned = suiteResources();

  it("stops the member at the write it cannot store; restarted with space, it serves every acknowledged put", async () => {
    const fs = owned.disk(SmallFilesystem.create(16 * MiB));
    // Snapshots every 200 entries: the disk also fills while the WAL is released and snapshots saved.
    const cluster = await owned.cluster({
      size: 1,
      flags: ["--snapshot-count", "200"],
      dataDirs: { m1: join(fs.path, "m1") },
    });
    const m = cluster.members[0]!;
    let exitCode: number | null | undefined;
    void cluster.exited(m).then((exit) => {
      exitCode = exit.code;
    });
    const writes = new AckedWrites([addressOf(m)], 2048);
    await writes.run(() => exitCode !== undefined, 60_000);
    assert.equal(exitCode, 1, `member did not exit 1 on a full disk:\n${m.output.slice(-2000)}`);
    assert.match(m.output, /"msg":"member failed; exiting"/);
    assert.match(m.output, /ENOSPC|No space left on device/i);
    assert.ok(writes.acked.size > 0);

    fs.grow(256 * MiB);
    await cluster.restart(m);
    assert.deepEqual(await writes.missingOn(addressOf(m)), []);
    // And it takes writes again.
    await etcdctl(addressOf(m), ["put", "after-space-returned", "yes"]);
  });

  it("a defragmentation or a snapshot file that runs out of space fails alone; the member serves on", async () => {
    const fs = owned.disk(SmallFilesystem.create(64 * MiB));
    const cluster = await owned.cluster({ size: 1, dataDirs: { m1: join(fs.path, "m1") } });
    const m = cluster.members[0]!;
    const ep = addressOf(m);
    // ~3 MB of incompressible values in few puts (a loaded machine makes few puts a second).
    const writes = new AckedWrites([ep], 10_000);
    await writes.run(() => writes.acked.size >= 300, 60_000);
    assert.ok(writes.acked.size >= 300);

    // Leave less room than a copy of the database needs.
    const ballast = join(fs.path, "ballast");
    writeFileSync(ballast, Buffer.alloc(Math.max(0, fs.freeBytes() - 256 * 1024)));
    await assert.rejects(etcdctl(ep, ["defrag"]), /No space left on device|ENOSPC|IO error/i);
    const saved = join(fs.path, "..", `snapshot-${process.pid}.db`);
    await assert.rejects(
      etcdctl(ep, ["snapshot", "save", saved]),
      /No space left on device|ENOSPC|IO error/i,
    );
    await rm(saved, { force: true });
    assert.ok(m.child !== undefined, `the member stopped:\n${m.output.slice(-2000)}`);
    assert.deepEqual(await writes.missingOn(ep), []);

    await rm(ballast);
    await etcdctl(ep, ["defrag"]);
    await etcdctl(ep, ["put", "after-space-returned", "yes"]);
    assert.deepEqual(await writes.missingOn(ep), []);
    await cluster.stop(m);
    await cluster.restart(m);
    await eventually(
      "restarted member serves every put",
      async () => (await writes.missingOn(ep)).length === 0,
      10_000,
    );
  });
});
