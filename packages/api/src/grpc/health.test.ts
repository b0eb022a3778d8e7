// The health service against grpc-js's generated health client: what grpc_health_probe and
// grpc-go's health checking see, with grpc-go's (and so etcd's) answers and errors.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import grpc from "@grpc/grpc-js";
import { type HealthCheckResponse, HealthClient } from "../gen/grpc/health/v1/health.js";
import { HealthStatuses, ServingStatus, serveHealth } from "./health.js";
import { GrpcHttp2Server } from "./http2-server.js";

describe("HealthStatuses", () => {
  it("knows all services as SERVING, and no other service", () => {
    const statuses = new HealthStatuses();
    assert.equal(statuses.check(""), ServingStatus.SERVING);
    assert.equal(statuses.check("etcdserverpb.KV"), undefined);
  });

  it("tells a watcher the status now, then each change once", () => {
    const statuses = new HealthStatuses();
    const seen: ServingStatus[] = [];
    const stop = statuses.watch(
      "",
      (s) => seen.push(s),
      () => assert.fail("not ended"),
    );
    statuses.set("", ServingStatus.SERVING);
    statuses.set("", ServingStatus.NOT_SERVING);
    statuses.set("", ServingStatus.NOT_SERVING);
    statuses.set("", ServingStatus.SERVING);
    stop();
    statuses.set("", ServingStatus.NOT_SERVING);
    assert.deepEqual(seen, [ServingStatus.SERVING, ServingStatus.NOT_SERVING, ServingStatus.SERVING]);
    assert.equal(statuses.watching, 0);
  });

  it("watches an unknown service as SERVICE_UNKNOWN until it is set", () => {
    const statuses = new HealthStatuses();
    const seen: ServingStatus[] = [];
    statuses.watch(
      "later",
      (s) => seen.push(s),
      () => {},
    );
    statuses.set("later", ServingStatus.SERVING);
    assert.deepEqual(seen, [ServingStatus.SERVICE_UNKNOWN, ServingStatus.SERVING]);
  });

  it("after shutdown every service is NOT_SERVING and stays so", () => {
    const statuses = new HealthStatuses();
    statuses.set("a", ServingStatus.SERVING);
    const seen: ServingStatus[] = [];
    statuses.watch(
      "a",
      (s) => seen.push(s),
      () => {},
    );
    statuses.shutdown();
    statuses.set("a", ServingStatus.SERVING);
    statuses.set("", ServingStatus.SERVING);
    assert.deepEqual(seen, [ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
    assert.equal(statuses.check(""), ServingStatus.NOT_SERVING);
    assert.equal(statuses.check("a"), ServingStatus.NOT_SERVING);
  });

  it("close ends every watcher", () => {
    const statuses = new HealthStatuses();
    let ended = 0;
    statuses.watch(
      "",
      () => {},
      () => ended++,
    );
    statuses.watch(
      "x",
      () => {},
      () => ended++,
    );
    statuses.close();
    assert.equal(ended, 2);
    assert.equal(statuses.watching, 0);
  });
});

describe("serveHealth", () => {
  let server: GrpcHttp2Server;
  let client: InstanceType<typeof HealthClient>;
  let statuses: HealthStatuses;

  before(async () => {
    server = new GrpcHttp2Server();
    statuses = new HealthStatuses();
    serveHealth(server, statuses);
    const port = await server.listen("127.0.0.1:0");
    client = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  after(async () => {
    client.close();
    await server.close(100);
  });

  const check = (service: string) =>
    new Promise<{ err: grpc.ServiceError | null; res: HealthCheckResponse | undefined }>((resolve) =>
      client.check({ service }, (err, res) => resolve({ err, res })),
    );

  it("answers Check for all services, NOT_FOUND 'unknown service' for another", async () => {
    const all = await check("");
    assert.equal(all.err, null);
    assert.equal(all.res?.status, ServingStatus.SERVING);
    const other = await check("etcdserverpb.KV");
    assert.equal(other.err?.code, grpc.status.NOT_FOUND);
    assert.equal(other.err?.details, "unknown service");
  });

  it("streams Watch: the status now, then its changes; shutdown then close end it", async () => {
    const call = client.watch({ service: "" });
    const seen: ServingStatus[] = [];
    const ended = new Promise<grpc.ServiceError>((resolve) => call.on("error", resolve));
    call.on("data", (res: HealthCheckResponse) => {
      seen.push(res.status);
      if (seen.length === 1) statuses.set("", ServingStatus.NOT_SERVING);
      if (seen.length === 2) statuses.set("", ServingStatus.SERVING);
      if (seen.length === 3) {
        statuses.shutdown();
        statuses.close();
      }
    });
    const error = await ended;
    assert.deepEqual(seen, [
      ServingStatus.SERVING,
      ServingStatus.NOT_SERVING,
      ServingStatus.SERVING,
      ServingStatus.NOT_SERVING,
    ]);
    assert.equal(error.code, grpc.status.UNAVAILABLE);
    assert.equal((await check("")).res?.status, ServingStatus.NOT_SERVING);
  });

  it("forgets a Watch its client cancelled", async () => {
    const fresh = new HealthStatuses();
    const s = new GrpcHttp2Server();
    serveHealth(s, fresh);
    const port = await s.listen("127.0.0.1:0");
    const c = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const call = c.watch({ service: "" });
    await new Promise((resolve) => call.once("data", resolve));
    assert.equal(fresh.watching, 1);
    call.on("error", () => {});
    call.cancel();
    for (let i = 0; i < 100 && fresh.watching > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(fresh.watching, 0);
    c.close();
    await s.close(100);
  });
});
