// gRPC's health service (grpc.health.v1.Health, what grpc_health_probe, Kubernetes' gRPC probes
// and Envoy ask) on a member's client port, against a real etcd 3.4 and our member alike: Check
// of all services ("") is SERVING, another service NOT_FOUND "unknown service"; Watch sends
// the status now (SERVICE_UNKNOWN for an unknown service) and stays open. Ours also says
// NOT_SERVING to its watchers as it stops, and ends their streams instead of holding the
// shutdown (etcd 3.4's transport just closes).
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { describe, test } from "node:test";
import { healthpb, ServingStatus } from "@etcd-ts/api";
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { addressOf, LocalCluster } from "./local-cluster.js";

const ETCD = "/usr/bin/etcd";

interface Outcome {
  all: string;
  kv: string;
  /** What a Watch had received 500 ms after it opened (an end would show as "ended ..."). */
  watchAll: string;
  watchUnknown: string;
}

const statusName = (s: ServingStatus) => ServingStatus[s] ?? String(s);

async function session(binary: string | undefined): Promise<{ outcome: Outcome; onStop: string[] }> {
  const cluster = await LocalCluster.start({ size: 1, ...(binary ? { binary } : {}) });
  const client = new healthpb.HealthClient(addressOf(cluster.members[0]!), credentials.createInsecure());
  const check = (service: string) =>
    new Promise<string>((resolve) =>
      client.check({ service }, new Metadata(), { deadline: Date.now() + 5_000 }, (err, res) =>
        resolve(err ? `${err.code} ${err.details}` : statusName(res.status)),
      ),
    );
  const watch = (service: string, seen: string[]) => {
    const call = client.watch({ service });
    call.on("data", (res: healthpb.HealthCheckResponse) => seen.push(statusName(res.status)));
    call.on("error", (err: ServiceError) => seen.push(`ended ${err.code}`));
    call.on("end", () => seen.push("ended"));
    return call;
  };
  try {
    await cluster.agreedLeader();
    const all: string[] = [];
    const unknown: string[] = [];
    watch("", all);
    const unknownCall = watch("etcdserverpb.KV", unknown);
    await new Promise((r) => setTimeout(r, 500));
    const outcome: Outcome = {
      all: await check(""),
      kv: await check("etcdserverpb.KV"),
      watchAll: all.join(","),
      watchUnknown: unknown.join(","),
    };
    unknownCall.cancel();
    // What a watcher sees while the member stops: the stop must not wait on the open stream.
    const startedAt = Date.now();
    await cluster.stop(cluster.members[0]!);
    assert.ok(Date.now() - startedAt < 10_000, "the member stops with a health Watch open");
    for (let i = 0; i < 50 && !all.some((s) => s.startsWith("ended")); i++)
      await new Promise((r) => setTimeout(r, 100));
    return { outcome, onStop: all.slice(1) };
  } finally {
    client.close();
    await cluster.close();
  }
}

const EXPECTED: Outcome = {
  all: "SERVING",
  kv: "5 unknown service",
  watchAll: "SERVING",
  watchUnknown: "SERVICE_UNKNOWN",
};

describe("grpc.health.v1 on a member's client port", { timeout: 120_000 }, () => {
  test("real etcd 3.4 (the reference)", {
    skip: existsSync(ETCD) ? false : "etcd not installed",
  }, async () => {
    const { outcome } = await session(ETCD);
    assert.deepEqual(outcome, EXPECTED);
  });

  test("our member, the same; NOT_SERVING to its watchers as it stops", async () => {
    const { outcome, onStop } = await session(undefined);
    assert.deepEqual(outcome, EXPECTED);
    assert.equal(onStop[0], "NOT_SERVING");
    assert.match(onStop[1] ?? "open", /^ended/);
  });
});
