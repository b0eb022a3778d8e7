// The server role of one HTTP/2 connection on the shared core (session.ts): requests arrive as
// streams handed to a handler, which answers with headers, bytes and trailers. No socket, no
// timers: server-connection.ts does the I/O.
//
// Ours, not node:http2's: a bare gRPC responder on node:http2 costs 60-69 us of server CPU per
// call (GrpcHttp2Server, goload 10 conns / 100 clients, loaded 2-core machine), a frame-level
// one 7-11 us (2026-12-06): node:http2 builds a stream object, an EventEmitter, header objects
// and a round of nghttp2 callbacks per call, most of which gRPC does not need. No maintained
// JS HTTP/2 server exists besides node:http2.
//
// Server choices: received DATA is acknowledged (WINDOW_UPDATE) at half a window: a gRPC server
// reads every message it is sent and the request size limits are the handlers'
// (GrpcHttp2Server's maxReceiveBytes); a reader may pause its stream's window (pauseReading).

import {
  FLAG_END_STREAM,
  FRAME,
  frame,
  H2_ERROR,
  H2Session,
  H2SessionStream,
  type HeaderFields,
  SETTINGS_MAX_CONCURRENT_STREAMS,
  type SessionIo,
} from "./session.js";

/** What a stream tells its call. */
export interface StreamEvents {
  /** Request bytes (DATA payload). */
  data(chunk: Buffer): void;
  /** The client's END_STREAM: it sends no more. */
  end(): void;
  /** The stream is gone (RST_STREAM either way, the connection closed, or both sides ended). */
  close(): void;
  /** Queued response bytes all went out (after `write` returned false). */
  drain(): void;
}

export interface ConnectionHandler {
  /**
   * A new request: `stream.events` must be set before this returns. `fields` are the request's
   * headers, valid only during this call (the decoder reuses them): what the call keeps is
   * copied, so a call's objects do not include a header object of its own.
   */
  stream(stream: H2Stream, fields: HeaderFields): void;
  /** A PING from the client (keepalive enforcement). */
  ping?(): void;
}

/** The highest stream ID (31 bits). */
const MAX_STREAM_ID = 0x7fffffff;

export interface ConnectionOptions {
  /** Our receive window per stream and for the connection. */
  windowBytes: number;
  maxConcurrentStreams: number;
}

/** One request/response exchange. */
export class H2Stream extends H2SessionStream {
  events: StreamEvents | undefined;
  private trailers: Buffer | undefined;
  private headersSent = false;

  // Constants as getters, the session as the base class keeps it: no fields of their own in
  // every stream (a call's stream lives past scavenges at many clients).
  /** Trailers follow the last DATA frame. */
  protected get endsOnData(): boolean {
    return false;
  }

  /** A writer told to wait goes on once every queued byte is out. */
  protected get drainAtBytes(): number {
    return 0;
  }

  /** Sends the response HEADERS (a pre-encoded block); `endStream`: a trailers-only answer. */
  respond(block: Buffer, endStream = false): void {
    if (this.closed || this.headersSent) return;
    this.headersSent = true;
    this.session.sendHeaders(this.id, block, endStream);
    if (endStream) this.endLocal();
  }

  /** Ends the response with trailers (sent after every queued byte). */
  end(trailersBlock: Buffer): void {
    if (this.closed || this.localClosed || this.endQueued) return;
    this.trailers = trailersBlock;
    this.endQueued = true;
    this.session.schedule(this);
  }

  protected sendEnd(): void {
    this.session.sendHeaders(this.id, this.trailers!, true);
    this.trailers = undefined;
  }

  /** @internal */
  remoteEnded(): void {
    this.events?.end();
  }

  protected override localEndedFirst(): void {
    // The client may still be sending a request we no longer read: tell it to stop (grpc-go does).
    this.session.sendReset(this.id, H2_ERROR.NO_ERROR);
    this.session.closeStream(this, undefined);
  }
}

export class H2ServerConnection extends H2Session<H2Stream> {
  constructor(
    io: SessionIo,
    private readonly handler: ConnectionHandler,
    private readonly options: ConnectionOptions,
  ) {
    super(io, options.windowBytes, "server", [
      SETTINGS_MAX_CONCURRENT_STREAMS,
      Math.min(options.maxConcurrentStreams, 2 ** 32 - 1),
    ]);
  }

  protected badHeadersStream(streamId: number): string | undefined {
    return streamId % 2 === 0 ? "HEADERS on a server stream ID" : undefined;
  }

  protected headerBlock(streamId: number, endStream: boolean, fields: HeaderFields): void {
    const existing = this.streams.get(streamId);
    if (existing !== undefined) {
      // Trailers from the client (gRPC clients send none): only their END_STREAM matters.
      if (!endStream) {
        existing.reset(H2_ERROR.PROTOCOL_ERROR);
        return;
      }
      this.remoteEnd(existing);
      return;
    }
    if (streamId <= this.lastStreamId) {
      this.connectionError(H2_ERROR.STREAM_CLOSED, "HEADERS on a closed stream");
      return;
    }
    this.lastStreamId = streamId;
    if (this.goingAway) {
      this.sendReset(streamId, H2_ERROR.REFUSED_STREAM);
      return;
    }
    if (this.streams.size >= this.options.maxConcurrentStreams) {
      this.sendReset(streamId, H2_ERROR.REFUSED_STREAM);
      return;
    }
    const stream = new H2Stream(streamId, this, this.peerInitialWindow);
    this.streams.set(streamId, stream);
    this.handler.stream(stream, fields);
    if (endStream && !stream.closed) this.remoteEnd(stream);
  }

  protected idleStream(streamId: number): boolean {
    return streamId > this.lastStreamId;
  }

  protected streamData(stream: H2Stream, flags: number, data: Buffer, frameBytes: number): void {
    if (!this.receivedStreamData(stream, frameBytes)) return;
    if (data.length > 0) stream.events?.data(data);
    if (flags & FLAG_END_STREAM && !stream.closed) this.remoteEnd(stream);
    else this.acknowledgeStream(stream);
  }

  /**
   * The first GOAWAY of a graceful close: it names the highest stream ID there can be, so the
   * client opens no more streams here while those already on the wire are still taken. The
   * final goAway() follows a round trip later (server-connection.ts).
   */
  shutdownNotice(): void {
    if (this.dead || this.goingAway) return;
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(MAX_STREAM_ID, 0);
    this.output(frame(FRAME.GOAWAY, 0, 0, payload));
  }

  /** The client opens no more streams; those open finish. It closes the socket itself. */
  protected peerGoingAway(): void {}

  protected override pingReceived(): void {
    this.handler.ping?.();
  }
}
