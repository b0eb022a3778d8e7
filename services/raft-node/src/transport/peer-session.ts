// Outbound gRPC calls to one peer on a node:http2 client session: the Raft stream (one call
// kept open, a RaftBatch message per Ready) and snapshot calls. On the wire these are the calls
// grpc-js made (same paths, headers and message framing), so a member of the previous version
// serves them unchanged.
//
// Not grpc-js: its client ran every batch through a call stream, interceptors, a serializer
// callback and per-message filters (7-10% of a member's busy time under puts, 2026-12-06
// profile), for a call that only ever writes bytes and reads one status. Here a batch is one
// framed buffer written to the HTTP/2 stream.
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { decodeGrpcMessage, frameGrpcMessage } from "@etcd-ts/api";
import { status } from "@grpc/grpc-js";
import type { DialTls } from "./tls-credentials.js";

/** How a call ended: its gRPC status code and message. */
export interface CallOutcome {
  code: number;
  details: string;
}

/** A response's headers or trailers as node:http2 gives them (`:status` a number). */
export type ResponseHeaders = Record<string, string | string[] | number | undefined>;

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
  /** The connection (TCP and TLS) is up: the peer is reachable again. */
  connected?(): void;
}

/** Our receive window per stream and for the session: a snapshot's answer is tiny, but cheap. */
const WINDOW_BYTES = 1024 * 1024;

/** One peer's HTTP/2 session, reconnected lazily (by the next call) after it closes. */
export class PeerSession {
  private session: http2.ClientHttp2Session | undefined;
  private keepalive: NodeJS.Timeout | undefined;

  constructor(
    readonly url: string,
    private readonly dial: DialTls,
    private readonly options: PeerSessionOptions,
  ) {}

  /** Opens a call: its request headers go out at once, its messages are the caller's. */
  open(path: string, headers: Record<string, string>): PeerCall {
    const session = this.current();
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(
        {
          ":method": "POST",
          ":path": path,
          "content-type": "application/grpc",
          te: "trailers",
          ...headers,
        },
        { endStream: false },
      );
    } catch (err) {
      // The session is closing (a GOAWAY arrived meanwhile): the next call takes a new one.
      if (this.session === session) this.session = undefined;
      return PeerCall.failed({ code: status.UNAVAILABLE, details: String(err) });
    }
    return new PeerCall(stream);
  }

  private current(): http2.ClientHttp2Session {
    const existing = this.session;
    if (existing !== undefined && !existing.closed && !existing.destroyed) return existing;
    const parsed = new URL(this.url);
    const https = parsed.protocol === "https:";
    const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
    const port = Number(parsed.port || (https ? 443 : 80));
    const dial = this.dial;
    const session = http2.connect(`${https ? "https" : "http"}://${parsed.host}`, {
      settings: { enablePush: false, initialWindowSize: WINDOW_BYTES },
      // Nagle's algorithm would hold a batch back until the previous one is acknowledged (Go,
      // and so etcd, turns it off on every connection).
      createConnection: () => {
        if (!https) return net.connect({ host, port, noDelay: true });
        // As channelCredentialsFor: auto-TLS verifies nothing; certificate files verify the
        // peer against the trusted CA (the system's when none) and offer our certificate.
        const socket = tls.connect({
          host,
          port,
          ALPNProtocols: ["h2"],
          ...(net.isIP(host) === 0 ? { servername: host } : {}),
          ...(dial === undefined
            ? { rejectUnauthorized: false }
            : { ...(dial.ca === null ? {} : { ca: dial.ca }), cert: dial.cert, key: dial.key }),
        });
        socket.setNoDelay(true);
        return socket;
      },
    });
    this.session = session;
    session.on("error", () => {}); // each call sees its own stream fail
    session.once("connect", () => {
      session.setLocalWindowSize(WINDOW_BYTES);
      this.options.connected?.();
    });
    session.once("close", () => {
      if (this.session === session) this.session = undefined;
    });
    session.once("goaway", () => {
      // The peer takes no new calls here: those open finish, the next opens a new session.
      if (this.session === session) this.session = undefined;
      session.close();
    });
    session.unref();
    if (this.keepalive === undefined) {
      this.keepalive = setInterval(() => this.ping(), this.options.keepaliveMs);
      this.keepalive.unref();
    }
    return session;
  }

  /** A peer that vanished without closing its socket (power, partition) is found by ping. */
  private ping(): void {
    const session = this.session;
    if (session === undefined || session.connecting || session.closed || session.destroyed) return;
    const deadline = setTimeout(
      () => session.destroy(new Error("keepalive ping not answered")),
      this.options.keepaliveTimeoutMs,
    );
    deadline.unref();
    const sent = session.ping(() => clearTimeout(deadline));
    if (!sent) clearTimeout(deadline);
  }

  /** Ends the session: calls in flight are cancelled. */
  close(): void {
    clearInterval(this.keepalive);
    this.keepalive = undefined;
    this.session?.destroy();
    this.session = undefined;
  }
}

/** One call: messages out, and the status it ended with (reported once). */
export class PeerCall {
  private outcome: CallOutcome | undefined;
  private readonly waiters: ((outcome: CallOutcome) => void)[] = [];

  constructor(private readonly stream: http2.ClientHttp2Stream | undefined) {
    if (stream === undefined) return;
    let headers: http2.IncomingHttpHeaders | undefined;
    let trailers: http2.IncomingHttpHeaders | undefined;
    let error = "";
    stream.once("response", (h) => {
      headers = h;
    });
    stream.once("trailers", (h) => {
      trailers = h;
    });
    stream.on("error", (err: Error) => {
      error = err.message;
    });
    // The answer's one (empty) message is not needed; reading it lets the stream end.
    stream.resume();
    stream.once("close", () => {
      this.settle(
        callOutcomeOf(trailers) ??
          callOutcomeOf(headers) ?? {
            code: status.UNAVAILABLE,
            details: error || `stream closed without a status (HTTP/2 code ${stream.rstCode ?? 0})`,
          },
      );
    });
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

  /** Bytes written and not yet taken by the connection (flow control or a slow socket). */
  get writableLength(): number {
    return this.stream?.writableLength ?? 0;
  }

  /** Writes one message (framed here); false: wait for `room` before writing more. */
  write(message: Uint8Array): boolean {
    return this.writeFramed(frameGrpcMessage(message));
  }

  /** Writes one message already behind its gRPC prefix (encodeRaftBatchMessage). */
  writeFramed(framed: Buffer): boolean {
    const stream = this.stream;
    if (stream === undefined || this.outcome !== undefined || stream.writableEnded) return false;
    return stream.write(framed);
  }

  /** Resolves once what was written drained, or once the call is over. */
  room(): Promise<void> {
    const stream = this.stream;
    if (stream === undefined || this.outcome !== undefined || !stream.writableNeedDrain)
      return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        stream.off("drain", done);
        stream.off("close", done);
        resolve();
      };
      stream.once("drain", done);
      stream.once("close", done);
    });
  }

  /** Half-closes: no more messages; the status follows. */
  end(): void {
    if (this.stream !== undefined && !this.stream.writableEnded) this.stream.end();
  }

  /** Abandons the call (RST_STREAM CANCEL). */
  cancel(): void {
    if (this.stream !== undefined && !this.stream.destroyed)
      this.stream.close(http2.constants.NGHTTP2_CANCEL);
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

  private settle(outcome: CallOutcome): void {
    if (this.outcome !== undefined) return;
    this.outcome = outcome;
    for (const w of this.waiters.splice(0)) w(outcome);
  }
}
