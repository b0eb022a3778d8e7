// A gRPC server on node:http2 for handlers that deal in message bytes (the gateway).
//
// grpc-js's server runs every call through interceptors, a stream decoder, a compression
// filter and per-call metadata objects: about a quarter of a trivial call's CPU here
// (a bare Range responder: ~10,000 calls/s on grpc-js, ~13,300 on this, one core each), and
// it hands every response message to HTTP/2 as a write of its own. A watch answering 100
// watchers on one stream made 100 HTTP/2 writes per event; ServerCall coalesces the
// messages a call sends in one turn of the event loop into one write, which the profile of
// a 10,000-watcher fan-out showed to be most of the gateway's time.
//
// The protocol subset is what etcd's clients use (gRPC over HTTP/2, spec
// PROTOCOL-HTTP2.md): identity encoding only, grpc-timeout, metadata, trailers-only errors.

import { EventEmitter } from "node:events";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type tls from "node:tls";
import grpc from "@grpc/grpc-js";
import { createTlsServer, type ServerTls, type TlsRejection, verifiedCommonName } from "../tls/server-tls.js";
import { routeClientConnection } from "./client-port.js";
import { deadlineFrom, encodeGrpcMessage, metadataFromHeaders } from "./headers.js";
import { applyKeepalive, type KeepalivePolicy } from "./keepalive.js";
import { parseGrpcTarget } from "./listen.js";

const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_PATH } = http2.constants;

export type CallKind = "unary" | "server-stream" | "bidi";

/**
 * unary / server-stream: `handle` runs once the single request message and the client's
 * half-close have arrived (`call.request`). bidi: `handle` runs at once; messages arrive as
 * 'message' events, the half-close as 'halfClose'.
 */
export interface MethodHandler {
  kind: CallKind;
  handle(call: ServerCall): void;
  /**
   * Bytes a request message may have beyond the server's maxReceiveBytes: a message that wraps
   * another request (forwarded-calls.ts) and its metadata, the wrapped one checked on its own.
   */
  wrapperBytes?: number;
}

/**
 * Watches the calls of a server (metrics): asked once per registered method, at registration,
 * for that method's observer, so that a call costs a field read and the observer's own work,
 * and nothing when the server has no observer.
 */
export interface GrpcCallObserver {
  method(path: string, kind: CallKind): GrpcMethodObserver;
}

export interface GrpcMethodObserver {
  /** The call was dispatched to its handler (a tracer reads its headers here). */
  started(call: ServerCall): void;
  /** One request message of `bytes` bytes (without the 5-byte prefix). */
  received(bytes: number): void;
  /** One response message queued. */
  sent(bytes: number): void;
  /** The call ended with `code` (CANCELLED when the client left first), `seconds` after it started. */
  handled(code: number, seconds: number, call: ServerCall): void;
}

export interface CallStatus {
  code: number;
  details?: string;
  metadata?: grpc.Metadata;
}

const RESERVED_HEADERS = new Set([
  "content-type",
  "te",
  "grpc-timeout",
  "grpc-encoding",
  "grpc-accept-encoding",
  "user-agent",
]);

/** grpc-go's default limit on a message a server sends (math.MaxInt32), which etcd keeps. */
export const MAX_SEND_MESSAGE_BYTES = 2 ** 31 - 1;

/**
 * One message already encoded as consecutive pieces (a Range over a million keys, built chunk
 * by chunk between awaits): sent behind its 5-byte prefix piece by piece, never joined into
 * one buffer (joining 280 MB is a copy of it and a pause of the event loop).
 */
export class MessageParts {
  readonly length: number;

  constructor(readonly parts: readonly Uint8Array[]) {
    let length = 0;
    for (const p of parts) length += p.length;
    this.length = length;
  }
}

/** grpc-go's refusal of a message over the send limit (the status etcd's client sees). */
export function messageTooLarge(length: number): CallStatus {
  return {
    code: grpc.status.RESOURCE_EXHAUSTED,
    details: `grpc: trying to send message larger than max (${length} vs. ${MAX_SEND_MESSAGE_BYTES})`,
  };
}

/**
 * One call, as handlers and observers see it, whatever carries it: its own HTTP/2 stream
 * (Http2ServerCall), or a frame of a gateway's call stream (forwarded-calls.ts). Events:
 * 'message' (Buffer), 'halfClose', 'cancelled' (the client went away or the deadline passed
 * before finish), 'drain' (sendMessage returned false earlier), 'close' (the call is gone,
 * finished or not).
 */
export abstract class ServerCall extends EventEmitter {
  /** The request message of a unary or server-streaming call. */
  request: Buffer = EMPTY;
  /** The CN of the client's verified TLS certificate, when the server asks for one. */
  peerCommonName: string | undefined;
  /** @internal Set by the server when it has an observer. */
  observer: GrpcMethodObserver | undefined;
  /** @internal performance.now() at dispatch, when observed. */
  startedAt = 0;
  /** What the observer keeps for this call (a tracer's span context); the server never reads it. */
  observerState: unknown;
  private isCancelled = false;

  constructor(
    readonly path: string,
    /** Milliseconds since the epoch; undefined when the client set no deadline. */
    readonly deadline: number | undefined,
  ) {
    super();
  }

  /** The client's metadata (custom headers). */
  abstract get metadata(): grpc.Metadata;

  /** The client's IP address (the TCP peer of the HTTP/2 session), when the socket has one. */
  abstract get remoteAddress(): string | undefined;

  /** One request header (lower-case name), without building the metadata object. */
  abstract header(name: string): string | undefined;

  /** Bytes queued for the client and not yet sent. */
  abstract get writableLength(): number;

  /**
   * Queues a message; the messages of one turn go out as one write. false: the buffer is
   * full, wait for 'drain'.
   */
  abstract sendMessage(message: Uint8Array): boolean;

  /**
   * Queues a message given as pieces; over MAX_SEND_MESSAGE_BYTES the call ends with
   * grpc-go's RESOURCE_EXHAUSTED instead. Here the pieces are joined (a forwarded call's
   * result frame carries one buffer); a call on its own stream writes them as they are.
   */
  sendMessageParts(message: MessageParts): boolean {
    if (message.length > MAX_SEND_MESSAGE_BYTES) {
      this.finish(messageTooLarge(message.length));
      return false;
    }
    const { parts } = message;
    return this.sendMessage(parts.length === 1 ? parts[0]! : Buffer.concat(parts, message.length));
  }

  /** Ends the call with a status (OK with optional trailing metadata, or an error). */
  abstract finish(status: CallStatus): void;

  /** A unary call's answer: its one message, then the status. */
  finishWith(message: Uint8Array, status: CallStatus): void {
    this.sendMessage(message);
    this.finish(status);
  }

  /** grpc-js's getDeadline(): Infinity when none. */
  getDeadline(): number {
    return this.deadline ?? Number.POSITIVE_INFINITY;
  }

  get cancelled(): boolean {
    return this.isCancelled;
  }

  protected markCancelled(): void {
    if (this.isCancelled) return;
    this.isCancelled = true;
    this.emit("cancelled");
  }
}

/** A call on its own HTTP/2 stream. */
export class Http2ServerCall extends ServerCall {
  private metadataCache: grpc.Metadata | undefined;
  private pending: Buffer[] = [];
  private flushScheduled = false;
  private headersSent = false;
  private finished = false;
  private needDrain = false;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private trailers: http2.OutgoingHttpHeaders | undefined;

  constructor(
    path: string,
    private readonly stream: http2.ServerHttp2Stream,
    private readonly headers: http2.IncomingHttpHeaders,
    private readonly maxReceiveBytes = Number.POSITIVE_INFINITY,
  ) {
    super(path, deadlineFrom(headers["grpc-timeout"]));
    stream.on("close", () => this.onClose());
    stream.on("error", () => {});
    stream.on("wantTrailers", () => stream.sendTrailers(this.trailers ?? { "grpc-status": "0" }));
    if (this.deadline !== undefined) {
      this.deadlineTimer = setTimeout(
        () => {
          if (this.finished) return;
          this.finish({ code: grpc.status.DEADLINE_EXCEEDED, details: "Deadline exceeded" });
          this.markCancelled();
        },
        Math.max(0, this.deadline - Date.now()),
      );
    }
  }

  /** The client's metadata (custom headers), built on first use. */
  override get metadata(): grpc.Metadata {
    this.metadataCache ??= metadataFromHeaders(this.headers, RESERVED_HEADERS) ?? new grpc.Metadata();
    return this.metadataCache;
  }

  /** The client's IP address (the TCP peer of the HTTP/2 session), when the socket has one. */
  override get remoteAddress(): string | undefined {
    return this.stream.session?.socket?.remoteAddress;
  }

  /** One request header (lower-case name), without building the metadata object. */
  override header(name: string): string | undefined {
    const value = this.headers[name];
    return Array.isArray(value) ? value[0] : value;
  }

  /** Bytes written to the HTTP/2 stream and not yet sent, plus messages not yet written. */
  override get writableLength(): number {
    let queued = this.stream.writableLength;
    for (const p of this.pending) queued += p.length;
    return queued;
  }

  /**
   * Queues a message; the messages of one turn go out as one HTTP/2 write. false: the
   * stream's buffer is full, wait for 'drain'.
   */
  override sendMessage(message: Uint8Array): boolean {
    if (this.finished) return false;
    this.observer?.sent(message.length);
    this.pending.push(frame(message));
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(() => this.flush());
    }
    return !this.needDrain;
  }

  /** As sendMessage then finish, without scheduling a flush that finish makes at once. */
  override finishWith(message: Uint8Array, status: CallStatus): void {
    if (this.finished) return;
    this.observer?.sent(message.length);
    this.pending.push(frame(message));
    this.finish(status);
  }

  override sendMessageParts(message: MessageParts): boolean {
    if (this.finished) return false;
    if (message.length > MAX_SEND_MESSAGE_BYTES) {
      this.finish(messageTooLarge(message.length));
      return false;
    }
    this.observer?.sent(message.length);
    const prefix = Buffer.allocUnsafe(5);
    prefix[0] = 0;
    prefix.writeUInt32BE(message.length, 1);
    this.pending.push(prefix);
    for (const p of message.parts) if (p.length > 0) this.pending.push(p as Buffer);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(() => this.flush());
    }
    return !this.needDrain;
  }

  /** Ends the call with a status (OK with optional trailing metadata, or an error). */
  override finish(status: CallStatus): void {
    if (this.finished) return;
    this.finished = true;
    this.observer?.handled(status.code, (performance.now() - this.startedAt) / 1000, this);
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    if (this.stream.destroyed || this.stream.closed) return;
    const trailers = trailersFor(status);
    this.flush();
    if (!this.headersSent) {
      // Trailers-only: no message was sent, status goes in the one HEADERS frame.
      this.headersSent = true;
      this.stream.respond(
        { [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: "application/grpc", ...trailers },
        { endStream: true },
      );
      return;
    }
    this.trailers = trailers;
    this.stream.end();
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.pending.length === 0) return;
    if (this.stream.destroyed || this.stream.closed) {
      this.pending = [];
      return;
    }
    this.sendHeaders();
    const pending = this.pending;
    this.pending = [];
    let bytes = 0;
    for (const p of pending) bytes += p.length;
    if (pending.length === 1 || bytes <= JOIN_MAX_BYTES) {
      // Many small messages of one turn (a watch fan-out): one buffer, one write.
      const data = pending.length === 1 ? pending[0]! : Buffer.concat(pending, bytes);
      if (!this.stream.write(data)) this.awaitDrain();
      return;
    }
    // A large message in pieces: one writev of them all, no copy into one buffer.
    this.stream.cork();
    let ok = true;
    for (const p of pending) ok = this.stream.write(p);
    this.stream.uncork();
    if (!ok) this.awaitDrain();
  }

  /**
   * The stream's buffer is full: 'drain' is passed on once it empties. Listened for only then
   * (a write that returns false is always followed by a 'drain'), not on every call's stream.
   */
  private awaitDrain(): void {
    if (this.needDrain) return;
    this.needDrain = true;
    this.stream.once("drain", () => {
      this.needDrain = false;
      this.emit("drain");
    });
  }

  private sendHeaders(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.stream.respond(
      { [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: "application/grpc" },
      { waitForTrailers: true },
    );
  }

  private onClose(): void {
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    if (!this.finished) {
      this.finished = true;
      this.observer?.handled(grpc.status.CANCELLED, (performance.now() - this.startedAt) / 1000, this);
      this.markCancelled();
    }
    this.emit("close");
  }

  /**
   * @internal Incoming bytes, split into messages (the 5-byte gRPC prefix). Chunks are kept
   * as a list and joined once a whole message is there: a large request arrives in many
   * DATA frames, and joining at every chunk would copy it over and over.
   */
  receive(chunk: Buffer): void {
    if (this.finished) return;
    this.inbox.push(chunk);
    this.inboxBytes += chunk.length;
    while (this.inboxBytes >= 5) {
      const head = this.inbox[0]!.length >= 5 ? this.inbox[0]! : this.joinInbox();
      const length = head.readUInt32BE(1);
      if (length > this.maxReceiveBytes) {
        this.finish({
          code: grpc.status.RESOURCE_EXHAUSTED,
          details: `Received message larger than max (${length} vs. ${this.maxReceiveBytes})`,
        });
        this.inbox = [];
        this.inboxBytes = 0;
        return;
      }
      if (this.inboxBytes < 5 + length) return;
      if (head[0] !== 0) {
        this.finish({
          code: grpc.status.UNIMPLEMENTED,
          details: "etcd-ts: compressed gRPC messages are not supported",
        });
        this.inbox = [];
        this.inboxBytes = 0;
        return;
      }
      const all = this.joinInbox();
      const message = all.subarray(5, 5 + length);
      const rest = all.subarray(5 + length);
      this.inbox = rest.length > 0 ? [rest] : [];
      this.inboxBytes = rest.length;
      this.observer?.received(length);
      this.emit("message", message);
    }
  }

  private joinInbox(): Buffer {
    if (this.inbox.length > 1) this.inbox = [Buffer.concat(this.inbox, this.inboxBytes)];
    return this.inbox[0]!;
  }

  private inbox: Buffer[] = [];
  private inboxBytes = 0;
}

const EMPTY = Buffer.alloc(0);
/** Up to this many queued bytes are joined into one write; above, the pieces go as they are. */
const JOIN_MAX_BYTES = 1024 * 1024;

function frame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

function trailersFor(status: CallStatus): http2.OutgoingHttpHeaders {
  const trailers: http2.OutgoingHttpHeaders = status.metadata?.toHttp2Headers() ?? {};
  trailers["grpc-status"] = String(status.code);
  if (status.details) trailers["grpc-message"] = encodeGrpcMessage(status.details);
  return trailers;
}

export interface GrpcHttp2ServerOptions {
  /** Flow-control window per stream and per session, for large answers. */
  windowBytes?: number;
  /** Larger request messages are refused with RESOURCE_EXHAUSTED. Default: no limit. */
  maxReceiveBytes?: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS. Default: no limit. */
  maxConcurrentStreams?: number;
  /** Serve TLS (ALPN h2, and http/1.1 when `http1` is given); see tls/server-tls.ts. */
  tls?: ServerTls;
  /** With `tls`: plaintext connections on the same port too (etcd's http:// and https:// URLs on one port). */
  plaintextToo?: boolean;
  /** A connection TLS or etcd's certificate checks refused (for the log). */
  onTlsRejected?: (rejection: TlsRejection) => void;
  /**
   * false: every connection goes to HTTP/2 as it is, unread (no HTTP/1.1 on the port, no
   * :authority repair): what the first-bytes routing costs is measured against this
   * (bench/src/grpc/client-port-cost.ts). Default true.
   */
  routeFirstBytes?: boolean;
  /**
   * HTTP/1.x requests on the same port (etcd's /health, /version, JSON gateway): connections
   * that do not start with HTTP/2's preface go to this handler (see client-port.ts).
   */
  http1?: http.RequestListener;
  /** Sees every call of every registered method (grpc_server_* metrics). */
  observer?: GrpcCallObserver;
  /** grpc-go's keepalive pings and ping enforcement (etcd's --grpc-keepalive-*); default none. */
  keepalive?: KeepalivePolicy;
}

export class GrpcHttp2Server {
  private readonly handlers = new Map<string, MethodHandler>();
  private readonly observer: GrpcCallObserver | undefined;
  private readonly methodObservers = new Map<string, GrpcMethodObserver>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  /** Never listens: client-port.ts hands it the connections our listener accepts. */
  private readonly server: http2.Http2Server;
  private readonly http1: http.Server | undefined;
  private readonly tls: ServerTls | undefined;
  private readonly plaintextToo: boolean;
  private readonly onTlsRejected: (rejection: TlsRejection) => void;
  /** The CN of each session's verified client certificate (etcd's AuthInfoFromTLS). */
  private readonly sessionCommonNames = new WeakMap<http2.Http2Session, string>();
  private listener: net.Server | undefined;
  private readonly windowBytes: number;
  private readonly maxReceiveBytes: number;
  private readonly routeFirstBytes: boolean;

  constructor(options: GrpcHttp2ServerOptions = {}) {
    this.routeFirstBytes = options.routeFirstBytes ?? true;
    this.windowBytes = options.windowBytes ?? 8 * 1024 * 1024;
    this.maxReceiveBytes = options.maxReceiveBytes ?? Number.POSITIVE_INFINITY;
    const options2: http2.ServerOptions = {
      // Node's default (10 MiB) answers a busy session with ENHANCE_YOUR_CALM; grpc-js lifts it too.
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
      settings: {
        initialWindowSize: this.windowBytes,
        maxConcurrentStreams: options.maxConcurrentStreams ?? 2 ** 32 - 1,
      },
    };
    // TLS is ours (below), so that the same first-bytes routing runs on decrypted connections.
    this.server = http2.createServer(options2);
    this.http1 = options.http1 === undefined ? undefined : http.createServer(options.http1);
    this.tls = options.tls;
    this.plaintextToo = options.plaintextToo === true;
    this.onTlsRejected = options.onTlsRejected ?? (() => {});
    this.observer = options.observer;
    const keepalive = options.keepalive;
    this.server.on("session", (session: http2.ServerHttp2Session) => {
      this.sessions.add(session);
      if (keepalive !== undefined) applyKeepalive(session, keepalive);
      if (this.tls?.verifiesPeers) {
        const cn = verifiedCommonName(session.socket as unknown as tls.TLSSocket);
        if (cn !== undefined) this.sessionCommonNames.set(session, cn);
      }
      session.on("error", () => {});
      session.once("close", () => this.sessions.delete(session));
      session.once("connect", () => session.setLocalWindowSize(this.windowBytes));
    });
    this.server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) =>
      this.dispatch(stream, headers),
    );
  }

  register(path: string, handler: MethodHandler): void {
    this.handlers.set(path, handler);
    if (this.observer !== undefined) this.methodObservers.set(path, this.observer.method(path, handler.kind));
  }

  /** Listens on host:port; returns the bound port. */
  listen(target: string): Promise<number> {
    const http1 = this.http1;
    const route = this.routeFirstBytes
      ? (socket: net.Socket) =>
          routeClientConnection(socket, {
            http2: (connection) => this.server.emit("connection", connection),
            http1: http1 === undefined ? undefined : (s) => http1.emit("connection", s),
          })
      : (socket: net.Socket) => this.server.emit("connection", socket);
    const tlsConfig = this.tls;
    let listener: net.Server;
    if (tlsConfig === undefined) {
      listener = net.createServer({ noDelay: true }, route);
    } else {
      // http/1.1 first: the server picks by its own order, so HTTP clients that offer both (curl)
      // get the HTTP/1.1 handler (/health, /version, JSON), and gRPC clients, which offer only h2, h2.
      listener = createTlsServer(tlsConfig, http1 === undefined ? ["h2"] : ["http/1.1", "h2"], {
        secure: (socket) => route(socket),
        plain: this.plaintextToo ? route : undefined,
        rejected: this.onTlsRejected,
      });
    }
    this.listener = listener;
    return new Promise((resolve, reject) => {
      listener.once("error", reject);
      listener.listen(parseGrpcTarget(target), () => {
        listener.off("error", reject);
        const address = listener.address();
        resolve(typeof address === "object" && address !== null ? address.port : 0);
      });
    });
  }

  /**
   * Stops accepting connections and asks every session to finish (GOAWAY): calls in flight
   * complete. Sessions still open after `graceMs` are destroyed.
   */
  close(graceMs: number): Promise<void> {
    return new Promise((resolve) => {
      this.listener?.close();
      this.http1?.closeAllConnections();
      if (this.sessions.size === 0) {
        resolve();
        return;
      }
      const timer = setTimeout(() => {
        for (const s of this.sessions) s.destroy();
        resolve();
      }, graceMs);
      timer.unref();
      let open = this.sessions.size;
      for (const s of this.sessions) {
        s.close(() => {
          if (--open === 0) {
            clearTimeout(timer);
            resolve();
          }
        });
      }
    });
  }

  /**
   * Runs a unary call that arrived as a frame of another call (forwarded-calls.ts) exactly as
   * if it had come on its own stream: the same handler, observer and size limit. Only unary
   * methods: a stream cannot be forwarded this way.
   */
  dispatchForwarded(call: ServerCall): void {
    const handler = this.handlers.get(call.path);
    if (handler === undefined || handler.kind !== "unary") {
      call.finish({
        code: grpc.status.UNIMPLEMENTED,
        details: `The server does not implement the method ${call.path}`,
      });
      return;
    }
    const observer = this.methodObservers.get(call.path);
    if (observer !== undefined) {
      call.observer = observer;
      call.startedAt = performance.now();
      observer.started(call);
    }
    const length = call.request.length;
    if (length > this.maxReceiveBytes) {
      call.finish({
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: `Received message larger than max (${length} vs. ${this.maxReceiveBytes})`,
      });
      return;
    }
    observer?.received(length);
    handler.handle(call);
  }

  private dispatch(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    const contentType = headers[HTTP2_HEADER_CONTENT_TYPE];
    if (typeof contentType !== "string" || !contentType.startsWith("application/grpc")) {
      stream.respond({ [HTTP2_HEADER_STATUS]: 415 }, { endStream: true });
      return;
    }
    const path = String(headers[HTTP2_HEADER_PATH] ?? "");
    const handler = this.handlers.get(path);
    const call = new Http2ServerCall(
      path,
      stream,
      headers,
      this.maxReceiveBytes + (handler?.wrapperBytes ?? 0),
    );
    if (this.tls?.verifiesPeers && stream.session !== undefined)
      call.peerCommonName = this.sessionCommonNames.get(stream.session);
    stream.on("data", (chunk: Buffer) => call.receive(chunk));
    if (handler === undefined) {
      call.finish({
        code: grpc.status.UNIMPLEMENTED,
        details: `The server does not implement the method ${path}`,
      });
      return;
    }
    if (this.observer !== undefined) {
      const observer = this.methodObservers.get(path);
      if (observer !== undefined) {
        call.observer = observer;
        call.startedAt = performance.now();
        observer.started(call);
      }
    }
    const encoding = headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") {
      call.finish({
        code: grpc.status.UNIMPLEMENTED,
        details: `etcd-ts: grpc-encoding ${String(encoding)} is not supported`,
      });
      return;
    }
    if (handler.kind === "bidi") {
      stream.on("end", () => call.emit("halfClose"));
      handler.handle(call);
      return;
    }
    let messages = 0;
    call.on("message", (message: Buffer) => {
      messages++;
      call.request = message;
    });
    stream.on("end", () => {
      if (call.cancelled) return;
      if (messages !== 1) {
        call.finish({
          code: grpc.status.INTERNAL,
          details: `etcd-ts: expected one request message, got ${messages}`,
        });
        return;
      }
      handler.handle(call);
    });
  }
}
