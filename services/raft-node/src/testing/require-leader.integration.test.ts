// etcd's require-leader calls (clientv3.WithRequireLeader: metadata `hasleader: true`, which
// kube-apiserver puts on its watches), against a real etcd 3.4 and our members alike: a member
// left alone (its two peers stopped) ends an open require-leader watch and keep-alive stream
// with UNAVAILABLE "etcdserver: no leader" after a few election timeouts, and refuses a new
// require-leader call at once; a watch opened without the key stays open, and a serializable
// Range without it is still answered.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { describe, test } from "node:test";
import { etcdserverpb } from "@etcd-ts/api";
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { addressOf, LocalCluster } from "./local-cluster.js";

const ETCD = "/usr/bin/etcd";
/** Short election timeouts: etcd ends the streams after 3 of them without a leader. */
const FLAGS = ["--heartbeat-interval=50", "--election-timeout=500"];

interface Outcome {
  /** How each stream ended ("open" if it had not, 10 s after the peers stopped). */
  requireLeaderWatch: string;
  requireLeaderKeepAlive: string;
  plainWatch: string;
  /** A require-leader Range after that, and a plain serializable one. */
  requireLeaderRange: string;
  plainRange: string;
}

const statusText = (err: ServiceError) => `${err.code} ${err.details}`;

async function session(binary: string | undefined): Promise<Outcome> {
  const cluster = await LocalCluster.start({ size: 3, flags: FLAGS, ...(binary ? { binary } : {}) });
  const lonely = cluster.members[0]!;
  const channel = addressOf(lonely);
  const watchClient = new etcdserverpb.WatchClient(channel, credentials.createInsecure());
  const leaseClient = new etcdserverpb.LeaseClient(channel, credentials.createInsecure());
  const kv = new etcdserverpb.KVClient(channel, credentials.createInsecure());
  const requireLeader = () => {
    const md = new Metadata();
    md.set("hasleader", "true");
    return md;
  };
  try {
    await cluster.agreedLeader();
    const ended: Record<string, string> = {};
    const watch = (name: string, md: Metadata) => {
      const call = watchClient.watch(md);
      call.on("error", (err: ServiceError) => {
        ended[name] ??= statusText(err);
      });
      call.on("end", () => {
        ended[name] ??= "end";
      });
      const created = new Promise<void>((resolve) =>
        call.on("data", (r: etcdserverpb.WatchResponse) => {
          if (r.created) resolve();
        }),
      );
      call.write(etcdserverpb.WatchRequest.fromPartial({ createRequest: { key: Buffer.from(name) } }));
      return { call, created };
    };
    const rl = watch("requireLeaderWatch", requireLeader());
    const plain = watch("plainWatch", new Metadata());
    await Promise.all([rl.created, plain.created]);

    const granted = await new Promise<etcdserverpb.LeaseGrantResponse>((resolve, reject) =>
      leaseClient.leaseGrant({ TTL: 60n, ID: 0n }, (err, r) => (err ? reject(err) : resolve(r))),
    );
    const keepAlive = leaseClient.leaseKeepAlive(requireLeader());
    keepAlive.on("error", (err: ServiceError) => {
      ended.requireLeaderKeepAlive ??= statusText(err);
    });
    keepAlive.on("end", () => {
      ended.requireLeaderKeepAlive ??= "end";
    });
    const answered = new Promise<void>((resolve) => keepAlive.once("data", () => resolve()));
    keepAlive.write({ ID: granted.ID });
    await answered;

    // Alone: no leader from the next election timeout on.
    await Promise.all(cluster.members.slice(1).map((m) => cluster.stop(m)));
    for (let i = 0; i < 100 && (!ended.requireLeaderWatch || !ended.requireLeaderKeepAlive); i++)
      await new Promise((r) => setTimeout(r, 100));

    const range = (md: Metadata) =>
      new Promise<string>((resolve) =>
        kv.range(
          etcdserverpb.RangeRequest.fromPartial({ key: Buffer.from("k"), serializable: true }),
          md,
          { deadline: Date.now() + 5_000 },
          (err) => resolve(err ? statusText(err) : "ok"),
        ),
      );
    const outcome: Outcome = {
      requireLeaderWatch: ended.requireLeaderWatch ?? "open",
      requireLeaderKeepAlive: ended.requireLeaderKeepAlive ?? "open",
      plainWatch: ended.plainWatch ?? "open",
      requireLeaderRange: await range(requireLeader()),
      plainRange: await range(new Metadata()),
    };
    rl.call.cancel();
    plain.call.cancel();
    keepAlive.cancel();
    return outcome;
  } finally {
    watchClient.close();
    leaseClient.close();
    kv.close();
    await cluster.close();
  }
}

const EXPECTED: Outcome = {
  requireLeaderWatch: "14 etcdserver: no leader",
  requireLeaderKeepAlive: "14 etcdserver: no leader",
  plainWatch: "open",
  requireLeaderRange: "14 etcdserver: no leader",
  plainRange: "ok",
};

describe("require-leader calls on a member that lost its leader", { timeout: 120_000 }, () => {
  test("real etcd 3.4 (the reference)", {
    skip: existsSync(ETCD) ? false : "etcd not installed",
  }, async () => {
    assert.deepEqual(await session(ETCD), EXPECTED);
  });

  test("our members, the same", async () => {
    assert.deepEqual(await session(undefined), EXPECTED);
  });
});
