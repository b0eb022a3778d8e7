// Forward/Calls on a GrpcHttp2Server, driven by a raw node:http2 client speaking the frames:
// the codec against the generated one, dispatch into the server's own handlers and observer,
// errors, deadlines, cancel frames, and one write for the answers of one turn.
import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import grpc from "@grpc/grpc-js";
import * as forward from "../gen/internal/forward.js";
import {
  type CallResult,
  decodeCallFrame,
  decodeCallResult,
  encodeCallFrame,
  encodeCallResult,
  FORWARD_CALLS_PATH,
  forwardedCallsHandler,
} from "./forwarded-calls.js";
import { type GrpcCallObserver, GrpcHttp2Server, type ServerCall } from "./http2-server.js";

describe("forwarded call frames", () => {
  it("encode as the proto declares them (generated codec both ways)", () => {
    const metadata = new grpc.Metadata();
    metadata.set("token", "tok");
    metadata.set("trace-bin", Buffer.from([0, 255]));
    metadata.set("user-agent", "not forwarded");
    const bytes = encodeCallFrame({
      id: 2 ** 40 + 3,
      method: "/etcdserverpb.KV/Put",
      request: Buffer.from("req"),
      metadata,
      timeoutMs: 1500,
      cancel: false,
    });
    const generated = forward.CallFrame.decode(bytes);
    assert.equal(generated.id, 2n ** 40n + 3n);
    assert.equal(generated.method, "/etcdserverpb.KV/Put");
    assert.deepEqual(generated.request, Buffer.from("req"));
    assert.deepEqual(
      generated.metadata.map((m) => [m.key, [...m.value]]),
      [
        ["token", [...Buffer.from("tok")]],
        ["trace-bin", [0, 255]],
      ],
    );
    assert.equal(generated.timeoutMs, 1500n);
    assert.equal(generated.cancel, false);

    const back = decodeCallFrame(
      forward.CallFrame.encode({ ...generated, cancel: true, timeoutMs: 0n }).finish(),
    );
    assert.equal(back.id, 2 ** 40 + 3);
    assert.equal(back.cancel, true);
    assert.equal(back.timeoutMs, 0);
    assert.equal(back.metadata?.get("token")[0], "tok");
    assert.deepEqual(back.metadata?.get("trace-bin")[0], Buffer.from([0, 255]));
  });

  it("results round-trip, an empty OK response included", () => {
    const trailers = new grpc.Metadata();
    trailers.set("x-why", "because");
    const error = encodeCallResult({
      id: 7,
      code: 9,
      message: "etcdserver: 100% ünïcode",
      response: undefined,
      trailers,
    });
    const generated = forward.CallResult.decode(error);
    assert.equal(generated.code, 9);
    assert.equal(generated.message, "etcdserver: 100% ünïcode");
    const decoded = decodeCallResult(error);
    assert.equal(decoded.response, undefined);
    assert.equal(decoded.trailers?.get("x-why")[0], "because");
    const ok = decodeCallResult(
      encodeCallResult({ id: 8, code: 0, message: "", response: Buffer.alloc(0), trailers: undefined }),
    );
    assert.deepEqual(ok, { id: 8, code: 0, message: "", response: Buffer.alloc(0), trailers: undefined });
  });

  it("refuses bytes that are not a frame", () => {
    assert.throws(() => decodeCallFrame(Buffer.from([0x0a, 0x05, 0x01])));
    // id as a length-delimited field: a wire type the proto does not allow there.
    assert.throws(() => decodeCallFrame(Buffer.from([0x0a, 0x01, 0x01])), /wire type/);
  });
});

/** A client end of Forward/Calls: frames out, results in, and how many reads carried them. */
class CallsClient {
  readonly results: CallResult[] = [];
  dataEvents = 0;
  status: number | undefined;
  details = "";
  readonly closed: Promise<void>;
  private inbox = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  readonly stream: http2.ClientHttp2Stream;

  constructor(session: http2.ClientHttp2Session) {
    this.stream = session.request({
      ":method": "POST",
      ":path": FORWARD_CALLS_PATH,
      "content-type": "application/grpc",
      te: "trailers",
    });
    const status = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) this.status = Number(h["grpc-status"]);
      if (typeof h["grpc-message"] === "string") this.details = decodeURIComponent(h["grpc-message"]);
      if (h["grpc-status"] !== undefined) this.stream.close();
    };
    this.stream.on("response", status);
    this.stream.on("trailers", status);
    this.stream.on("data", (chunk: Buffer) => {
      this.dataEvents++;
      this.inbox = Buffer.concat([this.inbox, chunk]);
      while (this.inbox.length >= 5 && this.inbox.length >= 5 + this.inbox.readUInt32BE(1)) {
        const length = this.inbox.readUInt32BE(1);
        this.results.push(decodeCallResult(this.inbox.subarray(5, 5 + length)));
        this.inbox = this.inbox.subarray(5 + length);
      }
      for (const wake of this.waiters.splice(0)) wake();
    });
    this.closed = new Promise((resolve) => this.stream.on("close", resolve));
  }

  /** Writes frames in one write. */
  send(...frames: Buffer[]): void {
    this.stream.write(Buffer.concat(frames.map(prefixed)));
  }

  async result(id: number): Promise<CallResult> {
    for (let i = 0; i < 500; i++) {
      const found = this.results.find((r) => r.id === id);
      if (found !== undefined) return found;
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 20);
      });
    }
    throw new Error(`no result for call ${id}`);
  }
}

function prefixed(message: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

function call(
  id: number,
  method: string,
  request: string,
  extra: { token?: string; timeoutMs?: number } = {},
) {
  const metadata = new grpc.Metadata();
  if (extra.token !== undefined) metadata.set("token", extra.token);
  return encodeCallFrame({
    id,
    method,
    request: Buffer.from(request),
    metadata,
    timeoutMs: extra.timeoutMs ?? 0,
    cancel: false,
  });
}

const cancelFrame = (id: number) =>
  encodeCallFrame({
    id,
    method: "",
    request: Buffer.alloc(0),
    metadata: undefined,
    timeoutMs: 0,
    cancel: true,
  });

describe("Forward/Calls on GrpcHttp2Server", () => {
  let server: GrpcHttp2Server;
  let session: http2.ClientHttp2Session;
  const handled: { path: string; code: number }[] = [];
  const started: string[] = [];
  const heldCalls: ServerCall[] = [];

  before(async () => {
    const observer: GrpcCallObserver = {
      method: (path) => ({
        started: (c) => started.push(`${path} traceparent=${c.header("traceparent") ?? ""}`),
        received: () => {},
        sent: () => {},
        handled: (code) => handled.push({ path, code }),
      }),
    };
    server = new GrpcHttp2Server({ maxReceiveBytes: 64, observer });
    server.register("/t.T/Echo", {
      kind: "unary",
      handle: (c) => {
        c.sendMessage(Buffer.concat([Buffer.from(`echo(${c.metadata.get("token")[0] ?? "-"}):`), c.request]));
        const trailers = new grpc.Metadata();
        trailers.set("x-peer", c.remoteAddress ?? "");
        c.finish({ code: grpc.status.OK, metadata: trailers });
      },
    });
    server.register("/t.T/Fail", {
      kind: "unary",
      handle: (c) =>
        c.finish({ code: grpc.status.INVALID_ARGUMENT, details: "etcdserver: key is not provided" }),
    });
    server.register("/t.T/Hold", {
      kind: "unary",
      handle: (c) => {
        heldCalls.push(c);
      },
    });
    server.register("/t.T/Stream", { kind: "bidi", handle: (c) => c.finish({ code: grpc.status.OK }) });
    server.register(FORWARD_CALLS_PATH, forwardedCallsHandler(server));
    const port = await server.listen("127.0.0.1:0");
    session = http2.connect(`http://127.0.0.1:${port}`);
  });

  after(async () => {
    session.close();
    await server.close(100);
  });

  it("runs each frame through the method's own handler and observer, with the frame's metadata", async () => {
    const client = new CallsClient(session);
    const traced = new grpc.Metadata();
    traced.set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    client.send(
      call(1, "/t.T/Echo", "a", { token: "alice" }),
      call(2, "/t.T/Echo", "b"),
      encodeCallFrame({
        id: 3,
        method: "/t.T/Echo",
        request: Buffer.from("c"),
        metadata: traced,
        timeoutMs: 0,
        cancel: false,
      }),
    );
    const [one, two, three] = await Promise.all([client.result(1), client.result(2), client.result(3)]);
    assert.equal(one.code, grpc.status.OK);
    assert.equal(one.response?.toString(), "echo(alice):a");
    assert.equal(one.trailers?.get("x-peer")[0], "127.0.0.1");
    assert.equal(two.response?.toString(), "echo(-):b", "a frame without a token has none");
    assert.equal(three.response?.toString(), "echo(-):c");
    assert.ok(
      started.includes("/t.T/Echo traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    );
    assert.equal(handled.filter((h) => h.path === "/t.T/Echo" && h.code === 0).length, 3);
    client.stream.end();
    await client.closed;
    assert.equal(client.status, grpc.status.OK, "a half-closed stream with nothing in flight ends OK");
  });

  it("answers errors, unknown and streaming methods, and oversized requests per call", async () => {
    const client = new CallsClient(session);
    client.send(
      call(1, "/t.T/Fail", ""),
      call(2, "/t.T/Nope", ""),
      call(3, "/t.T/Stream", ""),
      call(4, "/t.T/Echo", "x".repeat(65)),
      call(5, "/t.T/Echo", "fine"),
    );
    const results = await Promise.all([1, 2, 3, 4, 5].map((id) => client.result(id)));
    assert.deepEqual(
      results.map((r) => [r.code, r.message]),
      [
        [grpc.status.INVALID_ARGUMENT, "etcdserver: key is not provided"],
        [grpc.status.UNIMPLEMENTED, "unknown method Nope for service t.T"],
        [grpc.status.UNIMPLEMENTED, "unknown method Stream for service t.T"],
        [grpc.status.RESOURCE_EXHAUSTED, "grpc: received message larger than max (65 vs. 64)"],
        [grpc.status.OK, ""],
      ],
    );
    assert.equal(results[0]!.response, undefined);
    client.stream.close();
    await client.closed;
  });

  it("ends a call at its deadline, and drops a cancelled one without an answer", async () => {
    const client = new CallsClient(session);
    heldCalls.length = 0;
    const before = handled.length;
    client.send(call(1, "/t.T/Hold", "", { timeoutMs: 50 }), call(2, "/t.T/Hold", ""));
    const late = await client.result(1);
    assert.deepEqual([late.code, late.message], [grpc.status.DEADLINE_EXCEEDED, "Deadline exceeded"]);
    assert.equal(heldCalls[0]!.cancelled, true);
    const cancelled = new Promise((resolve) => heldCalls[1]!.once("cancelled", resolve));
    client.send(cancelFrame(2));
    await cancelled;
    // The handler finishing after the cancel sends nothing.
    heldCalls[1]!.finish({ code: grpc.status.OK });
    client.send(call(3, "/t.T/Echo", "after"));
    await client.result(3);
    assert.equal(client.results.filter((r) => r.id === 2).length, 0);
    assert.deepEqual(
      handled
        .slice(before)
        .filter((h) => h.path !== FORWARD_CALLS_PATH)
        .map((h) => h.code),
      [grpc.status.DEADLINE_EXCEEDED, grpc.status.CANCELLED, grpc.status.OK],
    );
    client.stream.close();
    await client.closed;
  });

  it("abandons the calls in flight when the stream goes away", async () => {
    const client = new CallsClient(session);
    heldCalls.length = 0;
    client.send(call(1, "/t.T/Hold", ""));
    for (let i = 0; i < 100 && heldCalls.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    const cancelled = new Promise((resolve) => heldCalls[0]!.once("cancelled", resolve));
    client.stream.close(http2.constants.NGHTTP2_CANCEL);
    await cancelled;
  });

  it("sends the answers of one turn in one write", async () => {
    const client = new CallsClient(session);
    const frames = Array.from({ length: 200 }, (_, i) => call(i + 1, "/t.T/Echo", `m${i}`));
    client.send(...frames);
    await client.result(200);
    assert.equal(client.results.length, 200);
    assert.ok(client.dataEvents <= 2, `${client.dataEvents} reads for 200 answers`);
    client.stream.close();
    await client.closed;
  });

  it("ends the stream with INTERNAL on a malformed frame", async () => {
    const client = new CallsClient(session);
    client.send(Buffer.from([0x0a, 0x05, 0x01]));
    await client.closed;
    assert.equal(client.status, grpc.status.INTERNAL);
    assert.match(client.details, /^etcd-ts: malformed forwarded call frame/);
  });
});
