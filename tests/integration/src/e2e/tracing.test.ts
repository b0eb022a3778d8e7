// One request, one trace across processes: a real OTLP receiver process (packages/telemetry's
// otlp-receiver) takes the OTLP/HTTP protobuf exports of three member processes and a gateway
// process; a Put through the gateway must come back as one trace holding the gateway's spans,
// the leader's propose and apply, and the followers' WAL appends and linked apply.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type OtlpReceiverProcess, type ReceivedSpan, startOtlpReceiverProcess } from "@etcd-ts/telemetry";
import grpc from "@grpc/grpc-js";
import { EtcdctlProcess, etcdctl, Stack, sleep } from "./stack.js";

const backupMain = fileURLToPath(
  new URL(
    import.meta.url.endsWith(".ts")
      ? "../../../../services/backup/src/main.ts"
      : "../../../../services/backup/dist/main.js",
    import.meta.url,
  ),
);

/** etcdserverpb.PutRequest { key = 1; value = 2 }, short fields only. */
function putRequest(key: string, value: string): Buffer {
  const k = Buffer.from(key);
  const v = Buffer.from(value);
  return Buffer.concat([Buffer.from([0x0a, k.length]), k, Buffer.from([0x12, v.length]), v]);
}

describe("tracing across gateway and members", { timeout: 180_000 }, () => {
  let receiver: OtlpReceiverProcess;
  let stack: Stack;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    receiver = await startOtlpReceiverProcess();
    env = receiver.exportingEnv();
    stack = await Stack.start([], {}, [], { env });
  });
  after(async () => {
    await stack?.close();
    receiver?.child.kill("SIGTERM");
  });

  const traceSpans = (traceId: string, complete: (spans: ReceivedSpan[]) => boolean) =>
    receiver.traceSpans(traceId, complete);

  test("a gRPC Put through the gateway is one trace: gateway, leader, followers", async () => {
    const traceId = randomBytes(16).toString("hex");
    const clientSpanId = randomBytes(8).toString("hex");
    const client = new grpc.Client(stack.gatewayAddr, grpc.credentials.createInsecure());
    const metadata = new grpc.Metadata();
    metadata.set("traceparent", `00-${traceId}-${clientSpanId}-01`);
    try {
      await new Promise<Buffer>((resolve, reject) =>
        client.makeUnaryRequest(
          "/etcdserverpb.KV/Put",
          (b: Buffer) => b,
          (b: Buffer) => b,
          putRequest("traced-key", "traced-value"),
          metadata,
          { deadline: Date.now() + 10_000 },
          (err, res) => (err ? reject(err) : resolve(res!)),
        ),
      );
    } finally {
      client.close();
    }

    const memberIds = (spans: ReceivedSpan[], name: string) =>
      new Set(spans.filter((s) => s.name === name).map((s) => s.attributes["etcd.member_id"]));
    const spans = await traceSpans(
      traceId,
      (all) =>
        memberIds(all, "raft.wal_append").size >= 3 &&
        memberIds(all, "etcdserver.apply").size >= 3 &&
        all.some((s) => s.service === "api-gateway" && s.kind === 2) &&
        all.some((s) => s.service === "api-gateway" && s.kind === 3) &&
        all.some((s) => s.service === "raft-node" && s.kind === 2) &&
        all.some((s) => s.name === "etcdserver.propose") &&
        all.some((s) => s.name === "gateway.route"),
    );
    const summary = spans
      .map((s) => `${s.service} ${s.name} ${s.attributes["etcd.member_id"] ?? ""}`)
      .join("\n");
    assert.ok(spans.length > 0, "no span of the trace reached the receiver");
    for (const s of spans) assert.equal(s.traceId, traceId);

    const gatewayServer = spans.find((s) => s.service === "api-gateway" && s.kind === 2);
    assert.ok(gatewayServer, `no gateway server span:\n${summary}`);
    assert.equal(gatewayServer.name, "etcdserverpb.KV/Put");
    assert.equal(gatewayServer.parentSpanId, clientSpanId);
    const route = spans.find((s) => s.name === "gateway.route");
    assert.equal(route?.parentSpanId, gatewayServer.spanId);
    assert.equal(route?.attributes["etcd.route_target"], "leader");
    const upstream = spans.find((s) => s.service === "api-gateway" && s.kind === 3);
    assert.ok(upstream, `no gateway upstream span:\n${summary}`);
    assert.equal(upstream.parentSpanId, gatewayServer.spanId);

    const memberServer = spans.find((s) => s.service === "raft-node" && s.kind === 2);
    assert.ok(memberServer, `no member server span:\n${summary}`);
    assert.equal(
      memberServer.parentSpanId,
      upstream.spanId,
      "the member's span continues the gateway's call",
    );
    const propose = spans.find((s) => s.name === "etcdserver.propose");
    assert.ok(propose, `no propose span:\n${summary}`);
    assert.equal(propose.parentSpanId, memberServer.spanId);
    const leader = propose.attributes["etcd.member_id"];
    assert.equal(upstream.attributes["etcd.member_id"], leader, "the gateway sent the Put to the proposer");

    const wal = spans.filter((s) => s.name === "raft.wal_append");
    assert.ok(
      memberIds(spans, "raft.wal_append").size >= 2,
      `WAL appends from fewer than two members:\n${summary}`,
    );
    for (const w of wal) assert.equal(w.parentSpanId, propose.spanId);

    const applies = spans.filter((s) => s.name === "etcdserver.apply");
    const leaderApply = applies.find((s) => s.attributes["etcd.member_id"] === leader);
    assert.ok(leaderApply, `no apply span on the leader:\n${summary}`);
    assert.equal(leaderApply.parentSpanId, propose.spanId);
    const followerApply = applies.find((s) => s.attributes["etcd.member_id"] !== leader);
    assert.ok(followerApply, `no apply span on a follower:\n${summary}`);
    assert.ok(
      followerApply.links.some((l) => l.traceId === traceId && l.spanId === propose.spanId),
      "a follower's apply links to the proposer's span",
    );
  });

  test("a LeaseGrant and a user change are traced down to their proposals and applies", async () => {
    const client = new grpc.Client(stack.gatewayAddr, grpc.credentials.createInsecure());
    // Each call with a traceparent of its own: the trace id names the call.
    const call = async (path: string, body: Buffer): Promise<string> => {
      const traceId = randomBytes(16).toString("hex");
      const metadata = new grpc.Metadata();
      metadata.set("traceparent", `00-${traceId}-${randomBytes(8).toString("hex")}-01`);
      await new Promise<Buffer>((resolve, reject) =>
        client.makeUnaryRequest(
          path,
          (b: Buffer) => b,
          (b: Buffer) => b,
          body,
          metadata,
          { deadline: Date.now() + 10_000 },
          (err, res) => (err ? reject(err) : resolve(res!)),
        ),
      );
      return traceId;
    };
    try {
      // LeaseGrantRequest{TTL: 60}; AuthRoleAddRequest{name}.
      const grant = await call("/etcdserverpb.Lease/LeaseGrant", Buffer.from([0x08, 60]));
      const role = Buffer.from(`traced-role-${randomBytes(3).toString("hex")}`);
      const roleAdd = await call(
        "/etcdserverpb.Auth/RoleAdd",
        Buffer.concat([Buffer.from([0x0a, role.length]), role]),
      );
      for (const [traceId, method, kind] of [
        [grant, "etcdserverpb.Lease/LeaseGrant", "LeaseGrant"],
        [roleAdd, "etcdserverpb.Auth/RoleAdd", "AuthRoleAdd"],
      ] as const) {
        const spans = await traceSpans(
          traceId,
          (all) =>
            all.filter((s) => s.name === "etcdserver.apply").length >= 3 &&
            all.some((s) => s.name === "etcdserver.propose"),
        );
        const summary = spans
          .map((s) => `${s.service} ${s.name} ${s.attributes["etcd.member_id"] ?? ""}`)
          .join("\n");
        const server = spans.find((s) => s.service === "raft-node" && s.kind === 2);
        assert.equal(server?.name, method, `no member server span:\n${summary}`);
        const propose = spans.find((s) => s.name === "etcdserver.propose");
        assert.ok(propose, `no propose span under ${method}:\n${summary}`);
        assert.equal(propose.parentSpanId, server.spanId);
        assert.equal(propose.attributes["etcd.entry_kind"], kind);
        const applies = spans.filter((s) => s.name === "etcdserver.apply");
        assert.equal(new Set(applies.map((a) => a.attributes["etcd.member_id"])).size, 3, summary);
      }
    } finally {
      client.close();
    }
  });

  test("the JSON gateway continues the caller's traceparent header; reads show ReadIndex", async () => {
    const traceId = randomBytes(16).toString("hex");
    const parent = randomBytes(8).toString("hex");
    const res = await fetch(`${stack.jsonUrl}/v3/kv/range`, {
      method: "POST",
      headers: { "content-type": "application/json", traceparent: `00-${traceId}-${parent}-01` },
      body: JSON.stringify({ key: Buffer.from("traced-key").toString("base64") }),
    });
    assert.equal(res.status, 200);
    const spans = await traceSpans(
      traceId,
      (all) =>
        all.some((s) => s.name === "etcdserver.wait_applied") &&
        all.some((s) => s.name === "POST /v3/kv/range"),
    );
    const summary = spans.map((s) => `${s.service} ${s.name}`).join("\n");
    const http = spans.find((s) => s.service === "api-gateway" && s.name === "POST /v3/kv/range");
    assert.ok(http, `no JSON gateway span:\n${summary}`);
    assert.equal(http.parentSpanId, parent);
    const readIndex = spans.find((s) => s.name === "etcdserver.read_index");
    const waitApplied = spans.find((s) => s.name === "etcdserver.wait_applied");
    assert.ok(readIndex && waitApplied, `no ReadIndex spans:\n${summary}`);
    assert.equal(readIndex.parentSpanId, waitApplied.parentSpanId);
    assert.ok(BigInt(waitApplied.startTimeUnixNano) >= BigInt(readIndex.endTimeUnixNano) - 1_000_000n);
  });

  test("the backup service traces its snapshot work; the member's Snapshot call joins the trace", async () => {
    const dir = await mkdtemp(join(tmpdir(), "traced-backup-"));
    try {
      const execArgv = process.execArgv.filter((a) => !a.startsWith("--test"));
      const endpoints = stack.cluster.members.map((m) => m.clientUrl.replace("http://", "")).join(",");
      const child = spawn(
        process.execPath,
        [...execArgv, backupMain, "now", "--endpoints", endpoints, "--dir", join(dir, "store")],
        { stdio: ["ignore", "pipe", "pipe"], env: { ...env, OTEL_SERVICE_NAME: "backup-under-test" } },
      );
      let output = "";
      child.stdout?.on("data", (c: Buffer) => {
        output += c.toString();
      });
      child.stderr?.on("data", (c: Buffer) => {
        output += c.toString();
      });
      const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
      assert.equal(code, 0, output);

      // The backup process flushed its spans before exiting; the member exports within 100 ms.
      const res = await fetch(`${receiver.url}/api/spans`);
      const take = ((await res.json()) as { spans: ReceivedSpan[] }).spans.find(
        (s) => s.name === "backup.take" && s.service === "backup-under-test",
      );
      assert.ok(take, "no backup.take span");
      const spans = await traceSpans(take.traceId, (all) =>
        all.some((s) => s.name === "etcdserverpb.Maintenance/Snapshot"),
      );
      const summary = spans.map((s) => `${s.service} ${s.name}`).join("\n");
      const snapshot = spans.find((s) => s.name === "backup.snapshot");
      assert.ok(snapshot && spans.some((s) => s.name === "backup.pick_source"), summary);
      assert.equal(snapshot.parentSpanId, take.spanId);
      assert.ok(Number(snapshot.attributes["backup.bytes"]) > 0);
      const served = spans.find((s) => s.name === "etcdserverpb.Maintenance/Snapshot");
      assert.ok(served, `the member's Snapshot span is not in the backup's trace:\n${summary}`);
      assert.equal(served.service, "raft-node");
      assert.equal(served.parentSpanId, snapshot.spanId);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  /** Every span received so far once `complete` holds for them (bounded wait). */
  async function allSpans(complete: (spans: ReceivedSpan[]) => boolean): Promise<ReceivedSpan[]> {
    let spans: ReceivedSpan[] = [];
    for (let i = 0; i < 100; i++) {
      spans = ((await (await fetch(`${receiver.url}/api/spans`)).json()) as { spans: ReceivedSpan[] }).spans;
      if (complete(spans)) return spans;
      await sleep(200);
    }
    return spans;
  }

  test("a lease expiry is a trace of its own; the revoke's apply spans link to it", async () => {
    const granted = await etcdctl(stack.gatewayAddr, ["lease", "grant", "2"]);
    assert.equal(granted.code, 0, granted.stderr);
    const id = /lease ([0-9a-f]+) granted/.exec(granted.stdout)?.[1];
    assert.ok(id, granted.stdout);
    const expiry = (spans: ReceivedSpan[]) =>
      spans.find(
        (s) =>
          s.name === "lease.expire" && BigInt(`0x${s.attributes["etcd.lease_id"]}`) === BigInt(`0x${id}`),
      );
    const spans = await allSpans((all) => {
      const e = expiry(all);
      return (
        e !== undefined &&
        all.filter((s) => s.name === "etcdserver.apply" && s.traceId === e.traceId).length >= 3
      );
    });
    const e = expiry(spans);
    assert.ok(e, "no lease.expire span for the lease");
    assert.equal(e.parentSpanId, "", "a lease expiry starts its own trace");
    const applies = spans.filter((s) => s.name === "etcdserver.apply" && s.traceId === e.traceId);
    assert.equal(new Set(applies.map((a) => a.attributes["etcd.member_id"])).size, 3);
    const onLeader = applies.find((a) => a.attributes["etcd.member_id"] === e.attributes["etcd.member_id"]);
    assert.equal(onLeader?.parentSpanId, e.spanId);
    for (const a of applies.filter((x) => x !== onLeader)) {
      assert.ok(
        a.links.some((l) => l.spanId === e.spanId),
        "a follower's revoke apply links to the expiry",
      );
    }
  });

  test("watch deliveries get spans of their own", async () => {
    const key = `watched-${randomBytes(4).toString("hex")}`;
    const watch = new EtcdctlProcess(stack.gatewayAddr, ["watch", key]);
    try {
      // The watch is in place once a put's event comes back through it.
      let delivered = false;
      for (let i = 0; i < 20 && !delivered; i++) {
        assert.equal((await etcdctl(stack.gatewayAddr, ["put", key, `v${i}`])).code, 0);
        delivered = await watch.waitFor((out) => out.includes(key), 500);
      }
      assert.ok(delivered, `no event through the watch: ${watch.stderr}`);
      const spans = await allSpans((all) => all.some((s) => s.name === "watch.deliver"));
      const deliver = spans.find((s) => s.name === "watch.deliver");
      assert.ok(deliver, "no watch.deliver span");
      assert.equal(deliver.service, "raft-node");
      assert.equal(deliver.parentSpanId, "");
      assert.ok(Number(deliver.attributes["etcd.synced_watchers"]) >= 1);
      assert.ok(Number(deliver.attributes["etcd.events"]) >= 1);
    } finally {
      await watch.stop();
    }
  });
});
