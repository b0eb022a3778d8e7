// Unary gRPC calls to one member over a plain node:http2 session. The gateway's hottest
// path only needs "send these bytes, give me the answer's bytes, status and trailers":
// grpc-js's client stack (interceptors, resolver, load-balancer, per-call filters) costs a
// large share of the proxy's CPU per call for features a fixed member address never uses.
// Streams (watch, keep-alive, snapshot) still use grpc-js.
//
// Calls whose answers are small (not Range: one full list would hold every call queued behind
// it) go over one multiplexed stream when the member serves it (forward-stream.ts).
//
// Failure reporting follows grpc-js's wording where the retry policy depends on it: a
// call that could not be written because no connection could be made fails with
// "No connection established. ..." (safe to retry anything); a connection lost after the
// request was written fails with "Connection dropped" (outcome unknown).

import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import {
  decodeGrpcMessage,
  grpcTimeout,
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

const {
  HTTP2_HEADER_METHOD,
  HTTP2_HEADER_PATH,
  HTTP2_HEADER_CONTENT_TYPE,
  HTTP2_HEADER_TE,
  HTTP2_HEADER_STATUS,
  NGHTTP2_CANCEL,
} = http2.constants;

// As upstream-client.ts's grpc-js channels: well above members' --grpc-keepalive-min-time (5 s).
const KEEPALIVE_INTERVAL_MS = 10_000;
const KEEPALIVE_TIMEOUT_MS = 2_000;
// Large ranges should not crawl through 64 KiB windows.
const WINDOW_BYTES = 8 * 1024 * 1024;

/**
 * Methods sent over the member's Forward/Calls stream: etcd's unary calls with small answers.
 * Range stays on its own streams (a large answer would delay every answer behind it), as do
 * Auth (services/auth serves no Forward), Election and Lock (held open for long).
 */
const FORWARDED_METHOD =
  /^\/etcdserverpb\.(?:KV\/(?:Put|DeleteRange|Txn|Compact)|Lease\/|Cluster\/|Maintenance\/)/;
/** Larger requests take their own stream: they would hold up the frames behind them. */
const MAX_FORWARDED_REQUEST_BYTES = 64 * 1024;

/** One member's HTTP/2 session, reconnected lazily after it closes. */
export class Http2UnaryChannel {
  private session: http2.ClientHttp2Session | undefined;
  /** The Forward/Calls stream on the current session. */
  private forward: ForwardStream | undefined;
  /** A session whose member refused Forward/Calls (etcd): its calls each take a stream. */
  private refusedBy: http2.ClientHttp2Session | undefined;
  private connected = false;
  private lastError = "";
  private keepalive: NodeJS.Timeout | undefined;
  private closed = false;

  /** `tls`: dial the member over TLS (the gateway's --cacert/--cert/--key). */
  constructor(
    readonly address: string,
    private readonly tls?: UpstreamTls,
  ) {}

  /** `relay`: where a large answer goes as it arrives (calls on their own stream only: Range). */
  call(
    path: string,
    request: Buffer,
    metadata: grpc.Metadata,
    deadlineMs: number | undefined,
    relay?: ResponseRelay,
  ): PendingUnary {
    if (!this.closed && request.length <= MAX_FORWARDED_REQUEST_BYTES && FORWARDED_METHOD.test(path)) {
      const stream = this.forwardStream();
      if (stream !== undefined) return stream.call(path, request, metadata, deadlineMs);
    }
    return this.callAlone(path, request, metadata, deadlineMs, relay);
  }

  /** The current session's Forward/Calls stream, opened on first use; undefined: not offered or full. */
  private forwardStream(): ForwardStream | undefined {
    const session = this.ensureSession();
    if (session === this.refusedBy) return undefined;
    let stream = this.forward;
    if (stream === undefined || stream.session !== session || !stream.open) {
      stream?.drain();
      try {
        stream = new ForwardStream(session, {
          connected: () => this.connected && this.session === session,
          lastError: () => this.lastError,
          callAlone: (path, request, metadata, deadlineMs) =>
            this.callAlone(path, request, metadata, deadlineMs),
          refused: () => {
            this.refusedBy = session;
          },
        });
      } catch {
        return undefined; // the session is closing: the call's own stream reports it
      }
      this.forward = stream;
    }
    return stream.accepting ? stream : undefined;
  }

  /** One call on its own HTTP/2 stream. */
  callAlone(
    path: string,
    request: Buffer,
    metadata: grpc.Metadata,
    deadlineMs: number | undefined,
    relay?: ResponseRelay,
  ): PendingUnary {
    let cancel: () => void = () => {};
    const result = new Promise<UnaryResult>((resolve) => {
      if (this.closed) {
        resolve(failure(grpc.status.UNAVAILABLE, "Channel closed"));
        return;
      }
      const session = this.ensureSession();
      const wasConnected = this.connected;
      const headers: http2.OutgoingHttpHeaders = metadata.toHttp2Headers();
      headers[HTTP2_HEADER_METHOD] = "POST";
      headers[HTTP2_HEADER_PATH] = path;
      headers[HTTP2_HEADER_CONTENT_TYPE] = "application/grpc";
      headers[HTTP2_HEADER_TE] = "trailers";
      let timer: NodeJS.Timeout | undefined;
      if (deadlineMs !== undefined) {
        headers["grpc-timeout"] = grpcTimeout(deadlineMs - Date.now());
      }

      let stream: http2.ClientHttp2Stream;
      try {
        stream = session.request(headers);
      } catch (err) {
        resolve(failure(grpc.status.UNAVAILABLE, `No connection established. Last error: ${String(err)}`));
        return;
      }
      const chunks: Buffer[] = [];
      let status: number | undefined;
      let details = "";
      let trailers: grpc.Metadata | undefined;
      let httpStatus = 0;
      let settled = false;
      let localError: grpc.StatusObject | undefined;

      const readStatus = (h: http2.IncomingHttpHeaders) => {
        const code = h["grpc-status"];
        if (code === undefined) return;
        status = Number(code);
        const message = h["grpc-message"];
        details = typeof message === "string" ? decodeGrpcMessage(message) : "";
        trailers = metadataFromHeaders(h, RESERVED);
      };

      stream.on("response", (h) => {
        httpStatus = Number(h[HTTP2_HEADER_STATUS]);
        readStatus(h); // a trailers-only answer carries the status in the headers
      });
      stream.on("trailers", readStatus);
      // Relaying: undecided until the 5-byte prefix is in, then a writer or none (keep it all).
      let writer: MessageWriter | undefined;
      let relayDecided = relay === undefined;
      let received = 0;
      stream.on("data", (chunk: Buffer) => {
        if (writer !== undefined) {
          if (!writer.write(chunk)) {
            stream.pause();
            writer.onDrain(() => stream.resume());
          }
          return;
        }
        chunks.push(chunk);
        if (relayDecided) return;
        received += chunk.length;
        if (received < 5) return;
        relayDecided = true;
        const head = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received);
        const length = head.readUInt32BE(1);
        if (head[0] !== 0 || length < relay!.minBytes) return;
        writer = relay!.start(length);
        if (writer === undefined) return;
        chunks.length = 0;
        const body = head.subarray(5);
        if (body.length > 0 && !writer.write(body)) {
          stream.pause();
          writer.onDrain(() => stream.resume());
        }
      });
      stream.on("error", (err: Error) => {
        if (localError === undefined) {
          const neverSent = !wasConnected && !this.connected;
          localError = {
            code: grpc.status.UNAVAILABLE,
            details: neverSent
              ? `No connection established. Last error: ${this.lastError || err.message}`
              : "Connection dropped",
            metadata: new grpc.Metadata(),
          };
        }
      });
      stream.on("close", () => {
        if (timer !== undefined) clearTimeout(timer);
        if (settled) return;
        settled = true;
        if (writer !== undefined) {
          resolve(relayedResult(localError, status, details, trailers, httpStatus));
          return;
        }
        if (localError !== undefined && status === undefined) {
          resolve({ error: localError, response: undefined, trailers: undefined });
          return;
        }
        if (status === undefined) {
          const dropped = httpStatus === 200 || httpStatus === 0;
          resolve(
            failure(
              grpc.status.UNAVAILABLE,
              dropped ? "Connection dropped" : `Received HTTP status code ${httpStatus}`,
            ),
          );
          return;
        }
        if (status !== grpc.status.OK) {
          resolve({
            error: { code: status, details, metadata: trailers ?? new grpc.Metadata() },
            response: undefined,
            trailers,
          });
          return;
        }
        const parts = chunks.length > 1 ? unframeParts(chunks) : undefined;
        if (parts !== undefined) {
          resolve(partsResult(parts, trailers));
          return;
        }
        const message = unframe(chunks);
        if (message === undefined) {
          resolve(failure(grpc.status.INTERNAL, "etcd-ts gateway: malformed gRPC response framing"));
          return;
        }
        resolve({ error: undefined, response: message, trailers });
      });

      const frame = Buffer.allocUnsafe(5);
      frame[0] = 0;
      frame.writeUInt32BE(request.length, 1);
      stream.write(frame);
      stream.end(request);

      cancel = () => {
        if (settled) return;
        localError = {
          code: grpc.status.CANCELLED,
          details: "Cancelled on client",
          metadata: new grpc.Metadata(),
        };
        stream.close(NGHTTP2_CANCEL);
      };
      if (deadlineMs !== undefined) {
        timer = setTimeout(
          () => {
            if (settled) return;
            localError = {
              code: grpc.status.DEADLINE_EXCEEDED,
              details: "Deadline exceeded",
              metadata: new grpc.Metadata(),
            };
            stream.close(NGHTTP2_CANCEL);
          },
          Math.max(0, deadlineMs - Date.now()),
        );
      }
    });
    return { result, cancel: () => cancel() };
  }

  close(): void {
    this.closed = true;
    if (this.keepalive !== undefined) clearInterval(this.keepalive);
    this.forward?.drain();
    this.session?.close();
    this.session = undefined;
  }

  private ensureSession(): http2.ClientHttp2Session {
    const current = this.session;
    if (current !== undefined && !current.closed && !current.destroyed) return current;
    this.connected = false;
    const upstreamTls = this.tls;
    const session = http2.connect(`${upstreamTls === undefined ? "http" : "https"}://${this.address}`, {
      settings: { enablePush: false, initialWindowSize: WINDOW_BYTES },
      // Nagle would hold a request's DATA frame back until the peer acknowledges its HEADERS.
      createConnection: (authority: URL) => {
        const host = authority.hostname.replace(/^\[(.*)\]$/, "$1");
        const port = Number(authority.port);
        if (upstreamTls === undefined) return net.connect({ host, port, noDelay: true });
        const socket = tls.connect({
          host,
          port,
          ALPNProtocols: ["h2"],
          ...(net.isIP(host) === 0 ? { servername: host } : {}),
          ...(upstreamTls.ca !== undefined ? { ca: upstreamTls.ca } : {}),
          ...(upstreamTls.cert !== undefined ? { cert: upstreamTls.cert } : {}),
          ...(upstreamTls.key !== undefined ? { key: upstreamTls.key } : {}),
        });
        socket.setNoDelay(true);
        return socket;
      },
    });
    this.session = session;
    session.once("connect", () => {
      this.connected = true;
      this.lastError = "";
      session.setLocalWindowSize(WINDOW_BYTES);
    });
    session.on("error", (err: Error) => {
      this.lastError = err.message;
    });
    session.once("close", () => {
      if (this.session === session) {
        this.session = undefined;
        this.connected = false;
      }
    });
    session.once("goaway", () => {
      // New calls go to a fresh session; calls in flight finish on this one.
      if (this.session === session) this.session = undefined;
      if (this.forward?.session === session) this.forward.drain();
    });
    if (this.keepalive === undefined) {
      // A member that vanishes without closing its socket is found by ping, not by the next
      // call's deadline.
      this.keepalive = setInterval(() => this.ping(), KEEPALIVE_INTERVAL_MS);
      this.keepalive.unref();
    }
    session.unref();
    return session;
  }

  private ping(): void {
    const session = this.session;
    if (session === undefined || !this.connected || session.destroyed) return;
    const timer = setTimeout(
      () => session.destroy(new Error("keepalive ping timed out")),
      KEEPALIVE_TIMEOUT_MS,
    );
    timer.unref();
    try {
      session.ping(() => clearTimeout(timer));
    } catch {
      clearTimeout(timer);
    }
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

const RESERVED = new Set([
  "grpc-status",
  "grpc-message",
  "grpc-status-details-bin",
  "content-type",
  "date",
  "server",
]);
