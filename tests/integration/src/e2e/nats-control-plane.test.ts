// The NATS control plane end to end: three members and a gateway, all given a real
// nats-server. A leader announcement moves the gateway's writes before any probe could (the
// probe period is set to 30 s); then NATS is SIGKILLed mid-run, the leader is SIGKILLed under
// load, and polling must carry every call issued after the kill; NATS restarted, the members
// publish and the gateway hears them again.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { NatsServerProcess } from "@etcd-ts/events";
import { EtcdEndpoint } from "../cluster/etcd-client.js";
import { etcdctl, Stack, sleep } from "./stack.js";

/** The value of one series in Prometheus text (0 when absent). */
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let total = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (wanted.every((w) => line.includes(w))) total += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}

describe("NATS control plane through the gateway", { timeout: 240_000 }, () => {
  let nats: NatsServerProcess;
  let stack: Stack;
  const clients: EtcdEndpoint[] = [];

  const gatewayMetric = async (name: string, labels: Record<string, string> = {}) =>
    metric(await (await fetch(`${stack.jsonUrl}/metrics`)).text(), name, labels);

  /** Polls the gateway's metrics until `predicate` holds (bounded). */
  async function untilMetric(what: string, predicate: () => Promise<boolean>, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await predicate())) {
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}\n${stack.gatewayOutput.text.slice(-3000)}`);
      await sleep(100);
    }
  }

  /** Moves leadership to a running member other than the leader; returns the target's hex ID. */
  async function transferLeadership(): Promise<string> {
    const { idHex: from } = await stack.findLeader();
    const out = (await etcdctl(stack.memberEndpoints, ["endpoint", "status", "-w", "fields"])).stdout;
    const ids = out
      .split("\n")
      .filter((l) => l.startsWith('"MemberID"'))
      .map((l) => BigInt(l.split(":")[1]!.trim()).toString(16));
    const target = ids.find((id) => id !== from)!;
    const moved = await etcdctl(stack.memberEndpoints, ["move-leader", target]);
    assert.equal(moved.code, 0, moved.stderr);
    return target;
  }

  before(async () => {
    nats = await NatsServerProcess.start();
    const natsFlag = `--nats-url=${nats.url}`;
    // A 30 s probe period: within a test, only an announcement (or a failed call) moves routing.
    stack = await Stack.start([natsFlag], {}, [natsFlag, "--refresh-interval-ms=30000"]);
    await untilMetric(
      "the gateway to connect to NATS",
      async () => (await gatewayMetric("etcd_gateway_nats_connected")) === 1,
    );
  });
  after(async () => {
    for (const c of clients) c.close();
    await stack?.close();
    await nats?.stop();
  });

  test("a leadership transfer announced over NATS moves writes to the new leader before any probe", async () => {
    const announced = await gatewayMetric("etcd_gateway_leader_announcements_total");
    const target = await transferLeadership();
    await untilMetric(
      "the announcement",
      async () => (await gatewayMetric("etcd_gateway_leader_announcements_total")) > announced,
    );
    const gateway = new EtcdEndpoint(stack.gatewayAddr);
    clients.push(gateway);
    const before = await gatewayMetric("etcd_gateway_requests_total", {
      method: "Put",
      member: target,
      code: "OK",
    });
    await gateway.put("nats/after-transfer", "v", 5_000);
    // Without the announcement the gateway would still send it to the old leader (which
    // forwards it): the member label says who answered.
    assert.equal(
      await gatewayMetric("etcd_gateway_requests_total", { method: "Put", member: target, code: "OK" }),
      before + 1,
    );
  });

  test("nats-server killed mid-run: a leader SIGKILL under load fails nothing issued after it; NATS back, events flow again", async (t) => {
    const gateway = new EtcdEndpoint(stack.gatewayAddr);
    clients.push(gateway);
    const { member: leader } = await stack.findLeader();

    const writes: { startedAt: number; ok: boolean; error?: string }[] = [];
    const reads: { ok: boolean; error?: string }[] = [];
    let stopAt = Date.now() + 60_000; // replaced once the leader is killed
    const writer = async (id: number) => {
      for (let i = 0; i < 5_000 && Date.now() < stopAt; i++) {
        const startedAt = Date.now();
        try {
          await gateway.put(`nats/load/${id}/${i}`, `v${i}`, 8_000);
          writes.push({ startedAt, ok: true });
        } catch (err) {
          writes.push({ startedAt, ok: false, error: (err as Error).message });
        }
      }
    };
    const reader = async () => {
      for (let i = 0; i < 5_000 && Date.now() < stopAt; i++) {
        try {
          await gateway.get("nats/load/1/0", 8_000);
          reads.push({ ok: true });
        } catch (err) {
          reads.push({ ok: false, error: (err as Error).message });
        }
      }
    };
    const workers = [writer(1), writer(2), writer(3), reader()];

    await sleep(1_000);
    await nats.kill();
    await untilMetric(
      "the gateway to see NATS gone",
      async () => (await gatewayMetric("etcd_gateway_nats_connected")) === 0,
    );
    await sleep(500);
    const killedAt = Date.now();
    assert.equal(await stack.cluster.stop(leader, "SIGKILL"), "SIGKILL");
    stopAt = Date.now() + 8_000;
    await Promise.all(workers);

    const failedAfter = writes.filter((w) => !w.ok && w.startedAt >= killedAt);
    const inFlight = writes.filter((w) => !w.ok && w.startedAt < killedAt);
    const summary = `${writes.length} writes (${inFlight.length} in flight at the kill failed), ${reads.length} reads, NATS down throughout`;
    t.diagnostic(summary);
    assert.deepEqual(
      failedAfter.map((w) => w.error),
      [],
      `writes issued after the kill failed: ${summary}`,
    );
    assert.deepEqual(
      reads.filter((r) => !r.ok).map((r) => r.error),
      [],
      "reads failed",
    );
    assert.ok(inFlight.length <= 3, `only the writes in flight on the dead leader may fail: ${summary}`);
    assert.ok(
      writes.some((w) => w.ok && w.startedAt >= killedAt),
      "no write succeeded after the kill",
    );

    // NATS back: every process reconnects on its own, the killed member starts afresh.
    await nats.restart();
    await stack.cluster.restart(leader);
    await untilMetric(
      "the gateway to reconnect",
      async () => (await gatewayMetric("etcd_gateway_nats_connected")) === 1,
    );
    const announced = await gatewayMetric("etcd_gateway_leader_announcements_total");
    await transferLeadership();
    await untilMetric(
      "an announcement after NATS came back",
      async () => (await gatewayMetric("etcd_gateway_leader_announcements_total")) > announced,
    );
  });
});
