// MemberChannel's Forward/Calls path against a member-like GrpcHttp2Server (the handlers a
// member would register, in bytes) and against a server without the method (etcd's case).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  FORWARD_CALLS_PATH,
  forwardedCallsHandler,
  type GrpcCallObserver,
  GrpcHttp2Server,
  type ServerCall,
} from "@etcd-ts/api";
import { freePort } from "@etcd-ts/testing";
import grpc from "@grpc/grpc-js";
import { judgeFailure } from "../routing/failure-policy.js";
import { bindLoopback } from "../testing/grpc-js-member.js";
import { MemberChannel } from "./member-channel.js";
import { passThrough } from "./upstream-client.js";

const PUT = "/etcdserverpb.KV/Put";
const TXN = "/etcdserverpb.KV/Txn";
const RANGE = "/etcdserverpb.KV/Range";
/** Not a forwarded method: a call on its own stream, held until told. */
const HELD_ALONE = "/t.S/Held";

/** A server with Put (echo with the caller's token), Txn (held until told) and Range. */
async function memberLike(maxConcurrentStreams?: number): Promise<{
  server: GrpcHttp2Server;
  address: string;
  started: string[];
  held: ServerCall[];
}> {
  const started: string[] = [];
  const held: ServerCall[] = [];
  const observer: GrpcCallObserver = {
    method: (path) => ({
      started: () => started.push(path),
      received: () => {},
      sent: () => {},
      handled: () => {},
    }),
  };
  const server = new GrpcHttp2Server({
    observer,
    ...(maxConcurrentStreams === undefined ? {} : { maxConcurrentStreams }),
  });
  const echo = (call: ServerCall) => {
    call.sendMessage(Buffer.concat([Buffer.from(`${call.metadata.get("token")[0] ?? "-"}:`), call.request]));
    const trailers = new grpc.Metadata();
    trailers.set("x-path", call.path);
    call.finish({ code: grpc.status.OK, metadata: trailers });
  };
  server.register(PUT, { kind: "unary", handle: echo });
  server.register(RANGE, { kind: "unary", handle: echo });
  server.register(TXN, { kind: "unary", handle: (call) => held.push(call) });
  server.register(HELD_ALONE, { kind: "unary", handle: (call) => held.push(call) });
  server.register(FORWARD_CALLS_PATH, forwardedCallsHandler(server));
  const port = await server.listen("127.0.0.1:0");
  return { server, address: `127.0.0.1:${port}`, started, held };
}

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(condition(), "condition not reached in 2 s");
}

describe("MemberChannel over Forward/Calls", () => {
  let member: Awaited<ReturnType<typeof memberLike>>;
  let channel: MemberChannel;

  before(async () => {
    member = await memberLike();
    channel = new MemberChannel(member.address);
  });

  after(async () => {
    channel.close();
    await member.server.close(100);
  });

  it("sends many calls over one stream, each with its own metadata, answers and trailers intact", async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => {
        const md = new grpc.Metadata();
        if (i % 2 === 0) md.set("token", `t${i}`);
        return channel.call(PUT, Buffer.from(`v${i}`), md, undefined).result;
      }),
    );
    results.forEach((r, i) => {
      assert.equal(r.error, undefined);
      assert.equal(r.response?.toString(), `${i % 2 === 0 ? `t${i}` : "-"}:v${i}`);
      assert.equal(r.trailers?.get("x-path")[0], PUT);
    });
    assert.equal(member.started.filter((p) => p === FORWARD_CALLS_PATH).length, 1);
    assert.equal(member.started.filter((p) => p === PUT).length, 20);
  });

  it("keeps Range on its own stream", async () => {
    const before = member.started.length;
    const r = await channel.call(RANGE, Buffer.from("k"), new grpc.Metadata(), undefined).result;
    assert.equal(r.response?.toString(), "-:k");
    assert.deepEqual(member.started.slice(before), [RANGE]);
  });

  it("ends a call at its deadline and cancels it on the member; a client's cancel does too", async () => {
    member.held.length = 0;
    const late = await channel.call(TXN, Buffer.from("x"), new grpc.Metadata(), Date.now() + 50).result;
    assert.deepEqual(
      [late.error?.code, late.error?.details],
      [grpc.status.DEADLINE_EXCEEDED, "Deadline exceeded"],
    );
    await until(() => member.held[0]?.cancelled === true);

    const call = channel.call(TXN, Buffer.from("y"), new grpc.Metadata(), undefined);
    await until(() => member.held.length === 2);
    call.cancel();
    const cancelled = await call.result;
    assert.deepEqual(
      [cancelled.error?.code, cancelled.error?.details],
      [grpc.status.CANCELLED, "Cancelled on client"],
    );
    await until(() => member.held[1]!.cancelled);
  });

  it("a call's cancel after its answer touches no other call", async () => {
    member.held.length = 0;
    const answered = channel.call(PUT, Buffer.from("a"), new grpc.Metadata(), undefined);
    assert.equal((await answered.result).error, undefined);
    const alone = channel.call(RANGE, Buffer.from("r"), new grpc.Metadata(), undefined);
    assert.equal((await alone.result).error, undefined);
    const held = channel.call(TXN, Buffer.from("h"), new grpc.Metadata(), undefined);
    await until(() => member.held.length === 1);
    answered.cancel();
    alone.cancel();
    // A cancel frame would reach the member in the turn after: give it a few.
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(member.held[0]!.cancelled, false);
    held.cancel();
    assert.equal((await held.result).error?.code, grpc.status.CANCELLED);
  });
});

describe("Forward/Calls failures", () => {
  it("a call written before the connection broke fails with Connection dropped (outcome unknown)", async () => {
    const member = await memberLike();
    const channel = new MemberChannel(member.address);
    try {
      const pending = channel.call(TXN, Buffer.from("w"), new grpc.Metadata(), undefined).result;
      await until(() => member.held.length === 1);
      // The channel's session is unref'd (it never keeps a gateway alive): this timer keeps the
      // test's process up until the client has read the socket's end.
      const alive = setTimeout(() => {}, 10_000);
      await member.server.close(0);
      const r = await pending;
      clearTimeout(alive);
      assert.deepEqual([r.error?.code, r.error?.details], [grpc.status.UNAVAILABLE, "Connection dropped"]);
      assert.equal(judgeFailure(r.error!.code, r.error!.details).retry, "idempotent");
    } finally {
      channel.close();
    }
  });

  it("a member closing gracefully (two-step GOAWAY) lets the calls in flight finish, then closes", async () => {
    const member = await memberLike();
    const channel = new MemberChannel(member.address);
    try {
      const onForward = channel.call(TXN, Buffer.from("f"), new grpc.Metadata(), undefined).result;
      const alone = channel.call(HELD_ALONE, Buffer.from("a"), new grpc.Metadata(), undefined).result;
      await until(() => member.held.length === 2);
      const alive = setTimeout(() => {}, 10_000);
      const startedAt = Date.now();
      const closed = member.server.close(5_000);
      // The member's GOAWAY reaches the channel: its Forward stream ends once its call is
      // answered (the member waits for every stream), and new calls go to a new connection.
      await new Promise((r) => setTimeout(r, 100));
      for (const call of member.held) {
        call.sendMessage(Buffer.from(`done:${call.request}`));
        call.finish({ code: grpc.status.OK });
      }
      const [f, a] = await Promise.all([onForward, alone]);
      assert.equal(f.response?.toString(), "done:f");
      assert.equal(a.response?.toString(), "done:a");
      await closed;
      clearTimeout(alive);
      assert.ok(Date.now() - startedAt < 3_000, "the member closed without waiting out its grace");
      const later = await channel.call(PUT, Buffer.from("n"), new grpc.Metadata(), Date.now() + 2000).result;
      assert.match(later.error?.details ?? "", /^No connection established/);
    } finally {
      channel.close();
    }
  });

  it("waits for a stream when the member's --max-concurrent-streams is reached, deadlines holding", async () => {
    const member = await memberLike(2);
    const channel = new MemberChannel(member.address);
    try {
      const calls = ["a", "b", "c", "d", "e"].map(
        (v) => channel.call(HELD_ALONE, Buffer.from(v), new grpc.Metadata(), Date.now() + 5000).result,
      );
      await until(() => member.held.length === 2);
      const late = await channel.call(HELD_ALONE, Buffer.from("x"), new grpc.Metadata(), Date.now() + 100)
        .result;
      assert.deepEqual(
        [late.error?.code, late.error?.details],
        [grpc.status.DEADLINE_EXCEEDED, "Deadline exceeded"],
      );
      let answered = 0;
      while (answered < 5) {
        await until(() => member.held.length > answered);
        assert.ok(member.held.length - answered <= 2, "never more streams than the member allows");
        const call = member.held[answered++]!;
        call.sendMessage(Buffer.from(`done:${call.request}`));
        call.finish({ code: grpc.status.OK });
      }
      const results = await Promise.all(calls);
      assert.deepEqual(
        results.map((r) => r.response?.toString()),
        ["a", "b", "c", "d", "e"].map((v) => `done:${v}`),
      );
      assert.equal(member.held.length, 5, "the call that timed out while waiting never reached the member");
    } finally {
      channel.close();
      await member.server.close(100);
    }
  });

  it("a call that could not connect says it was never sent, so even a write may be retried", async () => {
    const channel = new MemberChannel(`127.0.0.1:${await freePort()}`);
    try {
      const r = await channel.call(PUT, Buffer.from("x"), new grpc.Metadata(), Date.now() + 2000).result;
      assert.equal(r.error?.code, grpc.status.UNAVAILABLE);
      assert.match(r.error!.details, /^No connection established/);
      assert.equal(judgeFailure(r.error!.code, r.error!.details).retry, "any");
    } finally {
      channel.close();
    }
  });
});

describe("MemberChannel in front of a member without Forward/Calls", () => {
  let server: grpc.Server;
  let channel: MemberChannel;
  const seen: string[] = [];

  before(async () => {
    server = new grpc.Server();
    server.register(
      PUT,
      (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        seen.push(call.request.toString());
        cb(null, Buffer.concat([Buffer.from("put:"), call.request]));
      },
      passThrough,
      passThrough,
      "unary",
    );
    channel = new MemberChannel(await bindLoopback(server));
  });

  after(() => {
    channel.close();
    server.forceShutdown();
  });

  it("sends the calls the member refused again on their own streams, each exactly once", async () => {
    const first = await Promise.all(
      ["a", "b", "c"].map((v) => channel.call(PUT, Buffer.from(v), new grpc.Metadata(), undefined).result),
    );
    assert.deepEqual(
      first.map((r) => r.response?.toString()),
      ["put:a", "put:b", "put:c"],
    );
    const later = await channel.call(PUT, Buffer.from("d"), new grpc.Metadata(), undefined).result;
    assert.equal(later.response?.toString(), "put:d");
    assert.deepEqual(seen.sort(), ["a", "b", "c", "d"]);
  });
});
