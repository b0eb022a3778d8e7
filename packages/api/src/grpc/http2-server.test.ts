// GrpcHttp2Server against grpc-js's client: what an etcd client sees must be plain gRPC.
import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import grpc from "@grpc/grpc-js";
import {
  type CallStatus,
  GrpcHttp2Server,
  MAX_SEND_MESSAGE_BYTES,
  MessageParts,
  ServerCall,
} from "./http2-server.js";

const pass = (b: Buffer) => b;

/** `bodies` framed as gRPC messages back to back, as ServerCall.sendFramed takes them. */
function framed(bodies: Buffer[]): Buffer {
  return Buffer.concat(
    bodies.flatMap((b) => {
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(b.length, 1);
      return [prefix, b];
    }),
  );
}

describe("GrpcHttp2Server", () => {
  let server: GrpcHttp2Server;
  /** Calls /t.T/Held took (it never answers). */
  let held = 0;
  /** Calls /t.T/Pair holds until its second arrives. */
  const paired: ServerCall[] = [];
  let client: grpc.Client;
  let port: number;

  before(async () => {
    server = new GrpcHttp2Server();
    server.register("/t.T/Echo", {
      kind: "unary",
      handle: (call) => {
        call.sendMessage(Buffer.concat([Buffer.from("echo:"), call.request]));
        const md = new grpc.Metadata();
        md.set("seen-token", String(call.metadata.get("token")[0] ?? ""));
        call.finish({ code: grpc.status.OK, metadata: md });
      },
    });
    server.register("/t.T/Fail", {
      kind: "unary",
      handle: (call) =>
        call.finish({ code: grpc.status.FAILED_PRECONDITION, details: "etcdserver: 100% bad ünïcode" }),
    });
    server.register("/t.T/Many", {
      kind: "server-stream",
      handle: (call) => {
        // All sent in one turn: they leave as one HTTP/2 write and must still arrive as
        // separate messages, in order.
        const n = call.request.readUInt32BE(0);
        for (let i = 0; i < n; i++) call.sendMessage(Buffer.from(`m${i}`));
        call.finish({ code: grpc.status.OK });
      },
    });
    server.register("/t.T/CountWrites", {
      kind: "server-stream",
      handle: (call) => {
        // Counts the HTTP/2 stream's writes (a private field: this is what is being tested).
        const stream = (call as unknown as { stream: { write: (b: Buffer) => boolean } }).stream;
        const write = stream.write.bind(stream);
        let writes = 0;
        stream.write = (b: Buffer) => {
          writes++;
          return write(b);
        };
        for (let i = 0; i < 100; i++) call.sendMessage(Buffer.from([i]));
        setImmediate(() => {
          const md = new grpc.Metadata();
          md.set("writes", String(writes));
          call.finish({ code: grpc.status.OK, metadata: md });
        });
      },
    });
    server.register("/t.T/Framed", {
      kind: "server-stream",
      handle: (call) => {
        // Messages framed by the handler, one empty, between ordinary ones of the same turn.
        call.sendMessage(Buffer.from("first"));
        const bodies = ["f0", "", "f2"].map((b) => Buffer.from(b));
        call.sendFramed(
          framed(bodies),
          bodies.map((b) => b.length),
        );
        call.sendMessage(Buffer.from("last"));
        call.finish({ code: grpc.status.OK });
      },
    });
    server.register("/t.T/Chat", {
      kind: "bidi",
      handle: (call) => {
        call.on("message", (m: Buffer) => call.sendMessage(Buffer.concat([m, m])));
        call.on("halfClose", () => call.finish({ code: grpc.status.OK }));
      },
    });
    server.register("/t.T/Never", { kind: "unary", handle: () => {} });
    server.register("/t.T/Listeners", {
      kind: "unary",
      handle: (call) =>
        call.finishWith(
          Buffer.from(
            `message ${call.listenerCount("message")}, end ${call.listenerCount("end")}: ${call.request.toString()}`,
          ),
          { code: grpc.status.OK },
        ),
    });
    server.register("/t.T/Held", { kind: "unary", handle: () => void held++ });
    // A request starting 0xff is one the client's codec would not take (MethodHandler.requestCheck).
    const requestCheck = (m: Uint8Array) => (m[0] === 0xff ? "proto: bad" : undefined);
    server.register("/t.T/Checked", {
      kind: "unary",
      requestCheck,
      handle: (call) => call.finishWith(call.request, { code: grpc.status.OK }),
    });
    server.register("/t.T/CheckedMany", {
      kind: "server-stream",
      requestCheck,
      handle: (call) => call.finishWith(call.request, { code: grpc.status.OK }),
    });
    server.register("/t.T/CheckedChat", {
      kind: "bidi",
      requestCheck,
      handle: (call) => {
        call.on("message", (m: Buffer) => call.sendMessage(m));
        call.on("halfClose", () => call.finish({ code: grpc.status.OK }));
      },
    });
    server.register("/t.T/Pair", {
      kind: "unary",
      handle: (call) => {
        // Answers once two calls are in: the first reads its headers after the second's block
        // was decoded (the decoder's field arrays reused).
        paired.push(call);
        if (paired.length < 2) return;
        for (const c of paired.splice(0)) {
          const md = c.metadata;
          c.finishWith(
            Buffer.from(
              JSON.stringify({
                x: c.header("x-a"),
                xs: md.get("x-a"),
                bin: md.get("x-b-bin").map((v) => (v as Buffer).toString()),
                token: c.header("token"),
                contentType: c.header("content-type") ?? null,
                path: c.header(":path") ?? null,
                deadline: c.deadline !== undefined,
              }),
            ),
            { code: grpc.status.OK },
          );
        }
      },
    });
    server.register("/t.T/Sent", {
      kind: "unary",
      handle: (call) => {
        // What a proxy forwards: nothing for a call without metadata, until some is set.
        const before = call.sentMetadata?.get("x-kept") ?? null;
        call.metadata.set("token", "set");
        call.finishWith(
          Buffer.from(JSON.stringify({ before, after: call.sentMetadata?.get("token") ?? null })),
          { code: grpc.status.OK },
        );
      },
    });
    server.register("/t.T/Shape", {
      kind: "unary",
      handle: (call) => {
        // What a unary call whose message came in one DATA frame holds (private fields: this
        // is what is being tested): no deframer, no header object, no listener table.
        const fields = call as unknown as Record<string, unknown>;
        call.finishWith(
          Buffer.from(
            JSON.stringify({
              inbox: fields.inbox ?? null,
              headers: fields.headers ?? null,
              fields: fields.fields,
              events: fields._events ?? fields.listenerTable ?? null,
              request: call.request.toString(),
            }),
          ),
          { code: grpc.status.OK },
        );
      },
    });
    server.register("/t.T/Slow", {
      kind: "unary",
      handle: (call) => {
        setTimeout(() => call.finishWith(Buffer.from("late"), { code: grpc.status.OK }), 30);
      },
    });
    server.register("/t.T/Parts", {
      kind: "unary",
      handle: (call) => {
        // The request cut into uneven pieces (one empty) and sent as one message of them.
        const r = call.request;
        const cuts = [0, 1, 1, Math.floor(r.length / 3), r.length - 7, r.length];
        const parts = cuts.slice(1).map((end, i) => r.subarray(cuts[i], end));
        call.sendMessageParts(new MessageParts(parts));
        call.finish({ code: grpc.status.OK });
      },
    });
    server.register("/t.T/TooLarge", {
      kind: "unary",
      handle: (call) => {
        // Over 2 GiB in references to one 1 MiB buffer: refused before anything is sent.
        const piece = Buffer.alloc(1024 * 1024);
        const parts = Array.from(
          { length: Math.floor(MAX_SEND_MESSAGE_BYTES / piece.length) + 1 },
          () => piece,
        );
        call.sendMessageParts(new MessageParts(parts));
        call.finish({ code: grpc.status.OK });
      },
    });
    port = await server.listen("127.0.0.1:0");
    client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  after(async () => {
    client.close();
    await server.close(1_000);
  });

  const unary = (path: string, request: Buffer, md = new grpc.Metadata(), options: grpc.CallOptions = {}) =>
    new Promise<{ err: grpc.ServiceError | null; res?: Buffer; trailers?: grpc.Metadata }>((resolve) => {
      let trailers: grpc.Metadata | undefined;
      const call = client.makeUnaryRequest(path, pass, pass, request, md, options, (err, res) =>
        setImmediate(() => resolve({ err, res, trailers })),
      );
      call.on("status", (s: grpc.StatusObject) => {
        trailers = s.metadata;
      });
    });

  it("answers a unary call with the handler's bytes and trailing metadata, seeing the caller's", async () => {
    const md = new grpc.Metadata();
    md.set("token", "abc");
    const { err, res, trailers } = await unary("/t.T/Echo", Buffer.from("hi"), md);
    assert.equal(err, null);
    assert.equal(res?.toString(), "echo:hi");
    assert.deepEqual(trailers?.get("seen-token"), ["abc"]);
  });

  it("carries a large request split over many DATA frames", async () => {
    const big = Buffer.alloc(3 * 1024 * 1024, 7);
    const { err, res } = await unary("/t.T/Echo", big);
    assert.equal(err, null);
    assert.equal(res?.length, big.length + 5);
  });

  it("sends a message given in pieces as the one message they make, small or large", async () => {
    for (const size of [10, 3 * 1024 * 1024 + 11]) {
      const request = Buffer.alloc(size);
      for (let i = 0; i < size; i++) request[i] = (i * 7) % 256;
      const { err, res } = await unary("/t.T/Parts", request);
      assert.equal(err, null);
      assert.deepEqual(res, request);
    }
  });

  it("refuses a message over grpc-go's 2 GiB send limit as grpc-go does", async () => {
    const { err } = await unary("/t.T/TooLarge", Buffer.alloc(0));
    assert.equal(err?.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(
      err?.details,
      `grpc: trying to send message larger than max (${2048 * 1024 * 1024} vs. 2147483647)`,
    );
  });

  it("reports an error status with its details intact (percent-encoded on the wire)", async () => {
    const { err } = await unary("/t.T/Fail", Buffer.alloc(0));
    assert.equal(err?.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(err?.details, "etcdserver: 100% bad ünïcode");
  });

  it("answers an unknown method UNIMPLEMENTED", async () => {
    const { err } = await unary("/t.T/Nope", Buffer.alloc(0));
    assert.equal(err?.code, grpc.status.UNIMPLEMENTED);
  });

  it("ends a call whose deadline passes with DEADLINE_EXCEEDED", async () => {
    const { err } = await unary("/t.T/Never", Buffer.alloc(0), new grpc.Metadata(), {
      deadline: Date.now() + 200,
    });
    assert.equal(err?.code, grpc.status.DEADLINE_EXCEEDED);
  });

  /** A call by node:http2 with a grpc-timeout of our choosing (it has no deadline of its own). */
  async function rawCall(
    session: http2.ClientHttp2Session,
    path: string,
    timeout: string | undefined,
    body: Buffer = Buffer.from([0, 0, 0, 0, 0]),
    headers: Record<string, string> = {},
  ): Promise<{ status: string | undefined; message: string | undefined; body: Buffer }> {
    const request = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      ...(timeout === undefined ? {} : { "grpc-timeout": timeout }),
      ...headers,
    });
    request.end(body);
    const chunks: Buffer[] = [];
    request.on("data", (c: Buffer) => chunks.push(c));
    return new Promise((resolve, reject) => {
      let status: string | undefined;
      let message: string | undefined;
      const read = (h: http2.IncomingHttpHeaders) => {
        status = (h["grpc-status"] as string | undefined) ?? status;
        message = (h["grpc-message"] as string | undefined) ?? message;
      };
      // A trailers-only answer has its status in the response headers.
      request.once("response", read);
      request.once("trailers", read);
      request.once("close", () => resolve({ status, message, body: Buffer.concat(chunks) }));
      request.once("error", reject);
    });
  }

  it("ends a call at its deadline on the server's side, DEADLINE_EXCEEDED", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const started = Date.now();
      const { status } = await rawCall(session, "/t.T/Never", "100m");
      assert.equal(status, String(grpc.status.DEADLINE_EXCEEDED));
      assert.ok(Date.now() - started >= 100, "not before its deadline");
    } finally {
      session.close();
    }
  });

  it("serves a call whose grpc-timeout is beyond a Node timer's 24.8 days", async () => {
    // 99999999S is ~3.2 years: a setTimeout of that long fires after 1 ms instead.
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const { status, body } = await rawCall(session, "/t.T/Slow", "99999999S");
      assert.equal(status, "0");
      assert.equal(body.subarray(5).toString(), "late");
    } finally {
      session.close();
    }
  });

  it("runs a unary handler once its one message and the half-close are in, with no listener per call", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const one = await rawCall(session, "/t.T/Listeners", undefined, framed([Buffer.from("x")]));
      assert.equal(one.status, "0");
      assert.equal(one.body.subarray(5).toString(), "message 0, end 0: x");
      const two = await rawCall(
        session,
        "/t.T/Listeners",
        undefined,
        framed([Buffer.from("x"), Buffer.from("y")]),
      );
      // grpc-go 1.26 (etcd 3.4's) reads the first message of a unary call and no more.
      assert.equal(two.status, "0");
      assert.equal(two.body.subarray(5).toString(), "message 0, end 0: x");
      const none = await rawCall(session, "/t.T/Listeners", undefined, Buffer.alloc(0));
      assert.deepEqual([none.status, none.message], [String(grpc.status.UNKNOWN), "EOF"]);
      const cut = await rawCall(
        session,
        "/t.T/Listeners",
        undefined,
        framed([Buffer.from("xyz")]).subarray(0, 6),
      );
      assert.deepEqual([cut.status, cut.message], [String(grpc.status.UNKNOWN), "unexpected EOF"]);
    } finally {
      session.close();
    }
  });

  it("refuses what grpc-go (etcd 3.4's) refuses, with its codes and words", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const answer = async (path: string, body?: Buffer, headers?: Record<string, string>) => {
      const r = await rawCall(session, path, undefined, body, headers);
      return [Number(r.status), r.message];
    };
    try {
      const one = framed([Buffer.from("x")]);
      assert.deepEqual(await answer("/t.T/Nope"), [
        grpc.status.UNIMPLEMENTED,
        "unknown method Nope for service t.T",
      ]);
      assert.deepEqual(await answer("/t.U/Echo"), [grpc.status.UNIMPLEMENTED, "unknown service t.U"]);
      assert.deepEqual(await answer("/t"), [grpc.status.RESOURCE_EXHAUSTED, 'malformed method name: "/t"']);
      assert.deepEqual(await answer("/t.T/Echo", one, { "grpc-encoding": "gzip" }), [
        grpc.status.UNIMPLEMENTED,
        'grpc: Decompressor is not installed for grpc-encoding "gzip"',
      ]);
      const flagged = (flag: number) => Buffer.concat([Buffer.from([flag]), one.subarray(1)]);
      assert.deepEqual(await answer("/t.T/Echo", flagged(1)), [
        grpc.status.INTERNAL,
        "grpc: compressed flag set with identity or empty encoding",
      ]);
      assert.deepEqual(await answer("/t.T/Echo", flagged(2)), [
        grpc.status.INTERNAL,
        "grpc: received unexpected payload format 2",
      ]);
      // A request its client's codec would not decode: unary and streaming calls in their words.
      const bad = framed([Buffer.from([0xff])]);
      assert.deepEqual(await answer("/t.T/Checked", bad), [
        grpc.status.INTERNAL,
        "grpc: error unmarshalling request: proto: bad",
      ]);
      assert.deepEqual(await answer("/t.T/CheckedMany", bad), [
        grpc.status.INTERNAL,
        "grpc: failed to unmarshal the received message proto: bad",
      ]);
      const chat = await rawCall(
        session,
        "/t.T/CheckedChat",
        undefined,
        framed([Buffer.from("ok"), Buffer.from([0xff])]),
      );
      assert.deepEqual(
        [Number(chat.status), chat.message],
        [grpc.status.INTERNAL, "grpc: failed to unmarshal the received message proto: bad"],
      );
      assert.equal(chat.body.subarray(5).toString(), "ok", "the good message before it was served");
      assert.deepEqual(await answer("/t.T/Checked", one), [grpc.status.OK, undefined]);
    } finally {
      session.close();
    }
  });

  it("keeps each call's own custom headers when calls overlap on one connection", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const call = (headers: http2.OutgoingHttpHeaders) => {
        const request = session.request({
          ":method": "POST",
          ":path": "/t.T/Pair",
          "content-type": "application/grpc",
          te: "trailers",
          ...headers,
        });
        request.end(framed([Buffer.from("r")]));
        const chunks: Buffer[] = [];
        request.on("data", (c: Buffer) => chunks.push(c));
        return new Promise<unknown>((resolve, reject) => {
          request.once("close", () => resolve(JSON.parse(Buffer.concat(chunks).subarray(5).toString())));
          request.once("error", reject);
        });
      };
      // The same names with other values, one repeated, one in the peer's dynamic table for
      // the second call (node:http2 indexes what it sends), one never indexed.
      const first = call({
        "x-a": ["one", "uno"],
        "x-b-bin": Buffer.from("first").toString("base64"),
        "grpc-timeout": "10S",
        [http2.sensitiveHeaders]: ["x-a"],
      });
      const second = call({ "x-a": "two", "x-b-bin": Buffer.from("second").toString("base64"), token: "t2" });
      assert.deepEqual(await first, {
        x: "one",
        xs: ["one", "uno"],
        bin: ["first"],
        contentType: null,
        path: null,
        deadline: true,
      });
      assert.deepEqual(await second, {
        x: "two",
        xs: ["two"],
        bin: ["second"],
        token: "t2",
        contentType: null,
        path: null,
        deadline: false,
      });
    } finally {
      session.close();
    }
  });

  it("holds no deframer, header object or listener table for a unary call of one DATA frame", async () => {
    const md = new grpc.Metadata();
    md.set("x-kept", "k");
    const { err, res } = await unary("/t.T/Shape", Buffer.from("body"), md);
    assert.equal(err, null);
    const shape = JSON.parse(res!.toString()) as { fields: string[] };
    assert.deepEqual(
      { ...shape, fields: shape.fields.filter((f, i) => i % 2 === 0 && f.startsWith("x-")) },
      { inbox: null, headers: null, fields: ["x-kept"], events: null, request: "body" },
    );
  });

  it("has no metadata to forward for a call that sent none, until the server sets some", async () => {
    // node:http2 sends no header beyond gRPC's own (grpc-js adds accept-encoding, metadata).
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const none = await rawCall(session, "/t.T/Sent", "5S");
      assert.deepEqual(JSON.parse(none.body.subarray(5).toString()), { before: null, after: ["set"] });
    } finally {
      session.close();
    }
    const md = new grpc.Metadata();
    md.set("x-kept", "k");
    const some = await unary("/t.T/Sent", Buffer.alloc(0), md);
    assert.deepEqual(JSON.parse(some.res!.toString()), { before: ["k"], after: ["set"] });
  });

  it("refuses a compressed message that came in one DATA frame, as one in many", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const compressed = Buffer.from([1, 0, 0, 0, 2, 0x61, 0x62]);
      const { status, message } = await rawCall(session, "/t.T/Echo", undefined, compressed);
      assert.deepEqual(
        [status, message],
        [String(grpc.status.INTERNAL), "grpc: compressed flag set with identity or empty encoding"],
      );
      // An incomplete message (its prefix says more than came): no request message at all.
      const short = await rawCall(session, "/t.T/Listeners", undefined, Buffer.from([0, 0, 0, 0, 9, 1]));
      assert.deepEqual([short.status, short.message], [String(grpc.status.UNKNOWN), "unexpected EOF"]);
    } finally {
      session.close();
    }
  });

  it("holds no Node timer per call for the calls' deadlines", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    await new Promise<void>((resolve) => session.once("connect", () => resolve()));
    const before = timers();
    const calls = Array.from({ length: 50 }, () =>
      rawCall(session, "/t.T/Held", "20S").catch(() => undefined),
    );
    while (held < 50) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.ok(timers() - before <= 1, `${timers() - before} timers for 50 calls`);
    session.destroy();
    await Promise.all(calls);
  });

  it("delivers messages sent in one turn separately and in order", async () => {
    const n = Buffer.alloc(4);
    n.writeUInt32BE(2_000);
    const got = await new Promise<string[]>((resolve, reject) => {
      const out: string[] = [];
      const call = client.makeServerStreamRequest("/t.T/Many", pass, pass, n);
      call.on("data", (m: Buffer) => out.push(m.toString()));
      call.on("error", reject);
      call.on("status", (s: grpc.StatusObject) => (s.code === 0 ? resolve(out) : reject(s)));
    });
    assert.equal(got.length, 2_000);
    assert.deepEqual(got.slice(0, 3), ["m0", "m1", "m2"]);
    assert.equal(got[1_999], "m1999");
  });

  it("sends messages framed by the handler as separate messages, in order with the others", async () => {
    const got = await new Promise<string[]>((resolve, reject) => {
      const out: string[] = [];
      const call = client.makeServerStreamRequest("/t.T/Framed", pass, pass, Buffer.alloc(0));
      call.on("data", (m: Buffer) => out.push(m.toString()));
      call.on("error", reject);
      call.on("status", (s: grpc.StatusObject) => (s.code === 0 ? resolve(out) : reject(s)));
    });
    assert.deepEqual(got, ["first", "f0", "", "f2", "last"]);
  });

  it("writes the messages a call sends in one turn as one HTTP/2 write", async () => {
    const trailers = await new Promise<grpc.Metadata>((resolve, reject) => {
      const call = client.makeServerStreamRequest("/t.T/CountWrites", pass, pass, Buffer.alloc(0));
      call.on("data", () => {});
      call.on("error", reject);
      call.on("status", (st: grpc.StatusObject) => resolve(st.metadata));
    });
    assert.deepEqual(trailers.get("writes"), ["1"]);
  });

  it("streams both ways and ends when the client half-closes", async () => {
    const got = await new Promise<string[]>((resolve, reject) => {
      const out: string[] = [];
      const call = client.makeBidiStreamRequest("/t.T/Chat", pass, pass);
      call.on("data", (m: Buffer) => out.push(m.toString()));
      call.on("error", reject);
      call.on("status", (s: grpc.StatusObject) => (s.code === 0 ? resolve(out) : reject(s)));
      call.write(Buffer.from("a"));
      call.write(Buffer.from("b"));
      call.end();
    });
    assert.deepEqual(got, ["aa", "bb"]);
  });
});

describe("GrpcHttp2Server limits", () => {
  it("refuses a request message over maxReceiveBytes with RESOURCE_EXHAUSTED", async () => {
    const server = new GrpcHttp2Server({ maxReceiveBytes: 1024 });
    server.register("/t.T/Echo", {
      kind: "unary",
      handle: (call) => {
        call.sendMessage(call.request);
        call.finish({ code: grpc.status.OK });
      },
    });
    const port = await server.listen("127.0.0.1:0");
    const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const call = (size: number) =>
      new Promise<grpc.ServiceError | null>((resolve) =>
        client.makeUnaryRequest("/t.T/Echo", pass, pass, Buffer.alloc(size), (err) => resolve(err)),
      );
    try {
      assert.equal(await call(1024), null);
      const err = await call(1025);
      assert.equal(err?.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.equal(err?.details, "grpc: received message larger than max (1025 vs. 1024)");
    } finally {
      client.close();
      await server.close(1_000);
    }
  });
});

describe("GrpcHttp2Server close", () => {
  it("serves a call on a connection accepted before close() that speaks after it, and waits for it", {
    timeout: 10_000,
  }, async (t) => {
    const server = new GrpcHttp2Server();
    server.register("/t.T/Echo", {
      kind: "unary",
      handle: (call) => {
        call.sendMessage(Buffer.concat([Buffer.from("echo:"), call.request]));
        call.finish({ code: grpc.status.OK });
      },
    });
    const port = await server.listen("127.0.0.1:0");
    const socket = net.connect(port, "127.0.0.1");
    t.after(() => socket.destroy());
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    // Accepted, but no byte yet: not a connection the server knows to send GOAWAY on.
    await new Promise((resolve) => setTimeout(resolve, 50));
    let closed = false;
    const closing = server.close(5_000).then(() => {
      closed = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(closed, false, "close() waits for the accepted socket");
    // The call was on the wire before the client could know: it is taken, not refused.
    const session = http2.connect(`http://127.0.0.1:${port}`, { createConnection: () => socket });
    const goaways: number[] = [];
    session.on("goaway", (_code: number, lastStreamId: number) => goaways.push(lastStreamId));
    session.on("error", () => {});
    const request = session.request({
      ":method": "POST",
      ":path": "/t.T/Echo",
      "content-type": "application/grpc",
      te: "trailers",
    });
    const message = Buffer.from([0, 0, 0, 0, 2, 0x68, 0x69]);
    request.end(message);
    const chunks: Buffer[] = [];
    request.on("data", (c: Buffer) => chunks.push(c));
    const trailers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      request.once("trailers", resolve);
      request.once("error", reject);
    });
    assert.equal(trailers["grpc-status"], "0");
    assert.equal(Buffer.concat(chunks).subarray(5).toString(), "echo:hi");
    await closing;
    // First the notice that refuses nothing (node:http2 reports only the first GOAWAY).
    assert.equal(goaways[0], 2 ** 31 - 1);
  });
});

describe("ServerCall.sendFramed on a call without its own stream", () => {
  it("sends each framed message through sendMessage, in order", () => {
    const sent: string[] = [];
    class Collecting extends ServerCall {
      get metadata(): grpc.Metadata {
        return new grpc.Metadata();
      }
      get remoteAddress(): string | undefined {
        return undefined;
      }
      header(): string | undefined {
        return undefined;
      }
      get writableLength(): number {
        return 0;
      }
      sendMessage(message: Uint8Array): boolean {
        sent.push(Buffer.from(message).toString());
        return true;
      }
      finish(_status: CallStatus): void {}
    }
    const bodies = ["a", "", "ccc"].map((b) => Buffer.from(b));
    const call = new Collecting("/t.T/X", undefined);
    assert.equal(
      call.sendFramed(
        framed(bodies),
        bodies.map((b) => b.length),
      ),
      true,
    );
    assert.deepEqual(sent, ["a", "", "ccc"]);
  });
});
