// --experimental-initial-corrupt-check, as etcd's TestEtcdCorruptHash: a member of three whose
// stored values were altered offline refuses to start with etcd's message; with its data intact
// it starts (the check passes), and with the check off the altered member starts too.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { alterStoredKeyValues } from "./corrupt-at-rest.fixture.js";
import { etcdctl, haveEtcdctl } from "./etcdctl.fixture.js";
import { addressOf, LocalCluster } from "./local-cluster.js";

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

describe("--experimental-initial-corrupt-check", {
  timeout: 180_000,
  skip: haveEtcdctl ? false : "etcdctl not installed",
}, () => {
  let cluster: LocalCluster;

  before(async () => {
    cluster = await LocalCluster.start({ size: 3, flags: ["--experimental-initial-corrupt-check"] });
  });
  after(async () => {
    await cluster?.close();
  });

  it("refuses to start a member whose data differs from its peers', as etcd", async () => {
    const eps = cluster.members.map(addressOf).join(",");
    for (let i = 0; i < 10; i++) await etcdctl(eps, ["put", `foo${i}`, `v${i}`]);
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

    // Intact: the check passes and the member serves.
    await cluster.stop(m);
    assert.equal(await cluster.startUntilServingOrExit(m), "ready");
    assert.match(m.output, /initial corruption checking passed/);
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
