// Unary gRPC calls and the watch and keep-alive streams to one member over one HTTP/2
// connection of our own core (@etcd-ts/api's ClientSocketConnection and H2ClientConnection, as
// the members' peer transport dials). The
// gateway's hottest path only needs "send these bytes, give me the answer's bytes, status and
// trailers": grpc-js's client stack (interceptors, resolver, load-balancer, per-call filters)
// costs a large share of the proxy's CPU per call for features a fixed member address never
// uses, and node:http2's client session a stream object, an EventEmitter and a round of nghttp2
// callbacks per call. The snapshot stream still uses grpc-js (upstream-client.ts).
//
// Calls whose answers are small (not Range: one full list would hold every call queued behind
// it) go over one multiplexed stream when the member serves it (forward-stream.ts). Ranges take
// a second connection of their own: on one connection the member's bytes arrive in the order it
// wrote them, so a put's answer written after a full list's DATA was read only after that DATA
// (up to a socket buffer's and a flow-control window's worth, megabytes, on the way).
//
// Failure reporting follows grpc-js's wording where the retry policy depends on it: a
// call that could not be written because no connection could be made fails with
// "No connection established. ..." (safe to retry anything); a connection lost after the
// request was written fails with "Connection dropped" (outcome unknown).

import {
  ClientSocketConnection,
  type ClientStreamEvents,
  decodeGrpcMessage,
  encodeLiteralHeaderBlock,
  FORWARD_CALLS_PATH,
  frameGrpcMessage,
  grpcTimeout,
  H2_ERROR,
  type H2ClientStream,
  type HeaderField,
  type IncomingHeaders,
  MessageParts,
  type MessageWriter,
  metadataFromHeaders,
} from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
import { ForwardStream } from "./forward-stream.js";
import type { UpstreamTls } from "./upstream-client.js";

/** A call under way: its outcome, and how to abandon it. */
export interface PendingUnary {
  result: Promise<UnaryResult>;
  cancel: () => void;
}

export interface UnaryResult {
  error: grpc.StatusObject | undefined;
  response: Buffer | undefined;
  trailers: grpc.Metadata | undefined;
  /**
   * A large answer as the pieces it arrived in: sent on as they are (a full list of 280 MB is
   * then held once, never joined); `response` joins them only if something reads it.
   */
  parts?: MessageParts;
  /**
   * The answer went on to the client as it arrived (ResponseRelay): `response` is undefined,
   * and the call cannot be retried, since the client has part of an answer.
   */
  relayed?: boolean;
}

/**
 * Where an answer of at least `minBytes` goes as it arrives, instead of being kept until the
 * member has sent all of it: the gateway holds a flow-control window's worth of a full list,
 * not the list (the member's stream waits while the client reads).
 */
export interface ResponseRelay {
  readonly minBytes: number;
  /** The client's side of the message; undefined: keep the answer (UnaryResult.parts). */
  start(length: number): MessageWriter | undefined;
}

// As upstream-client.ts's grpc-js channels: well above members' --grpc-keepalive-min-time (5 s).
const KEEPALIVE = { intervalMs: 10_000, timeoutMs: 2_000 };
// Large ranges should not crawl through 64 KiB windows.
const WINDOW_BYTES = 8 * 1024 * 1024;
/** AloneCall.keep: a DATA payload this large (a full frame) keeps its read buffer, smaller ones are copied. */
const KEEP_IN_PLACE_BYTES = 16 * 1024;

/**
 * Methods sent over the member's Forward/Calls stream: etcd's unary calls with small answers.
 * Range stays on its own streams (a large answer would delay every answer behind it), as do
 * Auth (services/auth serves no Forward), Election and Lock (held open for long).
 */
const FORWARDED_METHOD =
  /^\/etcdserverpb\.(?:KV\/(?:Put|DeleteRange|Txn|Compact)|Lease\/|Cluster\/|Maintenance\/)/;
/** Larger requests take their own stream: they would hold up the frames behind them. */
const MAX_FORWARDED_REQUEST_BYTES = 64 * 1024;
export const RANGE_PATH = "/etcdserverpb.KV/Range";

/** The member's two connections: "calls" for everything but Ranges, "ranges" for those. */
export type Lane = "calls" | "ranges";

/** One member's HTTP/2 connection, reconnected lazily after it closes or goes away. */
export class MemberChannel {
  private readonly connections: Record<Lane, ClientSocketConnection | undefined> = {
    calls: undefined,
    ranges: undefined,
  };
  /** The Forward/Calls stream on the current connection. */
  private forward: ForwardStream | undefined;
  /** A connection whose member refused Forward/Calls (etcd): its calls each take a stream. */
  private refusedBy: ClientSocketConnection | undefined;
  /** Why the last connection failed, for a call whose connection never came up. */
  private lastError = "";
  private closed = false;
  private readonly host: string;
  private readonly port: number;
  /** Each method's fixed header fields, encoded once. */
  private readonly fixedBlocks = new Map<string, Buffer>();
  /** Calls waiting for a stream: the member's SETTINGS_MAX_CONCURRENT_STREAMS is reached. */
  private readonly waiting: WaitingCall[] = [];
  private startingWaiter = false;

  /** `tls`: dial the member over TLS (the gateway's --cacert/--cert/--key). */
  constructor(
    readonly address: string,
    private readonly tls?: UpstreamTls,
  ) {
    const url = new URL(`http://${address}`);
    this.host = url.hostname;
    this.port = Number(url.port || 80);
  }

  /**
   * `relay`: where a large answer goes as it arrives (calls on their own stream only: Range).
   * `smallAnswer`: the caller knows the answer is small (the read barrier's count-only Range), so
   * it shares the Forward stream, where it can hold up no answer behind it.
   */
  call(
    path: string,
    request: Buffer,
    metadata: grpc.Metadata | undefined,
    deadlineMs: number | undefined,
    relay?: ResponseRelay,
    smallAnswer = false,
  ): PendingUnary {
    if (
      !this.closed &&
      request.length <= MAX_FORWARDED_REQUEST_BYTES &&
      (smallAnswer || FORWARDED_METHOD.test(path))
    ) {
      const stream = this.forwardStream();
      if (stream !== undefined) return stream.call(path, request, metadata, deadlineMs);
    }
    return this.callAlone(path, request, metadata, deadlineMs, relay);
  }

  /** The current connection's Forward/Calls stream, opened on first use; undefined: not offered or full. */
  private forwardStream(): ForwardStream | undefined {
    const connection = this.current();
    if (connection === this.refusedBy) return undefined;
    let stream = this.forward;
    if (stream === undefined || stream.connection !== connection || !stream.open) {
      stream?.finish();
      stream = ForwardStream.open(connection, this.headerBlock(FORWARD_CALLS_PATH, undefined, undefined), {
        lastError: () => connection.error || this.lastError,
        callAlone: (path, request, metadata, deadlineMs) =>
          this.callAlone(path, request, metadata, deadlineMs),
        refused: () => {
          this.refusedBy = connection;
        },
        ended: () => this.streamEnded(),
      });
      // undefined: the connection is going away; the call's own stream reports it.
      if (stream === undefined) return undefined;
      this.forward = stream;
    }
    return stream.accepting ? stream : undefined;
  }

  /** One call on its own HTTP/2 stream (a Range on the "ranges" connection). */
  callAlone(
    path: string,
    request: Buffer,
    metadata: grpc.Metadata | undefined,
    deadlineMs: number | undefined,
    relay?: ResponseRelay,
    isRetry = false,
  ): PendingUnary {
    if (this.closed) return settled(failure(grpc.status.UNAVAILABLE, "Channel closed"));
    const lane: Lane = path === RANGE_PATH ? "ranges" : "calls";
    const connection = this.current(lane);
    if (connection.h2.full || (this.waiting.length > 0 && !this.startingWaiter)) {
      // node:http2 queued these too: a member's --max-concurrent-streams holds for each of the
      // gateway's connections, as for any client's.
      const waiter = new WaitingCall(this.waiting, lane, deadlineMs, () =>
        this.callAlone(path, request, metadata, deadlineMs, relay, isRetry),
      );
      this.waiting.push(waiter);
      return waiter;
    }
    const call = new AloneCall(this, connection, path, request, metadata, deadlineMs, relay, isRetry);
    const block = this.headerBlock(path, metadata, deadlineMs);
    const stream = connection.h2.request(block, call);
    if (stream === undefined) {
      return settled(
        failure(
          grpc.status.UNAVAILABLE,
          `No connection established. Last error: ${connection.error || "the connection is closing"}`,
        ),
      );
    }
    call.start(stream);
    return call;
  }

  /**
   * A stream (watch, keep-alive, snapshot: upstream-stream.ts) on the current connection;
   * undefined when the connection is closing or the member takes no more streams now.
   */
  openStream(
    path: string,
    metadata: grpc.Metadata,
    events: ClientStreamEvents,
    deadlineMs?: number,
  ): { stream: H2ClientStream; connection: ClientSocketConnection } | undefined {
    if (this.closed) return undefined;
    const connection = this.current();
    if (connection.h2.full) return undefined;
    const stream = connection.h2.request(this.headerBlock(path, metadata, deadlineMs), events);
    return stream === undefined ? undefined : { stream, connection };
  }

  /** @internal A stream to the member ended: calls waiting for one may go. */
  streamEnded(): void {
    while (this.waiting.length > 0 && !this.closed) {
      if (this.current(this.waiting[0]!.lane).h2.full) return;
      // Its turn: it goes before the calls still waiting, not behind them.
      this.startingWaiter = true;
      try {
        this.waiting.shift()!.start();
      } finally {
        this.startingWaiter = false;
      }
    }
  }

  close(): void {
    this.closed = true;
    for (const waiter of this.waiting.splice(0))
      waiter.fail(failure(grpc.status.UNAVAILABLE, "Channel closed"));
    this.forward?.finish();
    for (const lane of ["calls", "ranges"] as const) {
      this.connections[lane]?.close();
      this.connections[lane] = undefined;
    }
  }

  /** A request's header block: the fixed fields, `path`, the deadline and the caller's metadata. */
  private headerBlock(path: string, metadata: grpc.Metadata | undefined, deadlineMs: number | undefined) {
    const fields: HeaderField[] = [];
    if (deadlineMs !== undefined) fields.push(field("grpc-timeout", grpcTimeout(deadlineMs - Date.now())));
    if (metadata !== undefined) {
      const headers = metadata.toHttp2Headers();
      for (const name in headers) {
        const value = headers[name];
        if (value === undefined) continue;
        if (Array.isArray(value)) for (const v of value) fields.push(field(name, String(v)));
        else fields.push(field(name, String(value)));
      }
    }
    // The fixed fields with :path, once per method (our literals never touch the member's HPACK
    // table, so a block means the same on every connection).
    let fixed = this.fixedBlocks.get(path);
    if (fixed === undefined) {
      // Pseudo-headers come first (RFC 9113 8.3).
      fixed = encodeLiteralHeaderBlock([
        field(":method", "POST"),
        field(":scheme", this.tls === undefined ? "http" : "https"),
        field(":authority", this.address),
        field(":path", path),
        field("content-type", "application/grpc"),
        field("te", "trailers"),
      ]);
      // Bounded: the gateway calls a fixed set of etcd methods; anything else is not kept.
      if (this.fixedBlocks.size < 128) this.fixedBlocks.set(path, fixed);
    }
    return fields.length === 0 ? fixed : Buffer.concat([fixed, encodeLiteralHeaderBlock(fields)]);
  }

  /** The connection new calls of `lane` go on: the current one while it takes streams, else a new one. */
  private current(lane: Lane = "calls"): ClientSocketConnection {
    const existing = this.connections[lane];
    if (existing?.usable) return existing;
    const upstreamTls = this.tls;
    const connection: ClientSocketConnection = new ClientSocketConnection({
      host: this.host,
      port: this.port,
      ...(upstreamTls === undefined
        ? {}
        : {
            tls: {
              ...(upstreamTls.ca !== undefined ? { ca: upstreamTls.ca } : {}),
              ...(upstreamTls.cert !== undefined ? { cert: upstreamTls.cert } : {}),
              ...(upstreamTls.key !== undefined ? { key: upstreamTls.key } : {}),
            },
          }),
      windowBytes: WINDOW_BYTES,
      // A relayed Range's DATA goes on from the buffers it was read into, reused once written
      // (AloneCall holds them): no 64 KiB allocated per read of a 280 MB answer. Advertising a
      // 64 KiB SETTINGS_MAX_FRAME_SIZE here (a quarter of the frames per relayed byte) did not
      // pay in paired runs at 1,000,000 keys: puts' p99 lower in 5 of 16 rounds (JOURNAL gwrelay3).
      recycleReads: lane === "ranges",
      keepalive: KEEPALIVE,
      connected: () => {
        this.lastError = "";
      },
      goAway: () => {
        // New calls go to a fresh connection; calls in flight finish on this one.
        if (this.connections[lane] === connection) this.connections[lane] = undefined;
        if (this.forward?.connection === connection) this.forward.finish();
      },
      closed: () => {
        if (connection.error !== "") this.lastError = connection.error;
        if (this.connections[lane] === connection) this.connections[lane] = undefined;
      },
    });
    // The gateway's lifetime is its servers' and timers', never an idle member connection's.
    connection.socket.unref();
    this.connections[lane] = connection;
    return connection;
  }

  /** @internal Why a call on `connection` failed before it was written anywhere. */
  notConnectedError(connection: ClientSocketConnection): string {
    return `No connection established. Last error: ${connection.error || this.lastError || "connection closed"}`;
  }
}

function field(name: string, value: string): HeaderField {
  return { name, value, neverIndex: false };
}

function settled(result: UnaryResult): PendingUnary {
  return { result: Promise.resolve(result), cancel: () => {} };
}

/** A call waiting for the member to take one more stream; its deadline and cancel hold meanwhile. */
class WaitingCall implements PendingUnary {
  readonly result: Promise<UnaryResult>;
  private resolve!: (result: UnaryResult) => void;
  private timer: NodeJS.Timeout | undefined;
  private started: PendingUnary | undefined;
  private done = false;

  constructor(
    private readonly queue: WaitingCall[],
    /** The connection it waits for a stream on. */
    readonly lane: Lane,
    deadlineMs: number | undefined,
    private readonly send: () => PendingUnary,
  ) {
    this.result = new Promise<UnaryResult>((resolve) => {
      this.resolve = resolve;
    });
    if (deadlineMs !== undefined) {
      this.timer = setTimeout(
        () => this.fail(failure(grpc.status.DEADLINE_EXCEEDED, "Deadline exceeded")),
        Math.max(0, deadlineMs - Date.now()),
      );
    }
  }

  /** Sends the call (its turn came): its outcome becomes this one's. */
  start(): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.started = this.send();
    void this.started.result.then(this.resolve);
  }

  fail(result: UnaryResult): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    const at = this.queue.indexOf(this);
    if (at >= 0) this.queue.splice(at, 1);
    this.resolve(result);
  }

  readonly cancel = (): void => {
    if (this.started !== undefined) this.started.cancel();
    else this.fail(failure(grpc.status.CANCELLED, "Cancelled on client"));
  };
}

/** One call on its own stream: the events of its stream, and its outcome. */
class AloneCall implements ClientStreamEvents, PendingUnary {
  readonly result: Promise<UnaryResult>;
  private resolve!: (result: UnaryResult) => void;
  private stream: H2ClientStream | undefined;
  private readonly chunks: Buffer[] = [];
  private readonly answer = new AnswerStatus();
  private settled = false;
  private localError: grpc.StatusObject | undefined;
  /** Relaying: undecided until the 5-byte prefix is in, then a writer or none (keep it all). */
  private writer: MessageWriter | undefined;
  private relayDecided: boolean;
  private received = 0;
  private timer: NodeJS.Timeout | undefined;
  /** A stream the member refused (REFUSED_STREAM: not processed) is sent again once: that call. */
  private retry: PendingUnary | undefined;
  /** The member's stream waits for the client's writer to drain. */
  private paused = false;

  constructor(
    private readonly channel: MemberChannel,
    private readonly connection: ClientSocketConnection,
    private readonly path: string,
    private readonly request: Buffer,
    private readonly metadata: grpc.Metadata | undefined,
    private readonly deadlineMs: number | undefined,
    private readonly relay: ResponseRelay | undefined,
    /** This call is the one retry of a refused stream. */
    private readonly isRetry: boolean,
  ) {
    this.relayDecided = relay === undefined;
    this.result = new Promise<UnaryResult>((resolve) => {
      this.resolve = resolve;
    });
  }

  start(stream: H2ClientStream): void {
    this.stream = stream;
    stream.write(frameGrpcMessage(this.request));
    stream.end();
    if (this.deadlineMs !== undefined) {
      this.timer = setTimeout(
        () => this.abandon(grpc.status.DEADLINE_EXCEEDED, "Deadline exceeded"),
        Math.max(0, this.deadlineMs - Date.now()),
      );
    }
  }

  readonly cancel = (): void => this.abandon(grpc.status.CANCELLED, "Cancelled on client");

  private abandon(code: number, details: string): void {
    if (this.retry !== undefined) {
      this.retry.cancel();
      return;
    }
    if (this.settled) return;
    this.localError = { code, details, metadata: new grpc.Metadata() };
    if (this.stream !== undefined) this.stream.reset(H2_ERROR.CANCEL);
    else this.settle({ error: this.localError, response: undefined, trailers: undefined });
  }

  headers(h: IncomingHeaders, _endStream: boolean): void {
    this.answer.read(h);
  }

  data(chunk: Buffer): void {
    const writer = this.writer;
    if (writer !== undefined) {
      // Its read buffer is reused once the chunk is written to the client (recycleReads).
      if (!writer.write(chunk, this.connection.hold(chunk))) this.waitFor(writer);
      return;
    }
    this.chunks.push(this.keep(chunk));
    if (this.relayDecided) return;
    this.received += chunk.length;
    if (this.received < 5) return;
    this.relayDecided = true;
    const chunks = this.chunks;
    const head = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.received);
    const length = head.readUInt32BE(1);
    if (head[0] !== 0 || length < this.relay!.minBytes) return;
    const started = this.relay!.start(length);
    if (started === undefined) return;
    this.writer = started;
    chunks.length = 0;
    const body = head.subarray(5);
    if (body.length > 0 && !started.write(body, this.connection.hold(body))) this.waitFor(started);
  }

  /**
   * A chunk kept past this call, from a reused read buffer (recycleReads): a partial frame is
   * copied (a small answer's), a full one keeps its buffer out of reuse (a large answer is not
   * copied; the GC takes its buffers as before).
   */
  private keep(chunk: Buffer): Buffer {
    const release = this.connection.hold(chunk);
    if (release === undefined || chunk.length >= KEEP_IN_PLACE_BYTES) return chunk;
    release();
    return Buffer.from(chunk);
  }

  /** The client is full: the member's stream waits (its window is not replenished) until it drains. */
  private waitFor(writer: MessageWriter): void {
    if (this.paused) return;
    this.paused = true;
    const stream = this.stream!;
    stream.pauseReading();
    writer.onDrain(() => {
      this.paused = false;
      stream.resumeReading();
    });
  }

  drain(): void {}

  close(resetCode: number | undefined): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.outcome(resetCode);
    this.channel.streamEnded();
  }

  private outcome(resetCode: number | undefined): void {
    if (this.settled) return;
    const { code: status, details, trailers, httpStatus } = this.answer;
    if (this.writer !== undefined) {
      this.settle(relayedResult(this.localError, status, details, trailers, httpStatus));
      return;
    }
    if (status === undefined) {
      if (this.localError !== undefined) {
        this.settle({ error: this.localError, response: undefined, trailers: undefined });
        return;
      }
      if (!this.connection.connected) {
        this.settle(failure(grpc.status.UNAVAILABLE, this.channel.notConnectedError(this.connection)));
        return;
      }
      if (resetCode === H2_ERROR.REFUSED_STREAM && httpStatus === 0 && !this.isRetry) {
        // RFC 9113 8.7: a refused stream was not processed (a member closing sent GOAWAY before
        // it saw this one): once more, on a fresh connection.
        this.settled = true;
        const again = this.channel.callAlone(
          this.path,
          this.request,
          this.metadata,
          this.deadlineMs,
          this.relay,
          true,
        );
        this.retry = again;
        void again.result.then(this.resolve);
        return;
      }
      const dropped = httpStatus === 200 || httpStatus === 0;
      this.settle(
        failure(
          grpc.status.UNAVAILABLE,
          dropped ? "Connection dropped" : `Received HTTP status code ${httpStatus}`,
        ),
      );
      return;
    }
    if (status !== grpc.status.OK) {
      this.settle({
        error: { code: status, details, metadata: trailers ?? new grpc.Metadata() },
        response: undefined,
        trailers,
      });
      return;
    }
    const chunks = this.chunks;
    const parts = chunks.length > 1 ? unframeParts(chunks) : undefined;
    if (parts !== undefined) {
      this.settle(partsResult(parts, trailers));
      return;
    }
    const message = unframe(chunks);
    if (message === undefined) {
      this.settle(failure(grpc.status.INTERNAL, "etcd-ts gateway: malformed gRPC response framing"));
      return;
    }
    this.settle({ error: undefined, response: message, trailers });
  }

  private settle(result: UnaryResult): void {
    this.settled = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.resolve(result);
  }
}

function failure(code: number, details: string): UnaryResult {
  return {
    error: { code, details, metadata: new grpc.Metadata() },
    response: undefined,
    trailers: undefined,
  };
}

/** The outcome of a relayed answer: its status only (the bytes went to the client). */
function relayedResult(
  localError: grpc.StatusObject | undefined,
  status: number | undefined,
  details: string,
  trailers: grpc.Metadata | undefined,
  httpStatus: number,
): UnaryResult {
  let error: grpc.StatusObject | undefined;
  if (status === undefined) {
    error = localError ?? {
      code: grpc.status.UNAVAILABLE,
      details: httpStatus === 200 ? "Connection dropped" : `Received HTTP status code ${httpStatus}`,
      metadata: new grpc.Metadata(),
    };
  } else if (status !== grpc.status.OK) {
    error = { code: status, details, metadata: trailers ?? new grpc.Metadata() };
  }
  return { error, response: undefined, trailers, relayed: true };
}

/** Answers at least this large are kept in the pieces they arrived in (UnaryResult.parts). */
export const PARTS_MIN_BYTES = 1024 * 1024;

/**
 * The single message of a large unary response as views into the chunks it arrived in;
 * undefined when it is small or not one well-framed message (`unframe` then decides).
 */
export function unframeParts(chunks: Buffer[]): MessageParts | undefined {
  let total = 0;
  for (const c of chunks) total += c.length;
  if (total < PARTS_MIN_BYTES + 5) return undefined;
  // The 5-byte prefix may straddle chunks: join just enough of the first ones.
  let first = 0;
  let head = chunks[0]!;
  while (head.length < 5) head = Buffer.concat([head, chunks[++first]!]);
  if (head[0] !== 0 || head.readUInt32BE(1) !== total - 5) return undefined;
  const parts = [head.subarray(5)];
  for (let i = first + 1; i < chunks.length; i++) parts.push(chunks[i]!);
  return new MessageParts(parts);
}

function partsResult(parts: MessageParts, trailers: grpc.Metadata | undefined): UnaryResult {
  let joined: Buffer | undefined;
  return {
    error: undefined,
    trailers,
    parts,
    get response(): Buffer {
      joined ??= Buffer.concat(parts.parts, parts.length);
      return joined;
    },
  };
}

/** The single message of a unary response: 1 byte flags (0 = uncompressed), 4 bytes length. */
export function unframe(chunks: Buffer[]): Buffer | undefined {
  const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  if (data.length < 5 || data[0] !== 0) return undefined;
  const length = data.readUInt32BE(1);
  if (data.length !== 5 + length) return undefined;
  return data.subarray(5);
}

/** What an answer's headers and trailers said: its HTTP status, then its gRPC status, message and trailers. */
export class AnswerStatus {
  httpStatus = 0;
  code: number | undefined;
  details = "";
  trailers: grpc.Metadata | undefined;

  /** Reads a HEADERS block (a trailers-only answer carries the status in the headers). */
  read(h: IncomingHeaders): void {
    const httpStatus = h[":status"];
    if (httpStatus !== undefined) this.httpStatus = Number(httpStatus);
    const code = h["grpc-status"];
    if (code === undefined) return;
    this.code = Number(code);
    const message = h["grpc-message"];
    this.details = typeof message === "string" ? decodeGrpcMessage(message) : "";
    this.trailers = metadataFromHeaders(h, RESERVED);
  }
}

const RESERVED = new Set([
  "grpc-status",
  "grpc-message",
  "grpc-status-details-bin",
  "content-type",
  "date",
  "server",
]);
