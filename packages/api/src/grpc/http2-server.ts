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

import http from "node:http";
import net from "node:net";
import type { Duplex } from "node:stream";
import type tls from "node:tls";
import grpc from "@grpc/grpc-js";
import { goQuote } from "../go-json.js";
import { createTlsServer, type ServerTls, type TlsRejection, verifiedCommonName } from "../tls/server-tls.js";
import type { RequestCheck } from "../wire/unmarshal-check.js";
import { CallEvents } from "./call-events.js";
import { routeClientConnection } from "./client-port.js";
import { callDeadlines, type DeadlineSlot, type DeadlineTarget } from "./deadlines.js";
import type { H2Stream, StreamEvents } from "./h2/connection.js";
import { ServerConnection } from "./h2/server-connection.js";
import type { HeaderFields } from "./h2/session.js";
import { joinSmall } from "./h2/socket-output.js";
import { deadlineFrom, encodeGrpcMessage, metadataFromFields } from "./headers.js";
import { encodeLiteralHeaderBlock, type HeaderField } from "./http2-frames.js";
import type { KeepalivePolicy } from "./keepalive.js";
import { parseGrpcTarget } from "./listen.js";
import { frameGrpcMessage, GrpcFramingError, MessageDeframer, messagePrefix } from "./message-framing.js";

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
  /**
   * Why a request message would not decode where the client expects it to (etcd's gogo
   * Unmarshal, wire/unmarshal-check.ts): the call ends with grpc-go's INTERNAL before the
   * handler sees the message.
   */
  requestCheck?: RequestCheck;
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

/** The body of a message started with ServerCall.startMessage. */
export interface MessageWriter {
  /**
   * Queues the next bytes of the body (exactly the announced length in all). false: the
   * stream's buffer is full, wait for `onDrain`. Bytes for a call that is over are dropped.
   * `sent` runs once the chunk has been written to the socket (its memory is no longer read),
   * if it is and the call can tell; it may never run.
   */
  write(chunk: Uint8Array, sent?: () => void): boolean;
  /** `resume` runs once the buffer has room again (at once if the call is over). */
  onDrain(resume: () => void): void;
}

/** grpc-go's refusal of a message over the send limit (the status etcd's client sees). */
export function messageTooLarge(length: number): CallStatus {
  return {
    code: grpc.status.RESOURCE_EXHAUSTED,
    details: `grpc: trying to send message larger than max (${length} vs. ${MAX_SEND_MESSAGE_BYTES})`,
  };
}

/** grpc-go's refusal of a unary call's request its codec could not decode. */
function unmarshallingRequestFailed(problem: string): CallStatus {
  return { code: grpc.status.INTERNAL, details: `grpc: error unmarshalling request: ${problem}` };
}

/** grpc-go's refusal of a streaming call's message (RecvMsg) its codec could not decode. */
function unmarshallingMessageFailed(problem: string): CallStatus {
  return { code: grpc.status.INTERNAL, details: `grpc: failed to unmarshal the received message ${problem}` };
}

/** grpc-go's refusal of a message by its 5-byte prefix (recvMsg, checkRecvPayload). */
function framingRefused(error: GrpcFramingError, maxReceiveBytes: number): CallStatus {
  if (error.kind === "too-large") {
    return {
      code: grpc.status.RESOURCE_EXHAUSTED,
      details: `grpc: received message larger than max (${error.length} vs. ${maxReceiveBytes})`,
    };
  }
  // Compressed (flag 1) with no grpc-encoding: any other encoding was refused at the call's start.
  return {
    code: grpc.status.INTERNAL,
    details:
      error.flag === 1
        ? "grpc: compressed flag set with identity or empty encoding"
        : `grpc: received unexpected payload format ${error.flag}`,
  };
}

/**
 * One call, as handlers and observers see it, whatever carries it: its own HTTP/2 stream
 * (Http2ServerCall), or a frame of a gateway's call stream (forwarded-calls.ts). Events:
 * 'message' (Buffer), 'halfClose', 'cancelled' (the client went away or the deadline passed
 * before finish), 'drain' (sendMessage returned false earlier), 'close' (the call is gone,
 * finished or not).
 */
export abstract class ServerCall extends CallEvents implements DeadlineTarget {
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
  /** Where the call's deadline waits (deadlines.ts: no Node timer per call). */
  private deadlineSlot: DeadlineSlot | undefined;

  constructor(
    readonly path: string,
    /** Milliseconds since the epoch; undefined when the client set no deadline. */
    readonly deadline: number | undefined,
  ) {
    super();
    if (deadline !== undefined) this.deadlineSlot = callDeadlines.add(deadline, this);
  }

  /**
   * @internal The deadline passed first: the call ends DEADLINE_EXCEEDED and is cancelled. A
   * subclass's `finish` and its end without one call `clearDeadline`, so this never follows them.
   */
  deadlinePassed(): void {
    this.deadlineSlot = undefined;
    this.finish({ code: grpc.status.DEADLINE_EXCEEDED, details: "Deadline exceeded" });
    this.markCancelled();
  }

  /** The call is over: its deadline will not run. */
  protected clearDeadline(): void {
    if (this.deadlineSlot === undefined) return;
    callDeadlines.remove(this.deadlineSlot, this);
    this.deadlineSlot = undefined;
  }

  /** The client's metadata (custom headers). */
  abstract get metadata(): grpc.Metadata;

  /**
   * The client's metadata, or undefined when it sent none and none was set since: a proxy
   * forwarding the call then makes no Metadata object for it (the gateway's every put).
   */
  get sentMetadata(): grpc.Metadata | undefined {
    return this.metadata;
  }

  /** The client's IP address (the TCP peer of the HTTP/2 session), when the socket has one. */
  abstract get remoteAddress(): string | undefined;

  /**
   * One request header of the client's metadata (lower-case name; its first value), without
   * building the metadata object: no pseudo-header nor gRPC's own (content-type, grpc-timeout...),
   * as a forwarded call, which carries only the metadata, reads it.
   */
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

  /**
   * Queues messages the caller framed itself, back to back in `framed` (each its 5-byte gRPC
   * prefix, uncompressed, then its body; `lengths` their bodies' lengths): a stream answering
   * many small messages in a turn (a watch fan-out) builds them in one buffer instead of one
   * allocation per message. Here they are sent one by one; a call on its own stream queues the
   * bytes as they are.
   */
  sendFramed(framed: Buffer, lengths: readonly number[]): boolean {
    let ok = true;
    let at = 0;
    for (const length of lengths) {
      ok = this.sendMessage(framed.subarray(at + 5, at + 5 + length));
      at += 5 + length;
    }
    return ok;
  }

  /**
   * Starts one message of `length` bytes whose body the caller writes piece by piece as it
   * arrives (a gateway relaying a member's 280 MB answer without holding it). Undefined when
   * this call cannot (a forwarded call's result frame carries one buffer), when it is over
   * MAX_SEND_MESSAGE_BYTES, or when the call is over: the caller then keeps the message whole.
   */
  startMessage(_length: number): MessageWriter | undefined {
    return undefined;
  }

  /** Ends the call with a status (OK with optional trailing metadata, or an error). */
  abstract finish(status: CallStatus): void;

  /**
   * Asks the client to stop sending until `resumeReading` (HTTP/2 flow control): messages
   * already on their way still arrive. A call without its own stream cannot pause.
   */
  pauseReading(): void {}

  resumeReading(): void {}

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
  /** Messages of this turn not yet on the stream (made on the first). */
  private pending: Buffer[] | undefined;
  private flushScheduled = false;
  private headersSent = false;
  private finished = false;
  private needDrain = false;

  constructor(
    path: string,
    deadline: number | undefined,
    private readonly stream: H2Stream,
    /**
     * The request's custom headers (not pseudo-headers nor RESERVED_HEADERS) as name, value,
     * name, value..., in order; NO_FIELDS when there are none (a Go client's usual call). Not a
     * header object: a call lives past scavenges at many clients, and what it holds is promoted.
     */
    private readonly fields: readonly string[],
    private readonly connection: ServerConnection,
    private readonly maxReceiveBytes = Number.POSITIVE_INFINITY,
  ) {
    super(path, deadline);
  }

  /** @internal The stream's events, set by the server before any arrive. */
  readonly streamEvents: StreamEvents = new CallStreamEvents(this);
  /**
   * @internal A unary or server-streaming call's handler, run once its one request message and
   * the client's half-close are in: set by the server instead of a 'message' and an 'end'
   * listener per call (both events would reach no one else: the handler is not running yet).
   */
  unaryHandler: MethodHandler | undefined;
  /** @internal A bidi call's check of each request message (MethodHandler.requestCheck). */
  requestCheck: RequestCheck | undefined;
  /** Request messages a unary or server-streaming call received. */
  private requests = 0;

  /** The client's metadata (custom headers), built on first use. */
  override get metadata(): grpc.Metadata {
    this.metadataCache ??= metadataFromFields(this.fields) ?? new grpc.Metadata();
    return this.metadataCache;
  }

  override get sentMetadata(): grpc.Metadata | undefined {
    return this.metadataCache ?? (this.fields.length === 0 ? undefined : this.metadata);
  }

  /** The client's IP address (the TCP peer of the connection), when the socket has one. */
  override get remoteAddress(): string | undefined {
    return this.connection.remoteAddress;
  }

  override header(name: string): string | undefined {
    const fields = this.fields;
    for (let i = 0; i < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
    return undefined;
  }

  override pauseReading(): void {
    this.stream.pauseReading();
  }

  override resumeReading(): void {
    this.stream.resumeReading();
  }

  /** Bytes queued on the stream and not yet sent, plus messages not yet queued. */
  override get writableLength(): number {
    let queued = this.stream.queuedBytes;
    for (const p of this.pending ?? NO_BUFFERS) queued += p.length;
    return queued;
  }

  /**
   * Queues a message; the messages of one turn go out as one DATA write. false: the
   * stream's buffer is full, wait for 'drain'.
   */
  override sendMessage(message: Uint8Array): boolean {
    if (this.finished) return false;
    this.observer?.sent(message.length);
    this.queue().push(frameGrpcMessage(message));
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
    this.queue().push(frameGrpcMessage(message));
    this.finish(status);
  }

  override sendMessageParts(message: MessageParts): boolean {
    if (this.finished) return false;
    if (message.length > MAX_SEND_MESSAGE_BYTES) {
      this.finish(messageTooLarge(message.length));
      return false;
    }
    this.observer?.sent(message.length);
    const pending = this.queue();
    pending.push(messagePrefix(message.length));
    for (const p of message.parts) if (p.length > 0) pending.push(p as Buffer);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(() => this.flush());
    }
    return !this.needDrain;
  }

  override sendFramed(framed: Buffer, lengths: readonly number[]): boolean {
    if (this.finished) return false;
    if (this.observer !== undefined) for (const length of lengths) this.observer.sent(length);
    this.queue().push(framed);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(() => this.flush());
    }
    return !this.needDrain;
  }

  override startMessage(length: number): MessageWriter | undefined {
    if (this.finished || length > MAX_SEND_MESSAGE_BYTES || this.stream.closed) return undefined;
    this.observer?.sent(length);
    this.queue().push(messagePrefix(length));
    // Whatever is queued goes first, then the body straight onto the stream: no queue of ours.
    this.flush();
    const stream = this.stream;
    const over = () => this.finished || stream.closed;
    return {
      write: (chunk, sent) => {
        if (over()) return true;
        if (stream.write(chunk as Buffer, sent)) return true;
        this.needDrain = true;
        return false;
      },
      onDrain: (resume) => {
        if (over() || !this.needDrain) resume();
        else {
          // 'close' too: a client that leaves never drains, and the relay must not wait forever.
          const done = () => {
            this.off("drain", done);
            this.off("close", done);
            resume();
          };
          this.once("drain", done);
          this.once("close", done);
        }
      },
    };
  }

  /** Ends the call with a status (OK with optional trailing metadata, or an error). */
  override finish(status: CallStatus): void {
    if (this.finished) return;
    this.finished = true;
    this.observer?.handled(status.code, (performance.now() - this.startedAt) / 1000, this);
    this.clearDeadline();
    if (this.stream.closed) return;
    this.flush();
    if (!this.headersSent) {
      // Trailers-only: no message was sent, status goes in the one HEADERS frame.
      this.headersSent = true;
      this.stream.respond(trailersOnlyBlock(status), true);
      return;
    }
    this.stream.end(trailersBlock(status));
  }

  private flush(): void {
    this.flushScheduled = false;
    const pending = this.pending;
    if (pending === undefined) return;
    this.pending = undefined;
    if (this.stream.closed) return;
    if (!this.headersSent) {
      this.headersSent = true;
      this.stream.respond(RESPONSE_HEADERS_BLOCK);
    }
    // Many small messages of one turn (a watch fan-out): one buffer, one DATA write; a large
    // message's pieces (a full list's chunks, a relayed answer) are queued as they are, no copy.
    const pieces = joinSmall(pending);
    let ok = true;
    for (const p of pieces) ok = this.stream.write(p);
    if (!ok) this.needDrain = true;
  }

  /** The messages of this turn, made on the first. */
  private queue(): Buffer[] {
    this.pending ??= [];
    return this.pending;
  }

  /** @internal The client half-closed. */
  remoteEnded(): void {
    const handler = this.unaryHandler;
    if (handler === undefined) {
      this.emit("end");
      return;
    }
    if (this.cancelled) return;
    if (this.requests === 0) {
      // grpc-go's reading of the one request message: nothing, or a message cut short.
      this.finish({
        code: grpc.status.UNKNOWN,
        details: (this.inbox?.buffered ?? 0) > 0 ? "unexpected EOF" : "EOF",
      });
      return;
    }
    const problem = handler.requestCheck?.(this.request);
    if (problem !== undefined) {
      this.finish(
        handler.kind === "unary" ? unmarshallingRequestFailed(problem) : unmarshallingMessageFailed(problem),
      );
      return;
    }
    handler.handle(this);
  }

  /** @internal Queued bytes went out after a write was refused. */
  drained(): void {
    if (!this.needDrain) return;
    this.needDrain = false;
    this.emit("drain");
  }

  /** @internal The stream is gone. */
  onClose(): void {
    this.clearDeadline();
    if (!this.finished) {
      this.finished = true;
      this.observer?.handled(grpc.status.CANCELLED, (performance.now() - this.startedAt) / 1000, this);
      this.markCancelled();
    }
    this.emit("close");
  }

  /** @internal Incoming bytes, split into messages (message-framing.ts). */
  receive(chunk: Buffer): void {
    if (this.finished) return;
    if (this.inbox === undefined) {
      // One whole message in one DATA frame, the usual unary request: a view of it, as the
      // deframer would give, without a deframer per call.
      if (chunk.length >= 5 && chunk[0] === 0) {
        const length = chunk.readUInt32BE(1);
        if (chunk.length === 5 + length && length <= this.maxReceiveBytes) {
          this.received(chunk.subarray(5));
          return;
        }
      }
      this.inbox = new MessageDeframer(this.maxReceiveBytes);
    }
    const inbox = this.inbox;
    inbox.push(chunk);
    for (;;) {
      let message: Buffer | undefined;
      try {
        message = inbox.next();
      } catch (error) {
        this.finish(framingRefused(error as GrpcFramingError, this.maxReceiveBytes));
        return;
      }
      if (message === undefined) return;
      this.received(message);
      if (this.finished) return;
    }
  }

  private received(message: Buffer): void {
    this.observer?.received(message.length);
    if (this.unaryHandler === undefined) {
      const problem = this.requestCheck?.(message);
      if (problem !== undefined) {
        this.finish(unmarshallingMessageFailed(problem));
        return;
      }
      this.emit("message", message);
    } else if (this.requests++ === 0) {
      // grpc-go (1.26, etcd 3.4's) reads one request message of a unary or server-streaming
      // call and never looks at more: the first one is the request.
      this.request = message;
    }
  }

  /** Splits the request bytes into messages; made once a chunk is not one whole message. */
  private inbox: MessageDeframer | undefined;
}

/** A call's stream events: one object with its methods on the prototype, no closures per call. */
class CallStreamEvents implements StreamEvents {
  constructor(private readonly call: Http2ServerCall) {}

  data(chunk: Buffer): void {
    this.call.receive(chunk);
  }

  end(): void {
    this.call.remoteEnded();
  }

  close(): void {
    this.call.onClose();
  }

  drain(): void {
    this.call.drained();
  }
}

const EMPTY = Buffer.alloc(0);
const NO_BUFFERS: readonly Buffer[] = [];
/** A call's custom headers when it has none. */
const NO_FIELDS: readonly string[] = Object.freeze([]);
/** `:status: 415`: an HTTP/2 request that is not gRPC. */
const UNSUPPORTED_MEDIA_TYPE_BLOCK = encodeLiteralHeaderBlock([
  { name: ":status", value: "415", neverIndex: false },
]);
const IGNORED_STREAM: StreamEvents = { data() {}, end() {}, close() {}, drain() {} };

/** `:status: 200` (HPACK static entry 8) and `content-type: application/grpc`: the same for every call. */
const RESPONSE_HEADERS_BLOCK = Buffer.concat([
  Buffer.from([0x88]),
  encodeLiteralHeaderBlock([{ name: "content-type", value: "application/grpc", neverIndex: false }]),
]);
const OK_TRAILERS_BLOCK = encodeLiteralHeaderBlock([{ name: "grpc-status", value: "0", neverIndex: false }]);

function statusFields(status: CallStatus): HeaderField[] {
  const fields: HeaderField[] = [{ name: "grpc-status", value: String(status.code), neverIndex: false }];
  if (status.details)
    fields.push({ name: "grpc-message", value: encodeGrpcMessage(status.details), neverIndex: false });
  const md = status.metadata?.toHttp2Headers();
  if (md !== undefined)
    for (const [name, value] of Object.entries(md)) {
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value])
        fields.push({ name, value: String(v), neverIndex: false });
    }
  return fields;
}

function trailersBlock(status: CallStatus): Buffer {
  if (status.code === grpc.status.OK && !status.details && status.metadata === undefined)
    return OK_TRAILERS_BLOCK;
  return encodeLiteralHeaderBlock(statusFields(status));
}

/** A trailers-only answer: :status, content-type and the status in one HEADERS frame. */
function trailersOnlyBlock(status: CallStatus): Buffer {
  return Buffer.concat([RESPONSE_HEADERS_BLOCK, encodeLiteralHeaderBlock(statusFields(status))]);
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
   * false: every connection goes to HTTP/2 as it is, unread (no HTTP/1.1 on the port): what
   * the first-bytes routing costs is measured against this
   * (bench/src/grpc/server-cost.ts). Default true.
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
  /** The services of the registered methods: grpc-go tells an unknown service from an unknown method. */
  private readonly services = new Set<string>();
  private readonly observer: GrpcCallObserver | undefined;
  private readonly methodObservers = new Map<string, GrpcMethodObserver>();
  private readonly connections = new Set<ServerConnection>();
  /**
   * Every accepted socket until it closes, including those still in a TLS handshake or waiting
   * for their first bytes (not yet a connection): close() waits for these too, so a call that
   * arrives on a socket accepted just before close() is refused with GOAWAY (which clients
   * retry elsewhere) rather than cut off when the process exits.
   */
  private readonly sockets = new Set<net.Socket>();
  private closing = false;
  private readonly http1: http.Server | undefined;
  private readonly tls: ServerTls | undefined;
  private readonly plaintextToo: boolean;
  private readonly onTlsRejected: (rejection: TlsRejection) => void;
  private listener: net.Server | undefined;
  private readonly windowBytes: number;
  private readonly maxReceiveBytes: number;
  private readonly maxConcurrentStreams: number;
  private readonly keepalive: KeepalivePolicy | undefined;
  private readonly routeFirstBytes: boolean;

  constructor(options: GrpcHttp2ServerOptions = {}) {
    this.routeFirstBytes = options.routeFirstBytes ?? true;
    this.windowBytes = options.windowBytes ?? 8 * 1024 * 1024;
    this.maxReceiveBytes = options.maxReceiveBytes ?? Number.POSITIVE_INFINITY;
    this.maxConcurrentStreams = options.maxConcurrentStreams ?? 2 ** 32 - 1;
    this.http1 = options.http1 === undefined ? undefined : http.createServer(options.http1);
    this.tls = options.tls;
    this.plaintextToo = options.plaintextToo === true;
    this.onTlsRejected = options.onTlsRejected ?? (() => {});
    this.observer = options.observer;
    this.keepalive = options.keepalive;
  }

  /** Serves HTTP/2 on a connection (a socket, or client-port.ts's wrapper around one). */
  private serve(socket: Duplex): void {
    let peerCommonName: string | undefined;
    if (this.tls?.verifiesPeers) peerCommonName = verifiedCommonName(socket as tls.TLSSocket);
    const connection: ServerConnection = new ServerConnection(
      socket,
      {
        stream: (stream, headers) => this.dispatch(stream, headers, connection, peerCommonName),
      },
      {
        windowBytes: this.windowBytes,
        maxConcurrentStreams: this.maxConcurrentStreams,
        ...(this.keepalive === undefined ? {} : { keepalive: this.keepalive }),
      },
    );
    this.connections.add(connection);
    connection.onClosed(() => this.connections.delete(connection));
    // Accepted before close() but routed after it: SETTINGS, then GOAWAY naming no stream.
    if (this.closing) connection.close();
    socket.resume();
  }

  register(path: string, handler: MethodHandler): void {
    this.handlers.set(path, handler);
    this.services.add(path.slice(1, path.lastIndexOf("/")));
    if (this.observer !== undefined) this.methodObservers.set(path, this.observer.method(path, handler.kind));
  }

  /** grpc-go's answer to a path no registered method has (server.go, handleStream). */
  private unknownMethod(path: string): CallStatus {
    const name = path.startsWith("/") ? path.slice(1) : path;
    const slash = name.lastIndexOf("/");
    // grpc-go 1.26 (etcd 3.4's) answers a path without a service with RESOURCE_EXHAUSTED.
    if (slash === -1)
      return { code: grpc.status.RESOURCE_EXHAUSTED, details: `malformed method name: ${goQuote(path)}` };
    const service = name.slice(0, slash);
    return {
      code: grpc.status.UNIMPLEMENTED,
      details: this.services.has(service)
        ? `unknown method ${name.slice(slash + 1)} for service ${service}`
        : `unknown service ${service}`,
    };
  }

  /** Listens on host:port; returns the bound port. */
  listen(target: string): Promise<number> {
    const http1 = this.http1;
    const route = this.routeFirstBytes
      ? (socket: net.Socket) =>
          routeClientConnection(socket, {
            http2: (connection) => this.serve(connection),
            http1: http1 === undefined ? undefined : (s) => http1.emit("connection", s),
          })
      : (socket: net.Socket) => this.serve(socket);
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
    // The raw socket, TLS or not ('connection' comes before any handshake).
    listener.on("connection", (socket: net.Socket) => {
      this.sockets.add(socket);
      socket.once("close", () => this.sockets.delete(socket));
    });
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
   * complete. Resolves once every accepted socket is closed; those still open after `graceMs`
   * are destroyed.
   */
  close(graceMs: number): Promise<void> {
    this.closing = true;
    this.listener?.close();
    this.http1?.closeAllConnections();
    for (const c of this.connections) c.close();
    return new Promise((resolve) => {
      const done = () => {
        clearInterval(poll);
        clearTimeout(timer);
        resolve();
      };
      // HTTP/1.x connections routed after close() began, and sockets whose first bytes never
      // come, are closed as they go idle; the rest end themselves (ServerConnection.close).
      const poll = setInterval(() => {
        this.http1?.closeIdleConnections();
        if (this.sockets.size === 0) done();
      }, 50);
      const timer = setTimeout(() => {
        for (const c of this.connections) c.destroy();
        for (const s of this.sockets) s.destroy();
        done();
      }, graceMs);
      if (this.sockets.size === 0) done();
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
      call.finish(this.unknownMethod(call.path));
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
      call.finish(framingRefused(new GrpcFramingError("too-large", length), this.maxReceiveBytes));
      return;
    }
    observer?.received(length);
    const problem = handler.requestCheck?.(call.request);
    if (problem !== undefined) {
      call.finish(unmarshallingRequestFailed(problem));
      return;
    }
    handler.handle(call);
  }

  private dispatch(
    stream: H2Stream,
    fields: HeaderFields,
    connection: ServerConnection,
    peerCommonName: string | undefined,
  ): void {
    // One pass over the block's fields (valid only now: HPACK's decoder reuses them): what the
    // server reads, and the custom headers the call keeps. A repeated field reads as it did from
    // the header object (an array there): a path or encoding joined by ",", no grpc-timeout, no
    // content-type.
    let path: string | undefined;
    let contentType: string | undefined;
    let contentTypes = 0;
    let timeout: string | undefined;
    let timeouts = 0;
    let encoding: string | undefined;
    let custom: string[] | undefined;
    const { names, values, count } = fields;
    for (let i = 0; i < count; i++) {
      const name = names[i]!;
      const value = values[i]!;
      switch (name) {
        case ":path":
          path = path === undefined ? value : `${path},${value}`;
          continue;
        case "content-type":
          contentType = value;
          contentTypes++;
          continue;
        case "grpc-timeout":
          timeout = value;
          timeouts++;
          continue;
        case "grpc-encoding":
          encoding = encoding === undefined ? value : `${encoding},${value}`;
          continue;
      }
      if (name.charCodeAt(0) === 0x3a || RESERVED_HEADERS.has(name)) continue;
      custom ??= [];
      custom.push(name, value);
    }
    if (contentTypes !== 1 || !contentType!.startsWith("application/grpc")) {
      stream.events = IGNORED_STREAM;
      stream.respond(UNSUPPORTED_MEDIA_TYPE_BLOCK, true);
      return;
    }
    path ??= "";
    const handler = this.handlers.get(path);
    const call = new Http2ServerCall(
      path,
      timeouts === 1 ? deadlineFrom(timeout) : undefined,
      stream,
      custom ?? NO_FIELDS,
      connection,
      this.maxReceiveBytes + (handler?.wrapperBytes ?? 0),
    );
    stream.events = call.streamEvents;
    call.peerCommonName = peerCommonName;
    if (handler === undefined) {
      call.finish(this.unknownMethod(path));
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
    if (encoding !== undefined && encoding !== "identity") {
      // No decompressor is registered, as in etcd (grpc-go registers gzip only when imported).
      call.finish({
        code: grpc.status.UNIMPLEMENTED,
        details: `grpc: Decompressor is not installed for grpc-encoding ${goQuote(encoding)}`,
      });
      return;
    }
    if (handler.kind === "bidi") {
      call.requestCheck = handler.requestCheck;
      call.on("end", () => call.emit("halfClose"));
      handler.handle(call);
      return;
    }
    call.unaryHandler = handler;
  }
}
