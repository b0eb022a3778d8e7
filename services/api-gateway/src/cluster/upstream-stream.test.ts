import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { freePort } from "@etcd-ts/testing";
import grpc from "@grpc/grpc-js";
import pino from "pino";
import type { ClusterSnapshot } from "../routing/member-selection.js";
import { MemberChannel } from "./member-channel.js";
import type { MemberDirectory } from "./member-directory.js";
import { passThrough } from "./upstream-client.js";
import { openUpstreamStream, type UpstreamStreamOptions } from "./upstream-stream.js";

/** A directory of one member, recording what the stream tells it. */
function directoryOf(channel: MemberChannel) {
  const markedDown: string[] = [];
  const directory: MemberDirectory = {
    snapshot: () => ({ members: [], leaderId: undefined }) as unknown as ClusterSnapshot,
    clientFor: () => undefined,
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
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    channel = new MemberChannel(`127.0.0.1:${port}`);
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

  it("hands on the messages of one chunk in the same turn", async () => {
    const { directory } = directoryOf(channel);
    const turns: number[] = [];
    let turn = 0;
    const ticker = setInterval(() => turn++, 0);
    const { stream } = open(directory, "/t.S/Chat", {
      onMessage: (m) => {
        if (m.toString().startsWith("echo:")) turns.push(turn);
      },
    });
    stream.send(Buffer.from("x"));
    await until(() => turns.length === 3);
    clearInterval(ticker);
    // grpc-js wrote the three answers together: they arrive in one chunk, handed on at once.
    assert.equal(new Set(turns).size, 1, `answers over turns ${turns.join(",")}`);
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
});
