import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { FORWARD_CALLS_PATH, forwardedCallsHandler, GrpcHttp2Server, type ServerCall } from "@etcd-ts/api";
import { freePort } from "@etcd-ts/testing";
import grpc from "@grpc/grpc-js";
import pino from "pino";
import type { ClusterSnapshot } from "../routing/member-selection.js";
import { bindLoopback } from "../testing/grpc-js-member.js";
import { MemberChannel } from "./member-channel.js";
import type { MemberDirectory } from "./member-directory.js";
import { passThrough } from "./upstream-client.js";
import { openUpstreamStream, type UpstreamStreamOptions } from "./upstream-stream.js";

/** A directory of one member, recording what the stream tells it. */
function directoryOf(channel: MemberChannel) {
  const markedDown: string[] = [];
  const directory: MemberDirectory = {
    snapshot: () => ({ members: [], leaderId: undefined }) as unknown as ClusterSnapshot,
    channelFor: (id) => (id === "m1" ? channel : undefined),
    markDown: (id) => markedDown.push(id),
    refresh: async () => {},
    onChange: () => () => {},
  };
  return { directory, markedDown };
}

function open(directory: MemberDirectory, path: string, overrides: Partial<UpstreamStreamOptions> = {}) {
  const messages: string[] = [];
  let ended: (status: grpc.StatusObject) => void = () => {};
  const end = new Promise<grpc.StatusObject>((resolve) => {
    ended = resolve;
  });
  const metadata = new grpc.Metadata();
  metadata.set("hasleader", "true");
  const stream = openUpstreamStream({
    members: directory,
    memberId: "m1",
    path,
    metadata,
    logger: pino({ level: "silent" }),
    what: "test",
    onMessage: (m) => messages.push(m.toString()),
    onEnd: ended,
    ...overrides,
  });
  assert.ok(stream);
  return { stream, messages, end };
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(check(), "condition not reached");
}

describe("upstream streams on the member channel, against a grpc-js server", () => {
  let server: grpc.Server;
  let channel: MemberChannel;
  const cancelled: string[] = [];

  before(async () => {
    server = new grpc.Server();
    // Answers every request with "echo:<request>" three times at once, "hasleader=<header>" first.
    server.register(
      "/t.S/Chat",
      (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        call.write(Buffer.from(`hasleader=${call.metadata.get("hasleader")[0]}`));
        call.on("data", (request: Buffer) => {
          const text = request.toString();
          if (text === "fail") {
            call.emit("error", { code: grpc.status.FAILED_PRECONDITION, details: "etcdserver: no leader" });
            return;
          }
          for (let i = 0; i < 3; i++) call.write(Buffer.from(`echo:${text}:${i}`));
        });
        call.on("cancelled", () => cancelled.push("chat"));
        call.on("end", () => call.end());
      },
      passThrough,
      passThrough,
      "bidi",
    );
    // Server streaming: 24 messages of 512 KiB, each filled with its index.
    server.register(
      "/t.S/Big",
      (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        for (let i = 0; i < 24; i++) call.write(Buffer.alloc(512 * 1024, i));
        call.end();
      },
      passThrough,
      passThrough,
      "serverStream",
    );
    server.register(
      "/t.S/Never",
      (_call: grpc.ServerWritableStream<Buffer, Buffer>) => {},
      passThrough,
      passThrough,
      "serverStream",
    );
    channel = new MemberChannel(await bindLoopback(server));
  });

  after(() => {
    channel.close();
    server.forceShutdown();
  });

  it("carries the metadata, relays requests and answers in order", async () => {
    const { directory } = directoryOf(channel);
    const { stream, messages } = open(directory, "/t.S/Chat");
    stream.send(Buffer.from("a"));
    stream.send(Buffer.from("b"));
    await until(() => messages.length === 7);
    assert.deepEqual(messages, [
      "hasleader=true",
      "echo:a:0",
      "echo:a:1",
      "echo:a:2",
      "echo:b:0",
      "echo:b:1",
      "echo:b:2",
    ]);
    stream.close();
  });

  it("reports the member's status once, without marking it down", async () => {
    const { directory, markedDown } = directoryOf(channel);
    let ends = 0;
    const { stream, end } = open(directory, "/t.S/Chat");
    void end.then(() => ends++);
    stream.send(Buffer.from("fail"));
    const status = await end;
    assert.equal(status.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(status.details, "etcdserver: no leader");
    assert.deepEqual(markedDown, []);
    stream.send(Buffer.from("ignored after the end"));
    stream.close();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(ends, 1);
  });

  it("a cancelled stream reaches the member and is not reported", async () => {
    const { directory } = directoryOf(channel);
    let reported = false;
    const { stream, messages } = open(directory, "/t.S/Chat", { onEnd: () => (reported = true) });
    await until(() => messages.length === 1);
    const before = cancelled.length;
    stream.close();
    await until(() => cancelled.length === before + 1);
    assert.equal(reported, false);
  });

  it("a member that cannot be reached: UNAVAILABLE, 'No connection established', marked down", async () => {
    const port = await freePort();
    const nowhere = new MemberChannel(`127.0.0.1:${port}`);
    try {
      const { directory, markedDown } = directoryOf(nowhere);
      const { end } = open(directory, "/t.S/Chat");
      const status = await end;
      assert.equal(status.code, grpc.status.UNAVAILABLE);
      assert.match(status.details, /^No connection established\. Last error: /);
      assert.deepEqual(markedDown, ["m1"]);
    } finally {
      nowhere.close();
    }
  });

  it("a paused stream hands on nothing more until resumed, then the rest in order", async () => {
    const { directory } = directoryOf(channel);
    const got: number[] = [];
    let paused = false;
    let whilePaused = 0;
    const { stream, end } = open(directory, "/t.S/Big", {
      onMessage: (m) => {
        if (paused) whilePaused++;
        got.push(m[0]!);
        assert.equal(m.length, 512 * 1024);
      },
    });
    stream.send(Buffer.from("go"));
    stream.end();
    await until(() => got.length >= 1);
    stream.pause();
    paused = true;
    const atPause = got.length;
    await new Promise((r) => setTimeout(r, 150));
    // What the stream's window (8 MiB) lets the member send still comes; not the rest (12 MiB).
    assert.ok(got.length < 24, `all ${got.length} messages arrived while paused (${atPause} before)`);
    assert.ok(whilePaused <= 17, `${whilePaused} messages after the pause`);
    paused = false;
    stream.resume();
    const status = await end;
    assert.equal(status.code, grpc.status.OK);
    assert.deepEqual(
      got,
      Array.from({ length: 24 }, (_, i) => i),
    );
  });

  it("a call past its deadline ends DEADLINE_EXCEEDED", async () => {
    const { directory, markedDown } = directoryOf(channel);
    const { stream, end } = open(directory, "/t.S/Never", { deadlineMs: Date.now() + 100 });
    stream.send(Buffer.from("x"));
    stream.end();
    const status = await end;
    assert.equal(status.code, grpc.status.DEADLINE_EXCEEDED);
    assert.deepEqual(markedDown, []);
  });
});

describe("upstream streams on the member channel, against our own gRPC server (as members serve)", () => {
  let server: GrpcHttp2Server;
  let channel: MemberChannel;
  let watchCall: ServerCall | undefined;

  before(async () => {
    server = new GrpcHttp2Server();
    // Three answers per request, in one turn: the server writes them in one go.
    server.register("/t.S/Chat", {
      kind: "bidi",
      handle: (call) => {
        call.on("message", (request: Buffer) => {
          for (let i = 0; i < 3; i++) call.sendMessage(Buffer.from(`echo:${request}:${i}`));
        });
      },
    });
    // A put whose answer leaves in the same write as a message on the open watch stream, the
    // message first: a member that writes a put's events with its answer.
    server.register("/t.S/Watch", {
      kind: "bidi",
      handle: (call) => {
        watchCall = call;
      },
    });
    server.register("/etcdserverpb.KV/Put", {
      kind: "unary",
      handle: (call) => {
        watchCall?.sendMessage(Buffer.from("event"));
        call.sendMessage(Buffer.from("answer"));
        call.finish({ code: grpc.status.OK });
      },
    });
    server.register(FORWARD_CALLS_PATH, forwardedCallsHandler(server));
    channel = new MemberChannel(`127.0.0.1:${await server.listen("127.0.0.1:0")}`);
  });

  after(async () => {
    channel.close();
    await server.close(100);
  });

  it("hands on the messages of one chunk in one go (no task or microtask between them)", async () => {
    const { directory } = directoryOf(channel);
    const runs: number[] = [];
    let run = 0;
    let runOpen = false;
    const { stream } = open(directory, "/t.S/Chat", {
      onMessage: () => {
        if (!runOpen) {
          // A new synchronous run: it ends at the next microtask checkpoint.
          run++;
          runOpen = true;
          queueMicrotask(() => {
            runOpen = false;
          });
        }
        runs.push(run);
      },
    });
    stream.send(Buffer.from("x"));
    await until(() => runs.length === 3);
    // The member wrote the three answers in one write: one chunk, handed on at once, so the
    // clients' answers they cause leave in one write per connection.
    assert.deepEqual(runs, [1, 1, 1]);
    stream.close();
  });

  it("afterIo: a watch's messages are handed on after the answer read in the same chunk has settled", async () => {
    const { directory } = directoryOf(channel);
    const order: string[] = [];
    const { stream } = open(directory, "/t.S/Watch", {
      afterIo: true,
      onMessage: (m) => order.push(m.toString()),
    });
    stream.send(Buffer.from("create"));
    await until(() => watchCall !== undefined);
    // On the Forward stream of the same connection, as the gateway sends a put.
    const put = channel.call("/etcdserverpb.KV/Put", Buffer.from("p"), new grpc.Metadata(), undefined);
    void put.result.then((r) => order.push(r.response?.toString() ?? `error ${r.error?.details}`));
    await until(() => order.length === 2);
    // Without afterIo the event's fan-out ran inside the read, before the answer's continuation.
    assert.deepEqual(order, ["answer", "event"]);
    stream.close();
  });
});
