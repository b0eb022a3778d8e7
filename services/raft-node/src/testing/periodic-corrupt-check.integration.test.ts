// --experimental-corrupt-check-time, as etcd 3.4's periodic check: with every member's data
// intact the leader's checks pass and no alarm is raised; once one byte of one stored value is
// flipped at rest on a follower, the leader's next check sees the follower's HashKV differ and
// raises CORRUPT (member ID 0, as etcd 3.4.23), which `etcdctl alarm list` shows (as
// `alarm:CORRUPT`) and which
// refuses writes with etcd's "corrupt cluster".
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { alterStoredKeyValues } from "./corrupt-at-rest.fixture.js";
import { etcdctl, haveEtcdctl } from "./etcdctl.fixture.js";
import { eventually } from "./eventually.fixture.js";
import { addressOf, LocalCluster } from "./local-cluster.js";

describe("--experimental-corrupt-check-time", {
  // The whole suite: its tests take 20-70 s each on a loaded 2-core machine.
  timeout: 240_000,
  skip: haveEtcdctl ? false : "etcdctl not installed",
}, () => {
  let cluster: LocalCluster;

  before(async () => {
    cluster = await LocalCluster.start({ size: 3, flags: ["--experimental-corrupt-check-time=1s"] });
  });
  after(async () => {
    await cluster?.close();
  });

  it("raises CORRUPT once a follower's stored value differs, and not before", async () => {
    const eps = cluster.members.map(addressOf).join(",");
    for (let i = 0; i < 10; i++) await etcdctl(eps, ["put", `foo${i}`, `value-${i}`]);
    const { member: leader } = await cluster.agreedLeader();
    // Two checks pass with the data intact.
    await eventually(
      "two finished checks",
      async () => (leader.output.match(/finished peer corruption check/g) ?? []).length >= 2,
      15_000,
    );
    assert.match(leader.output, /"number-of-peers-checked":2/);
    assert.equal((await etcdctl(eps, ["alarm", "list"])).trim(), "");

    const follower = cluster.members.find((m) => m !== leader)!;
    await cluster.stop(follower);
    // One byte of one value: foo3's last revision.
    const altered = await alterStoredKeyValues(follower.dataDir, (kv) => {
      if (Buffer.from(kv.key).toString() !== "foo3") return undefined;
      const value = Buffer.from(kv.value);
      value[0]! ^= 0x01;
      return { ...kv, value };
    });
    assert.equal(altered, 1);
    await cluster.restart(follower);
    // The follower serves the altered value: nothing else noticed.
    assert.match(await etcdctl(addressOf(follower), ["get", "foo3", "--consistency=s"]), /walue-3/);

    await eventually(
      "the CORRUPT alarm",
      // Member ID 0 is protobuf's default, which etcdctl's text form leaves out.
      async () => /^alarm:CORRUPT\s*$/m.test(await etcdctl(addressOf(leader), ["alarm", "list"])),
      20_000,
    ).catch((err: Error) => {
      const checks = leader.output.split("\n").filter((l) => /hash|corrupt/i.test(l));
      throw new Error(`${err.message}\nleader's checks:\n${checks.slice(-6).join("\n")}`);
    });
    assert.match(leader.output, /found hash mismatch/);
    await assert.rejects(
      etcdctl(addressOf(leader), ["put", "after", "corrupt"]),
      /etcdserver: corrupt cluster/,
    );
  });
});
