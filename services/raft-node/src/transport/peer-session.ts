// Outbound gRPC calls to one peer on one HTTP/2 connection of our own core
// (@etcd-ts/api's H2ClientConnection): the Raft stream (one call kept open, a RaftBatch message
// per Ready) and snapshot calls. On the wire these are the calls grpc-js made (same paths,
// headers and message framing), so a member of the previous version serves them unchanged.
//
// Not grpc-js: its client ran every batch through a call stream, interceptors, a serializer
// callback and per-message filters (7-10% of a member's busy time under puts, 2026-12-06
// profile), for a call that only ever writes bytes and reads one status. Not node:http2's
// client session either (a Writable stream, a write request and nghttp2 per batch): here a
// batch is one framed buffer, and a turn's frames go out in one socket write.
import {
  ClientSocketConnection,
  type ClientStreamEvents,
  decodeGrpcMessage,
  encodeLiteralHeaderBlock,
  frameGrpcMessage,
  H2_ERROR,
  type H2ClientStream,
  type IncomingHeaders,
} from "@etcd-ts/api";
import { status } from "@grpc/grpc-js";
import type { DialTls } from "./tls-credentials.js";

/** How a call ended: its gRPC status code and message. */
export interface CallOutcome {
  code: number;
  details: string;
  /** The connection's socket error code, when the call ended because the socket failed. */
  socketError?: string;
}

/** A response's headers or trailers. */
export type ResponseHeaders = IncomingHeaders;

/**
 * The status of a finished call from its trailers (or a trailers-only answer's headers), as
 * gRPC's HTTP/2 mapping reads it; undefined when they carry none. A non-200 HTTP status without
 * grpc-status (a proxy or a non-gRPC server answering) maps as grpc-go maps it.
 */
export function callOutcomeOf(headers: ResponseHeaders | undefined): CallOutcome | undefined {
  if (headers === undefined) return undefined;
  const code = headers["grpc-status"];
  if (typeof code === "string" && /^\d+$/.test(code)) {
    const message = headers["grpc-message"];
    return { code: Number(code), details: typeof message === "string" ? decodeGrpcMessage(message) : "" };
  }
  const httpStatus = headers[":status"];
  if (httpStatus !== undefined && Number(httpStatus) !== 200) {
    return { code: codeForHttpStatus(Number(httpStatus)), details: `unexpected HTTP status ${httpStatus}` };
  }
  return undefined;
}

/** grpc-go's mapping of an HTTP status that came without a gRPC status. */
export function codeForHttpStatus(httpStatus: number): number {
  switch (httpStatus) {
    case 400:
      return status.INTERNAL;
    case 401:
      return status.UNAUTHENTICATED;
    case 403:
      return status.PERMISSION_DENIED;
    case 404:
      return status.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return status.UNAVAILABLE;
    default:
      return status.UNKNOWN;
  }
}

export interface PeerSessionOptions {
  /** A PING every this many ms on an idle-or-not connection (grpc-js's keepalive_time_ms). */
  keepaliveMs: number;
  /** Unanswered for this long: the connection is taken as dead and destroyed. */
  keepaliveTimeoutMs: number;
  /**
   * The peer took the connection (its HTTP/2 SETTINGS arrived): it is reachable and does not
   * refuse us. Not the TCP or TLS connect: a member that refuses our certificate
   * (--peer-cert-allowed-cn) closes right after the handshake.
   */
  accepted?(): void;
}

/** Our receive window per stream and for the connection: the answers are empty messages. */
const WINDOW_BYTES = 1024 * 1024;

/** One peer's connection, reconnected lazily (by the next call) after it closes. */
export class PeerSession {
  private connection: ClientSocketConnection | undefined;
  private readonly authority: string;

  constructor(
    readonly url: string,
    private readonly dial: DialTls,
    private readonly options: PeerSessionOptions,
  ) {
    this.authority = new URL(url).host;
  }

  /** Opens a call: its request headers go out at once, its messages are the caller's. */
  open(path: string, headers: Record<string, string>): PeerCall {
    const connection = this.current();
    const call = new PeerCall(connection);
    const fields = [
      [":method", "POST"],
      [":scheme", this.url.startsWith("https:") ? "https" : "http"],
      [":path", path],
      [":authority", this.authority],
      ["content-type", "application/grpc"],
      ["te", "trailers"],
      ...Object.entries(headers),
    ].map(([name, value]) => ({ name: name!, value: value!, neverIndex: false }));
    const stream = connection.h2.request(encodeLiteralHeaderBlock(fields), call.events);
    if (stream === undefined) {
      // The connection is going away (a GOAWAY arrived): the next call takes a new one.
      if (this.connection === connection) this.connection = undefined;
      return PeerCall.failed({ code: status.UNAVAILABLE, details: "the peer's connection is closing" });
    }
    call.attach(stream);
    return call;
  }

  private current(): ClientSocketConnection {
    const existing = this.connection;
    if (existing?.usable) return existing;
    const parsed = new URL(this.url);
    const https = parsed.protocol === "https:";
    const dial = this.dial;
    const connection: ClientSocketConnection = new ClientSocketConnection({
      host: parsed.hostname,
      port: Number(parsed.port || (https ? 443 : 80)),
      // As channelCredentialsFor: auto-TLS verifies nothing; certificate files verify the peer
      // against the trusted CA (the system's when none) and offer our certificate.
      ...(https
        ? {
            tls:
              dial === undefined
                ? { rejectUnauthorized: false }
                : { ...(dial.ca === null ? {} : { ca: dial.ca }), cert: dial.cert, key: dial.key },
          }
        : {}),
      windowBytes: WINDOW_BYTES,
      keepalive: { intervalMs: this.options.keepaliveMs, timeoutMs: this.options.keepaliveTimeoutMs },
      accepted: () => this.options.accepted?.(),
      closed: () => {
        if (this.connection === connection) this.connection = undefined;
      },
    });
    this.connection = connection;
    return connection;
  }

  /** Ends the connection: calls in flight are cancelled. */
  close(): void {
    this.connection?.end();
    this.connection = undefined;
  }
}

/** One call: messages out, and the status it ended with (reported once). */
export class PeerCall {
  private outcome: CallOutcome | undefined;
  private readonly waiters: ((outcome: CallOutcome) => void)[] = [];
  private stream: H2ClientStream | undefined;
  private responseHeaders: IncomingHeaders | undefined;
  private trailers: IncomingHeaders | undefined;
  private drainWaiters: (() => void)[] = [];

  /** What the connection tells this call. */
  readonly events: ClientStreamEvents = {
    headers: (headers, endStream) => {
      if (this.responseHeaders === undefined && !endStream) this.responseHeaders = headers;
      else this.trailers = headers;
    },
    close: (resetCode) => {
      this.wakeWriters();
      this.settle(
        callOutcomeOf(this.trailers) ??
          callOutcomeOf(this.responseHeaders) ?? {
            code: status.UNAVAILABLE,
            socketError: this.connection?.errorCode || undefined,
            details:
              this.connection?.error ||
              (resetCode === undefined
                ? "the connection to the peer closed"
                : `stream reset by the peer (HTTP/2 code ${resetCode})`),
          },
      );
    },
    drain: () => this.wakeWriters(),
  };

  constructor(private readonly connection: ClientSocketConnection | undefined) {}

  /** @internal */
  attach(stream: H2ClientStream): void {
    this.stream = stream;
  }

  /** A call that could not be opened. */
  static failed(outcome: CallOutcome): PeerCall {
    const call = new PeerCall(undefined);
    call.settle(outcome);
    return call;
  }

  get done(): boolean {
    return this.outcome !== undefined;
  }

  /** Bytes written and not yet sent: held by flow control, or in the socket's buffer. */
  get writableLength(): number {
    return (this.stream?.queuedBytes ?? 0) + (this.connection?.socket.writableLength ?? 0);
  }

  /** Writes one message (framed here); false: wait for `room` before writing more. */
  write(message: Uint8Array): boolean {
    return this.writeFramed(frameGrpcMessage(message));
  }

  /** Writes one message already behind its gRPC prefix (encodeRaftBatchMessage). */
  writeFramed(framed: Buffer): boolean {
    if (this.stream === undefined || this.outcome !== undefined) return false;
    return this.stream.write(framed);
  }

  /** Sends what was written now, not at the end of this turn (ClientSocketConnection.flush). */
  flush(): void {
    if (this.outcome === undefined) this.connection?.flush();
  }

  /** Resolves once what was written drained, or once the call is over. */
  room(): Promise<void> {
    if (this.outcome !== undefined) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Half-closes: no more messages; the status follows. */
  end(): void {
    this.stream?.end();
  }

  /** Abandons the call (RST_STREAM CANCEL). */
  cancel(): void {
    this.stream?.reset(H2_ERROR.CANCEL);
  }

  /** Runs `listener` once with the call's status (at once if it is over). */
  onDone(listener: (outcome: CallOutcome) => void): void {
    if (this.outcome !== undefined) listener(this.outcome);
    else this.waiters.push(listener);
  }

  /** The call's status, once it is over. */
  finished(): Promise<CallOutcome> {
    return new Promise((resolve) => this.onDone(resolve));
  }

  private wakeWriters(): void {
    for (const w of this.drainWaiters.splice(0)) w();
  }

  private settle(outcome: CallOutcome): void {
    if (this.outcome !== undefined) return;
    this.outcome = outcome;
    for (const w of this.waiters.splice(0)) w(outcome);
  }
}
