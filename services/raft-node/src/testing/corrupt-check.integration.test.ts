// Data altered at rest on one member of three, found as etcd 3.4 finds it:
// - --experimental-initial-corrupt-check, as etcd's TestEtcdCorruptHash: the member whose stored
//   values were altered offline refuses to start with etcd's message; with its data intact it
//   starts (the check passes). Auth is on: the peers answer on their peer port all the same.
// - --experimental-corrupt-check-time, as etcd 3.4's periodic check: with every member's data
//   intact the leader's checks pass and no alarm is raised; once one byte of one stored value is
//   flipped at rest on a follower, the leader's next check sees the follower's HashKV differ and
//   raises CORRUPT (member ID 0, as etcd 3.4.23), which `etcdctl alarm list` shows (as
//   `alarm:CORRUPT`) and which refuses writes with etcd's "corrupt cluster".
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { alterStoredKeyValues } from "./corrupt-at-rest.fixture.js";
import { etcdctl, haveEtcdctl } from "./etcdctl.fixture.js";
import { eventually } from "./eventually.fixture.js";
import { addressOf, type LocalCluster } from "./local-cluster.js";
import { suiteCluster } from "./suite-clusters.fixture.js";

/** What etcd's corruptHash does to the bbolt file: every stored key and value changed. */
async function corruptValues(dataDir: string): Promise<void> {
  await alterStoredKeyValues(dataDir, (kv) => {
    const key = Buffer.from(kv.key);
    const value = Buffer.from(kv.value);
    if (key.length > 0) key[0]! += 1;
    if (value.length > 0) value[0]! += 1;
    return { ...kv, key, value };
  });
}

/** The suite's three members with `flag`, holding foo0..foo9 = value(i). */
function suiteWithKeys(flag: string, value: (i: number) => string): () => LocalCluster {
  const suite = suiteCluster({ size: 3, flags: [flag] });
  before(async () => {
    const eps = suite().members.map(addressOf).join(",");
    for (let i = 0; i < 10; i++) await etcdctl(eps, ["put", `foo${i}`, value(i)]);
  });
  return suite;
}

describe("--experimental-initial-corrupt-check", {
  timeout: 180_000,
  skip: haveEtcdctl ? false : "etcdctl not installed",
}, () => {
  const suite = suiteWithKeys("--experimental-initial-corrupt-check", (i) => `v${i}`);

  it("refuses to start a member whose data differs from its peers', as etcd, with auth on", async () => {
    const cluster = suite();
    // Every member has applied every put (bounded wait).
    for (let attempt = 0; ; attempt++) {
      const revisions = await Promise.all(
        cluster.members.map(async (m) => {
          const out = await etcdctl(addressOf(m), ["endpoint", "status", "-w", "json"]);
          return /"revision":(\d+)/.exec(out)![1];
        }),
      );
      if (new Set(revisions).size === 1) break;
      assert.ok(attempt < 50, `members never caught up: ${revisions.join(",")}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const m = cluster.members[0]!;
    const status = await etcdctl(addressOf(m), ["endpoint", "status", "-w", "json"]);
    const id = BigInt(/"member_id":(\d+)/.exec(status)![1]!);
    // Auth on: a client's Maintenance.HashKV is root's now, and the check holds no credentials;
    // it asks its peers on their peer port as etcd does, so it still sees them.
    const eps = cluster.members.map(addressOf).join(",");
    for (const args of [
      ["user", "add", "root:root-password"],
      ["role", "add", "root"],
      ["user", "grant-role", "root", "root"],
      ["auth", "enable"],
    ])
      await etcdctl(eps, args);

    // Intact: the check passes, having heard both peers, and the member serves.
    await cluster.stop(m);
    assert.equal(await cluster.startUntilServingOrExit(m), "ready");
    assert.match(m.output, /initial corruption checking passed/);
    assert.doesNotMatch(m.output, /cannot fetch hash from remote peer/);
    await cluster.stop(m);

    await corruptValues(m.dataDir);
    assert.deepEqual(await cluster.startUntilServingOrExit(m), { code: 1, signal: null });
    assert.match(
      m.output,
      new RegExp(`etcdmain: ${id.toString(16).padStart(16, "0")} found data inconsistency with peers`),
    );
    assert.doesNotMatch(m.output, /ready to serve client requests/);
  });
});

describe("--experimental-corrupt-check-time", {
  // The whole suite: its tests take 20-70 s each on a loaded 2-core machine.
  timeout: 240_000,
  skip: haveEtcdctl ? false : "etcdctl not installed",
}, () => {
  const suite = suiteWithKeys("--experimental-corrupt-check-time=1s", (i) => `value-${i}`);

  it("raises CORRUPT once a follower's stored value differs, and not before", async () => {
    const cluster = suite();
    const eps = cluster.members.map(addressOf).join(",");
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
