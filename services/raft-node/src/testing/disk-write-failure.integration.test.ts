// A WAL write or fsync that fails stops the member, as etcd's "failed to save Raft hard state
// and entries" panic does: nothing that write carried is acknowledged, the process exits 1 with
// the error in its last log line, and once the disk is repaired it restarts with every
// acknowledged write. The failing disk is real (@etcd-ts/testing's disk-faults.ts: ext4 on a loop device
// whose backing store runs out, so the kernel fails the writes and the fsync reports it).
//
// A member that went on after a failed fsync would answer puts the disk never stored: after
// the repair (unmount drops the page cache) those keys would be missing, and this test fails.
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { LoopDisk } from "@etcd-ts/testing";
import { AckedWrites } from "./acked-writes.fixture.js";
import { etcdctl } from "./etcdctl.fixture.js";
import { eventually } from "./eventually.fixture.js";
import { addressOf, type MemberProcess } from "./local-cluster.js";
import { DISK_FAULT_SUITE, suiteResources } from "./suite-clusters.fixture.js";

describe("a failing disk under the WAL stops the member", DISK_FAULT_SUITE, () => {
  const owned = suiteResources();

  it("alone: the failed write is never acknowledged, every acknowledged one survives the repair", async () => {
    const disk = owned.disk(LoopDisk.create({ backingBytes: 192 * 1024 * 1024 }));
    const cluster = await owned.cluster({ size: 1, dataDirs: { m1: join(disk.mountPoint, "m1") } });
    const m = cluster.members[0]!;
    let exitCode: number | null | undefined;
    void cluster.exited(m).then((exit) => {
      exitCode = exit.code;
    });
    const writes = new AckedWrites([addressOf(m)]);
    const load = writes.run(() => exitCode !== undefined, 40_000);
    await eventually("some puts acknowledged", async () => writes.acked.size >= 200, 20_000);
    const ackedBeforeFault = writes.acked.size;
    disk.failNewWrites();
    await load;
    assert.equal(exitCode, 1, `member did not exit 1 on a failing disk:\n${m.output.slice(-2000)}`);
    assert.match(m.output, /"msg":"member failed; exiting"/);
    assert.match(m.output, /ENOSPC|EIO|no space left on device|i\/o error/i);
    assert.ok(writes.failed > 0, "no put failed: the disk fault never reached the member");

    disk.repair();
    await cluster.restart(m);
    assert.deepEqual(await writes.missingOn(addressOf(m)), []);
    assert.ok(writes.acked.size >= ackedBeforeFault);
  });

  it("the leader of three: it stops, the others go on, it catches up once repaired", async () => {
    const disk = owned.disk(LoopDisk.create({ backingBytes: 192 * 1024 * 1024 }));
    // m1 is on the failing disk; it is made leader below.
    const cluster = await owned.cluster({ size: 3, dataDirs: { m1: join(disk.mountPoint, "m1") } });
    const [m1, m2, m3] = cluster.members as [MemberProcess, MemberProcess, MemberProcess];
    let leader = await cluster.agreedLeader();
    if (leader.member !== m1) {
      const status = await etcdctl(addressOf(m1), ["endpoint", "status", "-w", "json"]);
      const id = BigInt(/"member_id":(\d+)/.exec(status)![1]!).toString(16);
      await etcdctl(addressOf(leader.member), ["move-leader", id]);
      leader = await cluster.agreedLeader();
    }
    assert.equal(leader.member, m1);
    const exited = cluster.exited(m1);
    const writes = new AckedWrites([m1, m2, m3].map(addressOf));
    let stop = false;
    const load = writes.run(() => stop, 40_000);
    await eventually("some puts acknowledged", async () => writes.acked.size >= 200, 20_000);
    disk.failNewWrites();
    assert.equal((await exited).code, 1);
    assert.match(m1.output, /"msg":"member failed; exiting"/);
    const ackedAtFault = writes.acked.size;
    // The two others elect a leader and keep acknowledging.
    await eventually(
      "puts acknowledged after the leader failed",
      async () => writes.acked.size >= ackedAtFault + 200,
      20_000,
    );
    stop = true;
    await load;

    disk.repair();
    await cluster.restart(m1);
    for (const m of [m1, m2, m3]) {
      await eventually(
        `${m.name} serves every acknowledged put`,
        async () => (await writes.missingOn(addressOf(m))).length === 0,
        20_000,
      );
    }
  });
});
