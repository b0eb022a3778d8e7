// The client role of one HTTP/2 connection on the shared core (session.ts), as much as a gRPC
// client needs (the peer transport's Raft stream and snapshot calls, the gateway's calls to its
// members): requests opened here, their bodies sent flow-controlled, the answers' headers, bytes
// and trailers handed back. No socket, no timers: client-socket.ts does the I/O.
//
// Why not node:http2's client session: the same reasons as connection.ts, on the sending side
// (a stream object, an EventEmitter and a round of nghttp2 callbacks per write).
//
// Client choices: response DATA is acknowledged at half a window, as the server role does with
// requests (a reader may pause its stream's window: pauseReading); no PUSH_PROMISE (we send
// SETTINGS_ENABLE_PUSH 0); no request trailers (a request ends with END_STREAM on DATA).

import {
  FLAG_END_STREAM,
  FRAME,
  frameHeader,
  H2_ERROR,
  H2Session,
  H2SessionStream,
  type HeaderFields,
  headersObject,
  type IncomingHeaders,
  MAX_WINDOW,
  SETTINGS_ENABLE_PUSH,
  type SessionIo,
  STREAM_HIGH_WATER_BYTES,
} from "./session.js";

/** What a request stream tells its caller. */
export interface ClientStreamEvents {
  /** The response headers, then the trailers; `endStream` on the last (a trailers-only answer's only). */
  headers(headers: IncomingHeaders, endStream: boolean): void;
  /** Response bytes (DATA payload); without it they are dropped (answers nobody reads). */
  data?(chunk: Buffer): void;
  /** The stream is gone: both sides ended, reset (`resetCode`), or the connection closed. */
  close(resetCode: number | undefined): void;
  /** Queued request bytes went out (after `write` returned false). */
  drain(): void;
}

/** One request: its body out (flow-controlled), the answer's headers and trailers in. */
export class H2ClientStream extends H2SessionStream {
  events: ClientStreamEvents;
  /** Our END_STREAM rides on the last DATA frame (a getter: no field per stream). */
  protected get endsOnData(): boolean {
    return true;
  }

  /** A writer told to wait goes on once half of the high-water mark is left. */
  protected get drainAtBytes(): number {
    return STREAM_HIGH_WATER_BYTES / 2;
  }

  constructor(
    id: number,
    connection: H2ClientConnection,
    initialSendWindow: number,
    events: ClientStreamEvents,
  ) {
    super(id, connection, initialSendWindow);
    this.events = events;
  }

  /** Half-closes after every queued byte (END_STREAM). */
  end(): void {
    if (this.closed || this.localClosed || this.endQueued) return;
    this.endQueued = true;
    this.session.schedule(this);
  }

  /** Every byte went out before `end` came: an empty DATA frame carries END_STREAM. */
  protected sendEnd(out: (b: Buffer) => void): void {
    out(frameHeader(0, FRAME.DATA, FLAG_END_STREAM, this.id));
  }

  /** @internal The server answered before our END_STREAM (a refusal): nothing more we send is read. */
  remoteEnded(): void {
    if (!this.localClosed) this.reset(H2_ERROR.NO_ERROR);
  }
}

export interface ClientConnectionOptions {
  /** Our receive window per stream and for the connection. */
  windowBytes: number;
  /**
   * The server's GOAWAY (after the streams it refused closed): no new streams here; those it
   * still takes finish.
   */
  goAway?(lastStreamId: number, code: number): void;
  /**
   * The server's first SETTINGS arrived: it took the connection (a server that refuses a client
   * after the TLS handshake, e.g. for its certificate's CN, closes before sending any).
   */
  accepted?(): void;
}

export class H2ClientConnection extends H2Session<H2ClientStream> {
  private nextStreamId = 1;

  private readonly goAwayListener: ((lastStreamId: number, code: number) => void) | undefined;
  private readonly acceptedListener: (() => void) | undefined;

  constructor(io: SessionIo, options: ClientConnectionOptions) {
    super(io, options.windowBytes, "client", [SETTINGS_ENABLE_PUSH, 0]);
    this.goAwayListener = options.goAway;
    this.acceptedListener = options.accepted;
  }

  /**
   * Whether the server's SETTINGS_MAX_CONCURRENT_STREAMS is reached: a request opened now would
   * be refused (REFUSED_STREAM), so the caller waits for a stream to close.
   */
  get full(): boolean {
    return this.streams.size >= this.peerMaxStreams;
  }

  /** Opens a request stream with a pre-encoded header block; undefined once going away. */
  request(block: Buffer, events: ClientStreamEvents): H2ClientStream | undefined {
    if (this.dead || this.goingAway || this.nextStreamId > MAX_WINDOW) return undefined;
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const stream = new H2ClientStream(id, this, this.peerInitialWindow, events);
    this.streams.set(id, stream);
    this.sendHeaders(id, block, false);
    return stream;
  }

  /** RFC 9113 3.4: the server's connection preface is a SETTINGS frame. */
  protected override frame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (!this.settled && type !== FRAME.SETTINGS) {
      this.connectionError(H2_ERROR.PROTOCOL_ERROR, "the server's first frame is not SETTINGS");
      return;
    }
    const first = !this.settled;
    super.frame(type, flags, streamId, payload);
    if (first && this.settled) this.acceptedListener?.();
  }

  protected badHeadersStream(): string | undefined {
    return undefined;
  }

  protected headerBlock(streamId: number, endStream: boolean, fields: HeaderFields): void {
    const stream = this.streams.get(streamId);
    if (stream === undefined) return;
    stream.events.headers(headersObject(fields), endStream);
    if (endStream && !stream.closed) this.remoteEnd(stream);
  }

  /** DATA for a stream we no longer have is late, not an error (the server opens none). */
  protected idleStream(): boolean {
    return false;
  }

  protected streamData(stream: H2ClientStream, flags: number, data: Buffer, frameBytes: number): void {
    if (!this.receivedStreamData(stream, frameBytes)) return;
    if (data.length > 0) stream.events.data?.(data);
    if (stream.closed) return; // the reader reset it
    if (flags & FLAG_END_STREAM) this.remoteEnd(stream);
    else this.acknowledgeStream(stream);
  }

  protected peerGoingAway(lastStreamId: number, code: number, debug: Buffer): void {
    // Streams the server never saw were not processed: they close (their callers retry).
    for (const s of [...this.streams.values()]) {
      if (s.id > lastStreamId) this.closeStream(s, H2_ERROR.REFUSED_STREAM);
    }
    if (code !== H2_ERROR.NO_ERROR) {
      this.destroy();
      this.io.fail(code, debug.toString("latin1"));
      return;
    }
    this.goAwayListener?.(lastStreamId, code);
  }
}
