// The launcher itself, on one real member: what the chaos suite and the fault tests rely on.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { etcdctl, haveEtcdctl } from "./etcdctl.fixture.js";
import { addressOf, LocalCluster } from "./local-cluster.js";
import { suiteCluster } from "./suite-clusters.fixture.js";

describe("LocalCluster", { timeout: 120_000, skip: haveEtcdctl ? false : "etcdctl not installed" }, () => {
  const suite = suiteCluster({ size: 1, logFiles: true });

  it("pauses a member (it stops answering) and resumes it (it answers again)", async () => {
    const cluster = suite();
    const m = cluster.members[0]!;
    cluster.pause(m);
    assert.equal(m.paused, true);
    await assert.rejects(etcdctl(addressOf(m), ["--command-timeout=1s", "get", "k"]));
    assert.equal(await cluster.leader(500), undefined, "a paused member is not asked");
    cluster.resume(m);
    assert.equal(m.paused, false);
    assert.equal((await etcdctl(addressOf(m), ["put", "k", "v"])).trim(), "OK");
    assert.equal(await cluster.leader(), m);
  });

  it("records a member that dies on its own as unexpected, and one it stops as expected", async () => {
    const cluster = suite();
    const m = cluster.members[0]!;
    const before = cluster.exits.length;
    const exit = new Promise((resolve) => cluster.once("exit", resolve));
    process.kill(m.child!.pid!, "SIGKILL");
    assert.deepEqual(await exit, cluster.exits[before]);
    assert.equal(cluster.exits[before]!.unexpected, true);
    assert.equal(cluster.exits[before]!.signal, "SIGKILL");
    assert.equal(m.child, undefined);

    await cluster.restart(m);
    assert.equal(await cluster.stop(m), "SIGTERM");
    assert.equal(cluster.exits.length, before + 2);
    assert.equal(cluster.exits[before + 1]!.unexpected, false);
    // Both starts are in the member's log file, each with its command line.
    const log = await readFile(m.logFile!, "utf8");
    assert.equal(log.match(/==== .* starting: /g)?.length, 2);
    assert.match(log, /ready to serve client requests/);
  });

  it("startUntilServingOrExit: a member that refuses to start gives its exit; one that serves, ready", async () => {
    const cluster = suite();
    const m = cluster.members[0]!;
    const refused = await cluster.startUntilServingOrExit(m, ["--no-such-flag"]);
    assert.notEqual(refused, "ready");
    assert.notEqual((refused as { code: number | null }).code, 0);
    assert.match(m.output, /no-such-flag/);
    assert.equal(await cluster.startUntilServingOrExit(m), "ready");
    assert.equal(await cluster.metric(m, "etcd_server_has_leader"), 1);
  });

  it("keeps counters of a member that exits on its own, or is stopped paused, as of their last reading", async () => {
    const PUTS = "etcd_mvcc_put_total";
    const cluster = await LocalCluster.start({ size: 1, countersAcrossRestarts: [PUTS] });
    try {
      const m = cluster.members[0]!;
      const put = async (n: number) => {
        for (let i = 0; i < n; i++) await etcdctl(addressOf(m), ["put", `k${i}`, "v"]);
      };
      await put(3);
      await cluster.sampleCounters();
      const exited = new Promise((resolve) => cluster.once("exit", resolve));
      process.kill(m.child!.pid!, "SIGKILL"); // on its own, as under a full disk: no reading at the end
      await exited;
      await cluster.restart(m);
      await put(2);
      assert.equal(await cluster.counterTotal(PUTS), 5, "3 from the process that died, 2 from this one");
      assert.equal(cluster.sampledExits, 1);

      cluster.pause(m);
      await cluster.stop(m, "SIGKILL"); // paused: it cannot be read at its stop
      await cluster.restart(m);
      assert.equal(await cluster.counterTotal(PUTS), 5);
      assert.equal(cluster.sampledExits, 2);
      await cluster.stop(m);
      assert.equal(await cluster.counterTotal(PUTS), 5, "read at its stop");
      assert.equal(cluster.sampledExits, 2);
    } finally {
      await cluster.close();
    }
  });
});
