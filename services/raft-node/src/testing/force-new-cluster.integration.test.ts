// --force-new-cluster (etcd's meaning): a member of three, restarted with it while the others are
// down, comes back as a one-member cluster with all its data, serves writes alone, and stays
// that cluster when restarted without the flag.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { etcdctl, haveEtcdctl } from "./etcdctl.fixture.js";
import { addressOf } from "./local-cluster.js";
import { suiteCluster } from "./suite-clusters.fixture.js";

describe("--force-new-cluster", {
  timeout: 180_000,
  skip: haveEtcdctl ? false : "etcdctl not installed",
}, () => {
  const suite = suiteCluster({ size: 3 });

  it("restarts one member as a single-member cluster keeping its data", async () => {
    const cluster = suite();
    const eps = cluster.members.map(addressOf).join(",");
    for (let i = 0; i < 5; i++) await etcdctl(eps, ["put", `k${i}`, `v${i}`]);
    const m = cluster.members[0]!;
    const before = await etcdctl(addressOf(m), ["endpoint", "status", "-w", "json"]);
    const id = BigInt(/"member_id":(\d+)/.exec(before)![1]!);
    for (const member of cluster.members) await cluster.stop(member);

    assert.equal(await cluster.startUntilServingOrExit(m, ["--force-new-cluster"]), "ready");
    const list = await etcdctl(addressOf(m), ["member", "list"]);
    assert.equal(list.trim().split("\n").length, 1, list);
    assert.match(list, new RegExp(`^${id.toString(16)}, started, m1,`));
    assert.equal(
      await etcdctl(addressOf(m), ["get", "k", "--prefix", "--print-value-only"]),
      "v0\nv1\nv2\nv3\nv4\n",
    );
    assert.equal((await etcdctl(addressOf(m), ["put", "after", "x"])).trim(), "OK");

    // Without the flag it stays that cluster.
    await cluster.stop(m);
    await cluster.restart(m);
    assert.equal((await etcdctl(addressOf(m), ["member", "list"])).trim().split("\n").length, 1);
    assert.equal(await etcdctl(addressOf(m), ["get", "after", "--print-value-only"]), "x\n");
  });
});
