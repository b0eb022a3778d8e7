// Require-leader client streams through the gateway (clientv3.WithRequireLeader: metadata
// `hasleader: true`, which kube-apiserver puts on its watches). A gateway cut off from any leader
// ends them with UNAVAILABLE "etcdserver: no leader" after three election timeouts, as a member
// does with its own, so the client moves to another gateway or endpoint instead of waiting for
// events that never come; a new one is refused at once; streams without the key stay open. Once a
// leader is back, require-leader streams are served again. (etcd 3.4's grpc-proxy means to do the
// same but reads the key from the outgoing metadata of its server stream, where it never is: its
// streams stay open.)
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { etcdserverpb } from "@etcd-ts/api";
import { addressOf, LocalCluster } from "@etcd-ts/raft-node";
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import pino from "pino";
import { Gateway } from "./gateway.js";

const ELECTION_MS = 500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const statusText = (err: ServiceError) => `${err.code} ${err.details}`;
const requireLeader = () => {
  const md = new Metadata();
  md.set("hasleader", "true");
  return md;
};

describe("require-leader client streams through the gateway", { timeout: 120_000 }, () => {
  let cluster: LocalCluster;
  let gateway: Gateway;
  let watchClient: etcdserverpb.WatchClient;
  let leaseClient: etcdserverpb.LeaseClient;

  before(async () => {
    cluster = await LocalCluster.start({
      size: 3,
      flags: ["--heartbeat-interval=50", `--election-timeout=${ELECTION_MS}`],
    });
    await cluster.agreedLeader();
    gateway = await Gateway.start({
      endpoints: cluster.members.map(addressOf),
      listenAddr: "127.0.0.1:0",
      refreshIntervalMs: 200,
      electionTimeoutMs: ELECTION_MS,
      keepAliveReuseMs: 0,
      logger: pino({ level: "silent" }),
    });
    const target = `127.0.0.1:${gateway.grpcPort}`;
    watchClient = new etcdserverpb.WatchClient(target, credentials.createInsecure());
    leaseClient = new etcdserverpb.LeaseClient(target, credentials.createInsecure());
  });

  after(async () => {
    watchClient?.close();
    leaseClient?.close();
    await gateway?.stop(1_000);
    await cluster?.close();
  });

  /** Opens a watch on `key`; `ended` is how the stream ended, once it has. */
  const openWatch = (key: string, md: Metadata) => {
    const state = { ended: undefined as string | undefined };
    const call = watchClient.watch(md);
    call.on("error", (err: ServiceError) => {
      state.ended ??= statusText(err);
    });
    call.on("end", () => {
      state.ended ??= "end";
    });
    const created = new Promise<void>((resolve) =>
      call.on("data", (r: etcdserverpb.WatchResponse) => {
        if (r.created) resolve();
      }),
    );
    call.write(etcdserverpb.WatchRequest.fromPartial({ createRequest: { key: Buffer.from(key) } }));
    return { call, created, state };
  };

  const waitUntil = async (what: string, check: () => boolean, timeoutMs = 15_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(50);
    }
  };

  it("ends them when no member knows a leader, refuses new ones, and serves them again once one is back", async () => {
    const rl = openWatch("rl", requireLeader());
    const plain = openWatch("plain", new Metadata());
    await Promise.all([rl.created, plain.created]);

    const granted = await new Promise<etcdserverpb.LeaseGrantResponse>((resolve, reject) =>
      leaseClient.leaseGrant({ TTL: 60n, ID: 0n }, (err, r) => (err ? reject(err) : resolve(r))),
    );
    const keepAlive = leaseClient.leaseKeepAlive(requireLeader());
    const keepAliveState = { ended: undefined as string | undefined };
    keepAlive.on("error", (err: ServiceError) => {
      keepAliveState.ended ??= statusText(err);
    });
    keepAlive.on("end", () => {
      keepAliveState.ended ??= "end";
    });
    const answered = new Promise<void>((resolve) => keepAlive.once("data", () => resolve()));
    keepAlive.write({ ID: granted.ID });
    await answered;

    // Two members stopped: the third is alone, without a leader from its next election timeout.
    const stopped = cluster.members.slice(1);
    const stoppedAt = Date.now();
    await Promise.all(stopped.map((m) => cluster.stop(m)));
    await waitUntil("the require-leader streams to end", () => !!rl.state.ended && !!keepAliveState.ended);
    assert.equal(rl.state.ended, "14 etcdserver: no leader");
    assert.equal(keepAliveState.ended, "14 etcdserver: no leader");
    // Not before three election timeouts without a leader (the first of them after the stops).
    assert.ok(Date.now() - stoppedAt >= 3 * ELECTION_MS, `ended after ${Date.now() - stoppedAt} ms`);
    assert.equal(plain.state.ended, undefined, "a watch without hasleader stays open");
    // The gateway knows it has no leader (it used to keep the last one it had seen).
    assert.equal(gateway.tracker.snapshot().leaderId, undefined);

    // A new require-leader stream is refused at once; one without the key is let in.
    const refused = openWatch("rl2", requireLeader());
    await waitUntil("the new require-leader watch to be refused", () => !!refused.state.ended, 2_000);
    assert.equal(refused.state.ended, "14 etcdserver: no leader");

    // A leader again: require-leader streams are served.
    await Promise.all(stopped.map((m) => cluster.restart(m)));
    await cluster.agreedLeader();
    await waitUntil(
      "the gateway to know the leader",
      () => gateway.tracker.snapshot().leaderId !== undefined,
    );
    const again = openWatch("rl3", requireLeader());
    await again.created;
    assert.equal(again.state.ended, undefined);
    assert.equal(plain.state.ended, undefined);
    again.call.cancel();
    plain.call.cancel();
    keepAlive.cancel();
  });
});
