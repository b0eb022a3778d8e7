// Leader failover seen through the gateway: a bounded write load runs while the leader member
// is SIGKILLed; writes must resume within a few election timeouts, every acknowledged write
// must survive, and the killed member, restarted from its data dir, must catch up.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { MemberProcess } from "@etcd-ts/raft-node";
import { Etcd3 } from "etcd3";
import { EtcdEndpoint } from "../cluster/etcd-client.js";
import { Stack, sleep } from "./stack.js";

const hostPort = (url: string) => url.replace(/^https?:\/\//, "");

interface Ack {
  key: string;
  revision: number;
  startedAt: number;
  doneAt: number;
}

describe("leader failover through the gateway", { timeout: 120_000 }, () => {
  let stack: Stack;
  const endpoints: EtcdEndpoint[] = [];
  const endpoint = (address: string) => {
    const e = new EtcdEndpoint(address);
    endpoints.push(e);
    return e;
  };

  before(async () => {
    stack = await Stack.start();
  });
  after(async () => {
    for (const e of endpoints) e.close();
    await stack?.close();
  });

  const findLeader = async (): Promise<MemberProcess> => (await stack.findLeader()).member;

  test("SIGKILL of the leader under write load: writes resume, no acknowledged write is lost, the member catches up", async (t) => {
    const gateway = endpoint(stack.gatewayAddr);
    const leader = await findLeader();
    t.diagnostic(`leader before the kill: ${leader.name}`);

    // A watch through the gateway over the whole run: the gateway moves it off a dead member
    // from the last delivered revision, so it must see every acknowledged key once, in order.
    const watchClient = new Etcd3({ hosts: `http://${stack.gatewayAddr}` });
    const watched: { key: string; revision: number }[] = [];
    const watcher = await watchClient.watch().prefix("fo/").create();
    watcher.on("put", (kv) => watched.push({ key: kv.key.toString(), revision: Number(kv.mod_revision) }));

    const acks: Ack[] = [];
    const failures: { key: string; error: string; at: number }[] = [];
    let killedAt = Number.POSITIVE_INFINITY;
    let stopAt = Date.now() + 60_000; // replaced once the kill happened
    let seq = 0;
    const writer = async (id: number) => {
      // Bounded: at most 5,000 puts per writer, and never past stopAt.
      for (let i = 0; i < 5_000 && Date.now() < stopAt; i++) {
        const key = `fo/${id}/${String(seq++).padStart(6, "0")}`;
        const startedAt = Date.now();
        try {
          const revision = await gateway.put(key, `v${i}`, 3_000);
          acks.push({ key, revision, startedAt, doneAt: Date.now() });
        } catch (err) {
          failures.push({ key, error: (err as Error).message, at: Date.now() });
        }
      }
    };
    const writers = [writer(1), writer(2), writer(3)];

    await sleep(2_000);
    const acksBeforeKill = acks.length;
    assert.ok(acksBeforeKill > 0, "no write succeeded before the kill");
    killedAt = Date.now();
    const how = await stack.cluster.stop(leader, "SIGKILL");
    assert.equal(how, "SIGKILL");
    stopAt = Date.now() + 6_000;
    await Promise.all(writers);

    const firstAfter = acks.filter((a) => a.startedAt >= killedAt).sort((a, b) => a.doneAt - b.doneAt)[0];
    assert.ok(
      firstAfter,
      `no write issued after the kill succeeded; ${failures.length} failed, last: ${failures.at(-1)?.error}`,
    );
    const failoverMs = firstAfter.doneAt - killedAt;
    const lastFailure = failures.at(-1);
    const summary = `failover: first write issued after the SIGKILL acknowledged ${failoverMs} ms after it; ${acks.length} writes acknowledged (${acksBeforeKill} before the kill), ${failures.length} failed${lastFailure ? ` (${failures.map((f) => `${f.at - killedAt} ms: ${f.error}`).join("; ")})` : ""}`;
    t.diagnostic(summary);
    console.log(summary);
    // Election timeout is 1 s (etcd's default); a few of them plus the gateway's leader probe.
    assert.ok(failoverMs < 10_000, summary);
    // After recovery, writes keep succeeding: the acknowledgements continue to the end of the run.
    const acksAfterRecovery = acks.filter((a) => a.startedAt > firstAfter.doneAt).length;
    assert.ok(acksAfterRecovery > 0, "no further write succeeded after the first one");

    const newLeader = await findLeader();
    assert.notEqual(newLeader.name, leader.name);
    t.diagnostic(`new leader: ${newLeader.name}`);

    // Restart the killed member with the same flags and data dir.
    await stack.cluster.restart(leader);

    // Every acknowledged key is readable through the gateway (one range over the prefix).
    const client = new Etcd3({ hosts: `http://${stack.gatewayAddr}` });
    try {
      const stored = new Set(await client.getAll().prefix("fo/").keys());
      const lost = acks.filter((a) => !stored.has(a.key)).map((a) => a.key);
      assert.deepEqual(lost, [], `${lost.length} acknowledged keys missing`);
      // Revisions are unique per acknowledged write: no two acks share one.
      assert.equal(new Set(acks.map((a) => a.revision)).size, acks.length);
    } finally {
      client.close();
    }

    // The watch saw every acknowledged key exactly once, in revision order.
    const watchDeadline = Date.now() + 10_000;
    const ackedKeys = new Set(acks.map((a) => a.key));
    const seenKeys = () => new Set(watched.map((w) => w.key));
    while ([...ackedKeys].some((k) => !seenKeys().has(k)) && Date.now() < watchDeadline) await sleep(100);
    await watcher.cancel();
    watchClient.close();
    const missed = [...ackedKeys].filter((k) => !seenKeys().has(k));
    assert.deepEqual(missed.slice(0, 10), [], `the watch missed ${missed.length} acknowledged keys`);
    assert.equal(seenKeys().size, watched.length, "the watch delivered a key twice");
    for (let i = 1; i < watched.length; i++) {
      assert.ok(
        (watched[i]?.revision ?? 0) > (watched[i - 1]?.revision ?? 0),
        `watch revisions out of order at ${i}`,
      );
    }
    t.diagnostic(`watch through the gateway: ${watched.length} events, none missed or repeated`);

    // The restarted member catches up: a serializable read against it alone returns the last
    // acknowledged key (the one with the highest revision).
    const lastAck = [...acks].sort((a, b) => b.revision - a.revision)[0] as Ack;
    const restarted = endpoint(hostPort(leader.clientUrl));
    const deadline = Date.now() + 20_000;
    let seen: string | null = null;
    let lastError = "";
    while (seen === null && Date.now() < deadline) {
      try {
        seen = (await restarted.get(lastAck.key, 2_000, { serializable: true })).value;
      } catch (err) {
        lastError = (err as Error).message;
      }
      if (seen === null) await sleep(200);
    }
    assert.notEqual(seen, null, `restarted ${leader.name} never served ${lastAck.key} (${lastError})`);
    const status = await restarted.status(2_000);
    assert.ok(status.revision >= lastAck.revision);
    // And it follows the current leader.
    assert.notEqual(status.leader, "0");
  });
});
