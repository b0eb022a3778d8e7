// The control-plane connection against a real nats-server (Debian's): events round-trip with
// their shapes checked, publishing never blocks and is bounded while NATS is away, and a
// killed-then-restarted server gets the same subscriptions back.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Registry } from "prom-client";
import { ControlPlane } from "./control-plane.js";
import { registerControlPlaneMetrics } from "./control-plane-metrics.js";
import { NatsServerProcess } from "./nats-server.js";
import { type LeaderElected, topics } from "./topics.js";

const CLUSTER = "cdf818194e3a8c32";

function leader(term: number): LeaderElected {
  return {
    clusterId: CLUSTER,
    leaderId: "8e9e05c52164694d",
    term,
    name: "n1",
    clientUrls: [],
    at: Date.now(),
  };
}

/** Resolves when `predicate` holds, polling every 20 ms for at most `ms`. */
async function until(predicate: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("ControlPlane with a real nats-server", { timeout: 60_000 }, () => {
  let nats: NatsServerProcess;
  const planes: ControlPlane[] = [];
  const plane = (name: string, maxBuffered?: number) => {
    const p = ControlPlane.start({
      url: nats.url,
      name,
      ...(maxBuffered === undefined ? {} : { maxBuffered }),
    });
    planes.push(p);
    return p;
  };

  before(async () => {
    nats = await NatsServerProcess.start();
  });
  after(async () => {
    await Promise.all(planes.map((p) => p.close()));
    await nats?.stop();
  });

  test("an event reaches a wildcard subscriber; a malformed one is counted, not delivered", async () => {
    const sub = plane("sub");
    const pub = plane("pub");
    const got: { payload: LeaderElected; subject: string }[] = [];
    sub.subscribe(topics.leader("*"), (payload, subject) => got.push({ payload, subject }));
    await until(() => sub.connected && pub.connected, 10_000, "both connected");
    await sub.request(topics.backupNow, topics.backupNowReply, {}, 200).catch(() => {}); // a round trip: SUB is in place
    pub.publish(topics.leader(CLUSTER), leader(7));
    // Not the shape of a leader event: no leaderId.
    pub.publish({ subject: topics.leader(CLUSTER).subject, decode: () => undefined }, { clusterId: CLUSTER });
    await until(() => got.length === 1 && sub.counters.malformed === 1, 5_000, "one event, one malformed");
    assert.equal(got[0]!.subject, `etcd.${CLUSTER}.leader`);
    assert.equal(got[0]!.payload.term, 7);
  });

  test("the counters are Prometheus metrics, read at scrape time", async () => {
    const pub = plane("metrics");
    const registry = new Registry();
    registerControlPlaneMetrics(registry, pub);
    await until(() => pub.connected, 10_000, "connected");
    pub.publish(topics.leader(CLUSTER), leader(1));
    pub.publish(topics.leader(CLUSTER), leader(2));
    await until(() => pub.counters.published === 2, 5_000, "two published");
    const text = await registry.metrics();
    assert.match(text, /^etcd_ts_control_plane_published_total 2$/m);
    assert.match(text, /^etcd_ts_control_plane_connects_total 1$/m);
    assert.match(text, /^etcd_ts_control_plane_dropped_total 0$/m);
    assert.match(text, /^etcd_ts_control_plane_connected 1$/m);
  });

  test("publishing while NATS is unreachable returns at once and keeps only the newest maxBuffered", async () => {
    const unreachable = ControlPlane.start({ url: "nats://127.0.0.1:1", name: "nowhere", maxBuffered: 3 });
    planes.push(unreachable);
    const started = performance.now();
    for (let term = 1; term <= 5; term++) unreachable.publish(topics.leader(CLUSTER), leader(term));
    assert.ok(performance.now() - started < 50, "publish must not wait for a connection");
    assert.equal(unreachable.counters.dropped, 2);
    assert.equal(unreachable.connected, false);
    await assert.rejects(
      unreachable.request(topics.backupNow, topics.backupNowReply, {}, 1_000),
      /NATS is not connected/,
    );
  });

  test("request/reply: the answer comes back; a request nobody answers times out", async () => {
    const server = plane("responder");
    const client = plane("requester");
    server.reply(
      topics.backupNow,
      async () => ({ ok: false as const, error: "no member answered" }),
      () => ({ ok: false as const, error: "malformed" }),
    );
    await until(() => server.connected && client.connected, 10_000, "both connected");
    let reply: unknown;
    for (let i = 0; i < 50 && reply === undefined; i++) {
      // The responder's SUB may not be registered yet right after connecting.
      reply = await client.request(topics.backupNow, topics.backupNowReply, {}, 500).catch(() => undefined);
    }
    assert.deepEqual(reply, { ok: false, error: "no member answered" });
    await assert.rejects(
      client.request(
        topics.authKeysRotated,
        topics.backupNowReply,
        { keyId: "k", validKeyIds: [], at: 0 },
        300,
      ),
    );
  });

  test("nats-server killed and restarted: disconnected, then reconnected with the same subscriptions", async () => {
    const sub = plane("resub");
    const pub = plane("republish");
    const terms: number[] = [];
    sub.subscribe(topics.leader(CLUSTER), (p) => terms.push(p.term));
    const transitions: boolean[] = [];
    sub.onConnection((c) => transitions.push(c));
    await until(() => sub.connected && pub.connected, 10_000, "both connected");
    for (let i = 0; i < 100 && terms.length === 0; i++) {
      pub.publish(topics.leader(CLUSTER), leader(1));
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(terms.includes(1));

    await nats.kill();
    await until(() => !sub.connected && !pub.connected, 10_000, "both to see the loss");
    pub.publish(topics.leader(CLUSTER), leader(2)); // held while away

    await nats.restart();
    await until(() => sub.connected && pub.connected, 15_000, "both reconnected");
    const before = sub.counters.received;
    for (let i = 0; i < 100 && !terms.includes(3); i++) {
      pub.publish(topics.leader(CLUSTER), leader(3));
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(terms.includes(3), `no event after the restart (received ${sub.counters.received - before})`);
    assert.deepEqual(transitions, [true, false, true]);
    assert.ok(pub.counters.connects >= 2 && sub.counters.connects >= 2);
  });
});
