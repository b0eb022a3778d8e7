// The server side of one HTTP/2 connection (RFC 9113), as much as gRPC uses, as a pure state
// machine: bytes in (`receive`), frames out (the `output` callback), streams handed to a handler.
// No socket, no timers: server-connection.ts does the I/O.
//
// Ours, not node:http2's: a bare gRPC responder on node:http2 costs 60-69 us of server CPU per
// call (GrpcHttp2Server, goload 10 conns / 100 clients, loaded 2-core machine), a frame-level
// one 7-11 us (2026-12-06): node:http2 builds a stream object, an EventEmitter, header objects
// and a round of nghttp2 callbacks per call, most of which gRPC does not need. No maintained
// JS HTTP/2 server exists besides node:http2.
//
// Subset and choices: no server push; no priorities (ignored, as RFC 9113 allows); header blocks
// are decoded with hpack.js (the client's dynamic table) and ours are encoded as literals that
// never enter the client's table (hpack-literals.ts), so no encoder state; received DATA is
// acknowledged (WINDOW_UPDATE) as it arrives: a gRPC server reads every message it is sent and
// the request size limits are the handlers' (GrpcHttp2Server's maxReceiveBytes).

import hpack from "hpack.js";
import { HTTP2_PREFACE } from "../http2-frames.js";

export const FRAME = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

export const H2_ERROR = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

const SETTINGS_HEADER_TABLE_SIZE = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const SETTINGS_MAX_FRAME_SIZE = 0x5;

const DEFAULT_WINDOW = 65_535;
/** Queued response bytes above which a stream's `write` asks its writer to wait (node:http2's streams: 16 KiB). */
const STREAM_HIGH_WATER_BYTES = 256 * 1024;
const DEFAULT_MAX_FRAME = 16_384;
const MAX_WINDOW = 2 ** 31 - 1;
/** The highest stream ID (31 bits). */
const MAX_STREAM_ID = 0x7fffffff;
/** Our SETTINGS_MAX_FRAME_SIZE: the default; a larger frame from the client is an error. */
const OUR_MAX_FRAME = DEFAULT_MAX_FRAME;
/** A header block (HEADERS + CONTINUATION) larger than this ends the connection. */
const MAX_HEADER_BLOCK_BYTES = 1024 * 1024;

export type IncomingHeaders = Record<string, string | string[]>;

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
  /** A new request: `stream.events` must be set before this returns. */
  stream(stream: H2Stream, headers: IncomingHeaders): void;
  /** A PING from the client (keepalive enforcement). */
  ping?(): void;
}

export interface ConnectionOptions {
  /** Our receive window per stream and for the connection. */
  windowBytes: number;
  maxConcurrentStreams: number;
}

/** One request/response exchange. */
export class H2Stream {
  events: StreamEvents | undefined;
  sendWindow: number;
  /** Response bytes not yet framed (flow control or output back-pressure). */
  private queue: Buffer[] = [];
  queuedBytes = 0;
  private trailers: Buffer | undefined;
  private headersSent = false;
  /** We sent END_STREAM (or reset). */
  localClosed = false;
  /** The client sent END_STREAM (or reset). */
  remoteClosed = false;
  closed = false;
  needDrain = false;
  /** Bytes received and not yet acknowledged with a stream WINDOW_UPDATE. */
  unacknowledged = 0;
  /** The reader asked the client to wait: no stream WINDOW_UPDATE until `resumeReading`. */
  readingPaused = false;

  constructor(
    readonly id: number,
    private readonly connection: H2ServerConnection,
    initialSendWindow: number,
  ) {
    this.sendWindow = initialSendWindow;
  }

  /** Sends the response HEADERS (a pre-encoded block); `endStream`: a trailers-only answer. */
  respond(block: Buffer, endStream = false): void {
    if (this.closed || this.headersSent) return;
    this.headersSent = true;
    this.connection.sendHeaders(this.id, block, endStream);
    if (endStream) this.endLocal();
  }

  /**
   * Queues response bytes; false: more than STREAM_HIGH_WATER_BYTES waits (flow control or a
   * full socket), wait for `drain`.
   */
  write(chunk: Buffer): boolean {
    if (this.closed || this.localClosed) return false;
    if (chunk.length === 0) return true;
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    this.connection.schedule(this);
    if (this.queuedBytes <= STREAM_HIGH_WATER_BYTES) return true;
    this.needDrain = true;
    return false;
  }

  /** Ends the response with trailers (sent after every queued byte). */
  end(trailersBlock: Buffer): void {
    if (this.closed || this.localClosed || this.trailers !== undefined) return;
    this.trailers = trailersBlock;
    this.connection.schedule(this);
  }

  /** RST_STREAM: the stream ends at once (a cancelled or failed call). */
  reset(code: number): void {
    if (this.closed) return;
    this.connection.sendReset(this.id, code);
    this.connection.closeStream(this);
  }

  /**
   * Back-pressure on the request body (a peer's snapshot written to disk slower than it
   * arrives): the stream's window is no longer replenished, so the client stops once it has
   * sent one window's worth. Other streams and the connection's window are not affected.
   */
  pauseReading(): void {
    this.readingPaused = true;
  }

  resumeReading(): void {
    if (!this.readingPaused) return;
    this.readingPaused = false;
    this.connection.acknowledgeStream(this);
  }

  /** @internal Frames what the windows allow; the connection's own window is `budget`. Returns bytes sent. */
  pump(budget: number, maxFrame: number, out: (b: Buffer) => void): number {
    let sent = 0;
    while (this.queue.length > 0) {
      const room = Math.min(budget - sent, this.sendWindow);
      if (room <= 0) break;
      const head = this.queue[0]!;
      const size = Math.min(head.length, room, maxFrame);
      const payload = size === head.length ? head : head.subarray(0, size);
      if (size === head.length) this.queue.shift();
      else this.queue[0] = head.subarray(size);
      out(frameHeader(size, FRAME.DATA, 0, this.id));
      out(payload);
      this.queuedBytes -= size;
      this.sendWindow -= size;
      sent += size;
    }
    if (this.queue.length === 0 && this.trailers !== undefined && !this.localClosed) {
      this.connection.sendHeaders(this.id, this.trailers, true);
      this.trailers = undefined;
      this.endLocal();
    }
    return sent;
  }

  /** @internal */
  drained(): void {
    if (this.needDrain && this.queuedBytes <= STREAM_HIGH_WATER_BYTES / 2 && !this.closed) {
      this.needDrain = false;
      this.events?.drain();
    }
  }

  get waiting(): boolean {
    return this.queue.length > 0 || (this.trailers !== undefined && !this.localClosed);
  }

  private endLocal(): void {
    this.localClosed = true;
    if (this.remoteClosed) this.connection.closeStream(this);
    // The client may still be sending a request we no longer read: tell it to stop (grpc-go does).
    else this.connection.sendReset(this.id, H2_ERROR.NO_ERROR, true);
  }
}

/** The I/O side of a connection (server-connection.ts). */
export interface ConnectionIo {
  /** Bytes to send, in order; the I/O layer writes what a turn produced at once. */
  output(bytes: Buffer): void;
  /** Streams have bytes to send: call `flush` soon (once per turn). */
  wake(): void;
  /** A connection error: GOAWAY is out; close the socket. */
  fail(code: number, reason: string): void;
}

export class H2ServerConnection {
  private buffer: Buffer = Buffer.alloc(0);
  private prefaceSeen = false;
  private readonly decoder = hpack.decompressor.create({ table: { size: 4096 } });
  readonly streams = new Map<number, H2Stream>();
  /** Highest client stream ID seen (GOAWAY's last stream). */
  lastStreamId = 0;
  private sendWindow = DEFAULT_WINDOW;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = DEFAULT_MAX_FRAME;
  private connUnacknowledged = 0;
  /** A header block being continued: its stream, flags and fragments. */
  private continuing:
    | { streamId: number; endStream: boolean; fragments: Buffer[]; bytes: number }
    | undefined;
  /** Streams with bytes or trailers to send. */
  private readonly ready = new Set<H2Stream>();
  /** Output is held (the socket's buffer is full): DATA waits, control frames go. */
  outputHeld = false;
  goingAway = false;
  /** The connection failed or was closed: nothing more is read or sent. */
  dead = false;
  /** HEADERS and DATA frames sent (keepalive: a ping after a response is no strike). */
  framesSent = 0;
  private readonly pingWaiters: (() => void)[] = [];

  private readonly output: (bytes: Buffer) => void;

  constructor(
    private readonly io: ConnectionIo,
    private readonly handler: ConnectionHandler,
    private readonly options: ConnectionOptions,
  ) {
    this.output = io.output;
    const settings = Buffer.alloc(12);
    settings.writeUInt16BE(SETTINGS_MAX_CONCURRENT_STREAMS, 0);
    settings.writeUInt32BE(Math.min(options.maxConcurrentStreams, 2 ** 32 - 1), 2);
    settings.writeUInt16BE(SETTINGS_INITIAL_WINDOW_SIZE, 6);
    settings.writeUInt32BE(Math.min(options.windowBytes, MAX_WINDOW), 8);
    this.output(frame(FRAME.SETTINGS, 0, 0, settings));
    if (options.windowBytes > DEFAULT_WINDOW) this.sendWindowUpdate(0, options.windowBytes - DEFAULT_WINDOW);
  }

  /** Bytes from the socket. */
  receive(chunk: Buffer): void {
    if (this.dead) return;
    const buf = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    let offset = 0;
    if (!this.prefaceSeen) {
      if (buf.length < HTTP2_PREFACE.length) {
        this.buffer = buf;
        return;
      }
      if (!buf.subarray(0, HTTP2_PREFACE.length).equals(HTTP2_PREFACE)) {
        this.connectionError(H2_ERROR.PROTOCOL_ERROR, "not an HTTP/2 connection preface");
        return;
      }
      this.prefaceSeen = true;
      offset = HTTP2_PREFACE.length;
    }
    while (!this.dead && buf.length - offset >= 9) {
      const length = buf.readUIntBE(offset, 3);
      if (length > OUR_MAX_FRAME) {
        this.connectionError(H2_ERROR.FRAME_SIZE_ERROR, `frame of ${length} bytes`);
        return;
      }
      if (buf.length - offset < 9 + length) break;
      const type = buf[offset + 3]!;
      const flags = buf[offset + 4]!;
      const streamId = buf.readUInt32BE(offset + 5) & 0x7fffffff;
      const payload = buf.subarray(offset + 9, offset + 9 + length);
      offset += 9 + length;
      this.frame(type, flags, streamId, payload);
    }
    if (this.dead) return;
    // The rest of a frame is kept; a copy, so the socket's chunk is not held for a few bytes.
    this.buffer = offset === buf.length ? EMPTY : Buffer.from(buf.subarray(offset));
    this.acknowledgeReceived();
  }

  private frame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.continuing !== undefined && type !== FRAME.CONTINUATION) {
      this.connectionError(H2_ERROR.PROTOCOL_ERROR, "header block interrupted");
      return;
    }
    switch (type) {
      case FRAME.DATA:
        this.onData(flags, streamId, payload);
        return;
      case FRAME.HEADERS:
        this.onHeaders(flags, streamId, payload);
        return;
      case FRAME.CONTINUATION:
        this.onContinuation(flags, streamId, payload);
        return;
      case FRAME.RST_STREAM: {
        if (streamId === 0 || payload.length !== 4) {
          this.connectionError(H2_ERROR.PROTOCOL_ERROR, "bad RST_STREAM");
          return;
        }
        const stream = this.streams.get(streamId);
        if (stream !== undefined) this.closeStream(stream);
        return;
      }
      case FRAME.SETTINGS:
        this.onSettings(flags, streamId, payload);
        return;
      case FRAME.PING:
        if (streamId !== 0 || payload.length !== 8) {
          this.connectionError(H2_ERROR.PROTOCOL_ERROR, "bad PING");
          return;
        }
        if (flags & FLAG_ACK) {
          this.pingWaiters.shift()?.();
          return;
        }
        this.output(frame(FRAME.PING, FLAG_ACK, 0, Buffer.from(payload)));
        this.handler.ping?.();
        return;
      case FRAME.GOAWAY:
        // The client opens no more streams; those open finish. It closes the socket itself.
        this.goingAway = true;
        return;
      case FRAME.WINDOW_UPDATE:
        this.onWindowUpdate(streamId, payload);
        return;
      case FRAME.PUSH_PROMISE:
        this.connectionError(H2_ERROR.PROTOCOL_ERROR, "PUSH_PROMISE from a client");
        return;
      default:
        return; // PRIORITY and unknown frame types are ignored (RFC 9113 5.5)
    }
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) {
      this.connectionError(H2_ERROR.PROTOCOL_ERROR, "SETTINGS on a stream");
      return;
    }
    if (flags & FLAG_ACK) return;
    if (payload.length % 6 !== 0) {
      this.connectionError(H2_ERROR.FRAME_SIZE_ERROR, "SETTINGS length");
      return;
    }
    for (let i = 0; i < payload.length; i += 6) {
      const id = payload.readUInt16BE(i);
      const value = payload.readUInt32BE(i + 2);
      if (id === SETTINGS_INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) {
          this.connectionError(H2_ERROR.FLOW_CONTROL_ERROR, "window too large");
          return;
        }
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const s of this.streams.values()) {
          s.sendWindow += delta;
          if (s.waiting) this.schedule(s);
        }
      } else if (id === SETTINGS_MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME || value > 16_777_215) {
          this.connectionError(H2_ERROR.PROTOCOL_ERROR, "bad SETTINGS_MAX_FRAME_SIZE");
          return;
        }
        this.peerMaxFrame = value;
      } else if (id === SETTINGS_HEADER_TABLE_SIZE) {
        // Our blocks never use the client's dynamic table: nothing to resize.
      }
    }
    this.output(frame(FRAME.SETTINGS, FLAG_ACK, 0, EMPTY));
  }

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) {
      this.connectionError(H2_ERROR.FRAME_SIZE_ERROR, "WINDOW_UPDATE length");
      return;
    }
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (streamId === 0) {
      if (increment === 0) {
        this.connectionError(H2_ERROR.PROTOCOL_ERROR, "zero WINDOW_UPDATE");
        return;
      }
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) {
        this.connectionError(H2_ERROR.FLOW_CONTROL_ERROR, "connection window overflow");
        return;
      }
      for (const s of this.streams.values()) if (s.waiting) this.schedule(s);
      return;
    }
    const stream = this.streams.get(streamId);
    if (stream === undefined) return; // a stream that ended meanwhile
    if (increment === 0) {
      stream.reset(H2_ERROR.PROTOCOL_ERROR);
      return;
    }
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) {
      stream.reset(H2_ERROR.FLOW_CONTROL_ERROR);
      return;
    }
    if (stream.waiting) this.schedule(stream);
  }

  private onHeaders(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0 || streamId % 2 === 0) {
      this.connectionError(H2_ERROR.PROTOCOL_ERROR, "HEADERS on a server or zero stream ID");
      return;
    }
    let start = 0;
    let end = payload.length;
    if (flags & FLAG_PADDED) {
      start = 1;
      end -= payload[0] ?? 0;
    }
    if (flags & FLAG_PRIORITY) start += 5;
    if (end < start) {
      this.connectionError(H2_ERROR.PROTOCOL_ERROR, "HEADERS padding");
      return;
    }
    const fragment = payload.subarray(start, end);
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    if (flags & FLAG_END_HEADERS) {
      this.headerBlock(streamId, endStream, fragment);
      return;
    }
    this.continuing = { streamId, endStream, fragments: [Buffer.from(fragment)], bytes: fragment.length };
  }

  private onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const c = this.continuing;
    if (c === undefined || c.streamId !== streamId) {
      this.connectionError(H2_ERROR.PROTOCOL_ERROR, "unexpected CONTINUATION");
      return;
    }
    c.fragments.push(Buffer.from(payload));
    c.bytes += payload.length;
    if (c.bytes > MAX_HEADER_BLOCK_BYTES) {
      this.connectionError(H2_ERROR.ENHANCE_YOUR_CALM, "header block too large");
      return;
    }
    if (flags & FLAG_END_HEADERS) {
      this.continuing = undefined;
      this.headerBlock(streamId, c.endStream, Buffer.concat(c.fragments, c.bytes));
    }
  }

  private headerBlock(streamId: number, endStream: boolean, block: Buffer): void {
    let headers: IncomingHeaders;
    try {
      headers = this.decode(block);
    } catch (err) {
      this.connectionError(H2_ERROR.COMPRESSION_ERROR, `header block: ${String(err)}`);
      return;
    }
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
    this.handler.stream(stream, headers);
    if (endStream && !stream.closed) this.remoteEnd(stream);
  }

  private decode(block: Buffer): IncomingHeaders {
    const d = this.decoder;
    d.write(block);
    d.execute();
    // No prototype: a header named like an Object property stays a header.
    const headers = Object.create(null) as IncomingHeaders;
    for (let h = d.read(); h !== null; h = d.read()) {
      const name: string = h.name;
      const previous = headers[name];
      if (previous === undefined) headers[name] = h.value;
      else if (Array.isArray(previous)) previous.push(h.value);
      else headers[name] = [previous, h.value];
    }
    return headers;
  }

  private onData(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) {
      this.connectionError(H2_ERROR.PROTOCOL_ERROR, "DATA on stream 0");
      return;
    }
    // Padding counts against flow control too: the whole frame is acknowledged.
    this.connUnacknowledged += payload.length;
    // We acknowledge at half a window, so a client within its windows never gets past one.
    if (this.connUnacknowledged > this.options.windowBytes) {
      this.connectionError(H2_ERROR.FLOW_CONTROL_ERROR, "DATA beyond the connection window");
      return;
    }
    let data = payload;
    if (flags & FLAG_PADDED) {
      const padding = payload[0] ?? 0;
      if (padding >= payload.length) {
        this.connectionError(H2_ERROR.PROTOCOL_ERROR, "DATA padding");
        return;
      }
      data = payload.subarray(1, payload.length - padding);
    }
    const stream = this.streams.get(streamId);
    if (stream === undefined || stream.remoteClosed) {
      // A stream we reset or ended: its DATA still in flight is dropped (its window acknowledged).
      if (streamId > this.lastStreamId) {
        this.connectionError(H2_ERROR.PROTOCOL_ERROR, "DATA on an idle stream");
        return;
      }
      return;
    }
    stream.unacknowledged += payload.length;
    if (stream.unacknowledged > this.options.windowBytes) {
      stream.reset(H2_ERROR.FLOW_CONTROL_ERROR);
      return;
    }
    if (data.length > 0) stream.events?.data(data);
    if (flags & FLAG_END_STREAM && !stream.closed) this.remoteEnd(stream);
    else this.acknowledgeStream(stream);
  }

  /** @internal A stream's window, acknowledged once half of it was used (unless its reader paused). */
  acknowledgeStream(stream: H2Stream): void {
    if (stream.closed || stream.readingPaused || stream.remoteClosed) return;
    if (stream.unacknowledged >= this.options.windowBytes / 2) {
      this.sendWindowUpdate(stream.id, stream.unacknowledged);
      stream.unacknowledged = 0;
    }
  }

  private remoteEnd(stream: H2Stream): void {
    stream.remoteClosed = true;
    stream.events?.end();
    if (stream.localClosed) this.closeStream(stream);
  }

  /** The connection's window, acknowledged once half of it was used (one frame per many reads). */
  private acknowledgeReceived(): void {
    if (this.connUnacknowledged >= this.options.windowBytes / 2) {
      this.sendWindowUpdate(0, this.connUnacknowledged);
      this.connUnacknowledged = 0;
    }
  }

  /** @internal A stream has bytes or trailers to send. */
  schedule(stream: H2Stream): void {
    this.ready.add(stream);
    this.io.wake();
  }

  /**
   * Frames what flow control and the socket allow. The I/O layer calls it once per turn (after
   * handlers ran) and when the socket drains.
   */
  flush(): void {
    if (this.dead || this.ready.size === 0) return;
    for (const stream of this.ready) {
      if (stream.closed) {
        this.ready.delete(stream);
        continue;
      }
      if (this.outputHeld) break;
      const sent = stream.pump(this.sendWindow, this.peerMaxFrame, this.output);
      this.sendWindow -= sent;
      if (sent > 0) this.framesSent++;
      if (!stream.waiting) {
        this.ready.delete(stream);
        stream.drained();
      } else if (this.sendWindow <= 0) break;
    }
  }

  /** @internal */
  sendHeaders(streamId: number, block: Buffer, endStream: boolean): void {
    this.framesSent++;
    const endFlag = endStream ? FLAG_END_STREAM : 0;
    if (block.length <= this.peerMaxFrame) {
      this.output(frameHeader(block.length, FRAME.HEADERS, endFlag | FLAG_END_HEADERS, streamId));
      this.output(block);
      return;
    }
    for (let at = 0; at < block.length; at += this.peerMaxFrame) {
      const piece = block.subarray(at, at + this.peerMaxFrame);
      const last = at + this.peerMaxFrame >= block.length;
      const type = at === 0 ? FRAME.HEADERS : FRAME.CONTINUATION;
      const flags = (at === 0 ? endFlag : 0) | (last ? FLAG_END_HEADERS : 0);
      this.output(frameHeader(piece.length, type, flags, streamId));
      this.output(piece);
    }
  }

  /** @internal `keepStream`: the stream stays (its response went out; the client may still be sending). */
  sendReset(streamId: number, code: number, keepStream = false): void {
    const payload = Buffer.allocUnsafe(4);
    payload.writeUInt32BE(code, 0);
    this.output(frame(FRAME.RST_STREAM, 0, streamId, payload));
    if (keepStream) {
      const stream = this.streams.get(streamId);
      if (stream !== undefined) {
        stream.remoteClosed = true;
        this.closeStream(stream);
      }
    }
  }

  /** @internal */
  closeStream(stream: H2Stream): void {
    if (stream.closed) return;
    stream.closed = true;
    stream.localClosed = true;
    stream.remoteClosed = true;
    this.streams.delete(stream.id);
    this.ready.delete(stream);
    stream.events?.close();
  }

  private sendWindowUpdate(streamId: number, increment: number): void {
    const payload = Buffer.allocUnsafe(4);
    payload.writeUInt32BE(increment, 0);
    this.output(frame(FRAME.WINDOW_UPDATE, 0, streamId, payload));
  }

  /** Sends a PING; `answered` runs when its ACK comes. */
  ping(answered: () => void): void {
    if (this.dead) return;
    this.pingWaiters.push(answered);
    this.output(frame(FRAME.PING, 0, 0, Buffer.alloc(8)));
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

  /** GOAWAY: no new streams; those open finish. `debug`: GOAWAY's debug data. */
  goAway(code: number = H2_ERROR.NO_ERROR, debug: Buffer = EMPTY): void {
    if (this.dead) return;
    this.goingAway = true;
    const payload = Buffer.allocUnsafe(8 + debug.length);
    payload.writeUInt32BE(this.lastStreamId, 0);
    payload.writeUInt32BE(code, 4);
    debug.copy(payload, 8);
    this.output(frame(FRAME.GOAWAY, 0, 0, payload));
  }

  /** The socket closed: every stream ends. */
  destroy(): void {
    if (this.dead) return;
    this.dead = true;
    for (const stream of [...this.streams.values()]) this.closeStream(stream);
    this.pingWaiters.length = 0;
  }

  private connectionError(code: number, reason: string): void {
    if (this.dead) return;
    this.goAway(code, Buffer.from(reason));
    this.destroy();
    this.io.fail(code, reason);
  }
}

const EMPTY = Buffer.alloc(0);

export function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const h = Buffer.allocUnsafe(9);
  h.writeUIntBE(length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return h;
}

export function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(9 + payload.length);
  out.writeUIntBE(payload.length, 0, 3);
  out[3] = type;
  out[4] = flags;
  out.writeUInt32BE(streamId, 5);
  payload.copy(out, 9);
  return out;
}
