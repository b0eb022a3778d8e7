// The client side of one HTTP/2 connection, as much as a gRPC client that streams requests needs
// (the peer transport's Raft stream and snapshot calls), as a pure state machine: bytes in
// (`receive`), frames out (the `output` callback). No socket, no timers: the caller does the I/O.
//
// Why not node:http2's client session: the same reasons as connection.ts, on the sending side
// (a stream object, an EventEmitter and a round of nghttp2 callbacks per write).
//
// Subset and choices: request headers are sent as literals that never enter the server's HPACK
// table (encodeLiteralHeaderBlock), so no encoder state; response DATA is acknowledged as it
// arrives (the caller reads every answer); no PUSH_PROMISE (we send SETTINGS_ENABLE_PUSH 0),
// no priorities, no request trailers (a request ends with END_STREAM on DATA).

import hpack from "hpack.js";
import { HTTP2_PREFACE } from "../http2-frames.js";
import { FRAME, frame, frameHeader, H2_ERROR, type IncomingHeaders } from "./connection.js";

const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

const SETTINGS_ENABLE_PUSH = 0x2;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const SETTINGS_MAX_FRAME_SIZE = 0x5;

const DEFAULT_WINDOW = 65_535;
const DEFAULT_MAX_FRAME = 16_384;
const MAX_WINDOW = 2 ** 31 - 1;
const MAX_HEADER_BLOCK_BYTES = 1024 * 1024;
/** Queued request bytes above which `write` asks its writer to wait. */
const STREAM_HIGH_WATER_BYTES = 256 * 1024;
const EMPTY = Buffer.alloc(0);

/** What a request stream tells its caller. */
export interface ClientStreamEvents {
  /** The response headers, then the trailers; `endStream` on the last (a trailers-only answer's only). */
  headers(headers: IncomingHeaders, endStream: boolean): void;
  /** The stream is gone: both sides ended, reset (`resetCode`), or the connection closed. */
  close(resetCode: number | undefined): void;
  /** Queued request bytes went out (after `write` returned false). */
  drain(): void;
}

export interface ClientConnectionIo {
  /** Bytes to send, in order. */
  output(bytes: Buffer): void;
  /** Streams have bytes to send: call `flush` soon (once per turn). */
  wake(): void;
  /** A connection error or a GOAWAY with an error: close the socket. */
  fail(code: number, reason: string): void;
}

/** One request: its body out (flow-controlled), the answer's headers and trailers in. */
export class H2ClientStream {
  events: ClientStreamEvents;
  sendWindow: number;
  private queue: Buffer[] = [];
  queuedBytes = 0;
  private endQueued = false;
  localClosed = false;
  remoteClosed = false;
  closed = false;
  private needDrain = false;

  constructor(
    readonly id: number,
    private readonly connection: H2ClientConnection,
    initialSendWindow: number,
    events: ClientStreamEvents,
  ) {
    this.sendWindow = initialSendWindow;
    this.events = events;
  }

  /** Queues request bytes; false: more than STREAM_HIGH_WATER_BYTES waits, wait for `drain`. */
  write(chunk: Buffer): boolean {
    if (this.closed || this.localClosed || this.endQueued) return false;
    if (chunk.length > 0) {
      this.queue.push(chunk);
      this.queuedBytes += chunk.length;
      this.connection.schedule(this);
    }
    if (this.queuedBytes <= STREAM_HIGH_WATER_BYTES) return true;
    this.needDrain = true;
    return false;
  }

  /** Half-closes after every queued byte (END_STREAM). */
  end(): void {
    if (this.closed || this.localClosed || this.endQueued) return;
    this.endQueued = true;
    this.connection.schedule(this);
  }

  /** RST_STREAM: the stream ends at once. */
  reset(code: number = H2_ERROR.CANCEL): void {
    if (this.closed) return;
    this.connection.sendReset(this.id, code);
    this.connection.closeStream(this, code);
  }

  get waiting(): boolean {
    return this.queue.length > 0 || (this.endQueued && !this.localClosed);
  }

  /** @internal Frames what the windows allow; the connection's window is `budget`. Returns bytes sent. */
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
      const last = this.queue.length === 0 && this.endQueued;
      out(frameHeader(size, FRAME.DATA, last ? FLAG_END_STREAM : 0, this.id));
      out(payload);
      this.queuedBytes -= size;
      this.sendWindow -= size;
      sent += size;
      if (last) this.endLocal();
    }
    if (this.queue.length === 0 && this.endQueued && !this.localClosed) {
      out(frameHeader(0, FRAME.DATA, FLAG_END_STREAM, this.id));
      this.endLocal();
    }
    if (this.needDrain && this.queuedBytes <= STREAM_HIGH_WATER_BYTES / 2 && !this.closed) {
      this.needDrain = false;
      this.events.drain();
    }
    return sent;
  }

  private endLocal(): void {
    this.localClosed = true;
    if (this.remoteClosed) this.connection.closeStream(this, undefined);
  }
}

export interface ClientConnectionOptions {
  /** Our receive window per stream and for the connection. */
  windowBytes: number;
}

export class H2ClientConnection {
  private buffer: Buffer = EMPTY;
  private readonly decoder = hpack.decompressor.create({ table: { size: 4096 } });
  readonly streams = new Map<number, H2ClientStream>();
  private nextStreamId = 1;
  private sendWindow = DEFAULT_WINDOW;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = DEFAULT_MAX_FRAME;
  private connUnacknowledged = 0;
  private continuing:
    | { streamId: number; endStream: boolean; fragments: Buffer[]; bytes: number }
    | undefined;
  private readonly ready = new Set<H2ClientStream>();
  private readonly pingWaiters: (() => void)[] = [];
  /** The server's SETTINGS arrived: it speaks HTTP/2. */
  settled = false;
  /** A GOAWAY arrived (or we sent one): no new streams. */
  goingAway = false;
  dead = false;
  /** Output is held (the socket's buffer is full): DATA waits, control frames go. */
  outputHeld = false;
  private readonly output: (bytes: Buffer) => void;

  constructor(
    private readonly io: ClientConnectionIo,
    private readonly options: ClientConnectionOptions,
  ) {
    this.output = io.output;
    const settings = Buffer.alloc(12);
    settings.writeUInt16BE(SETTINGS_ENABLE_PUSH, 0);
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(SETTINGS_INITIAL_WINDOW_SIZE, 6);
    settings.writeUInt32BE(Math.min(options.windowBytes, MAX_WINDOW), 8);
    this.output(HTTP2_PREFACE);
    this.output(frame(FRAME.SETTINGS, 0, 0, settings));
    if (options.windowBytes > DEFAULT_WINDOW) this.sendWindowUpdate(0, options.windowBytes - DEFAULT_WINDOW);
  }

  /** Opens a request stream with a pre-encoded header block; undefined once going away. */
  request(block: Buffer, events: ClientStreamEvents): H2ClientStream | undefined {
    if (this.dead || this.goingAway || this.nextStreamId > MAX_WINDOW) return undefined;
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const stream = new H2ClientStream(id, this, this.peerInitialWindow, events);
    this.streams.set(id, stream);
    for (let at = 0, first = true; first || at < block.length; at += this.peerMaxFrame, first = false) {
      const piece = block.subarray(at, at + this.peerMaxFrame);
      const last = at + this.peerMaxFrame >= block.length;
      this.output(
        frameHeader(
          piece.length,
          first ? FRAME.HEADERS : FRAME.CONTINUATION,
          last ? FLAG_END_HEADERS : 0,
          id,
        ),
      );
      this.output(piece);
    }
    return stream;
  }

  /** Bytes from the socket. */
  receive(chunk: Buffer): void {
    if (this.dead) return;
    const buf = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    let offset = 0;
    while (!this.dead && buf.length - offset >= 9) {
      const length = buf.readUIntBE(offset, 3);
      if (length > DEFAULT_MAX_FRAME) {
        this.connectionError(H2_ERROR.FRAME_SIZE_ERROR, `frame of ${length} bytes`);
        return;
      }
      if (buf.length - offset < 9 + length) break;
      const type = buf[offset + 3]!;
      const flags = buf[offset + 4]!;
      const streamId = buf.readUInt32BE(offset + 5) & 0x7fffffff;
      const payload = buf.subarray(offset + 9, offset + 9 + length);
      offset += 9 + length;
      if (!this.settled && type !== FRAME.SETTINGS) {
        this.connectionError(H2_ERROR.PROTOCOL_ERROR, "the server's first frame is not SETTINGS");
        return;
      }
      this.frame(type, flags, streamId, payload);
    }
    if (this.dead) return;
    this.buffer = offset === buf.length ? EMPTY : Buffer.from(buf.subarray(offset));
    if (this.connUnacknowledged >= this.options.windowBytes / 2) {
      this.sendWindowUpdate(0, this.connUnacknowledged);
      this.connUnacknowledged = 0;
    }
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
        if (stream !== undefined) this.closeStream(stream, payload.readUInt32BE(0));
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
        if (flags & FLAG_ACK) this.pingWaiters.shift()?.();
        else this.output(frame(FRAME.PING, FLAG_ACK, 0, Buffer.from(payload)));
        return;
      case FRAME.GOAWAY:
        this.onGoAway(payload);
        return;
      case FRAME.WINDOW_UPDATE:
        this.onWindowUpdate(streamId, payload);
        return;
      case FRAME.PUSH_PROMISE:
        this.connectionError(H2_ERROR.PROTOCOL_ERROR, "PUSH_PROMISE with push disabled");
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
      }
    }
    this.settled = true;
    this.output(frame(FRAME.SETTINGS, FLAG_ACK, 0, EMPTY));
  }

  private onGoAway(payload: Buffer): void {
    if (payload.length < 8) {
      this.connectionError(H2_ERROR.FRAME_SIZE_ERROR, "GOAWAY length");
      return;
    }
    this.goingAway = true;
    // Streams the server never saw were not processed: they close (their callers retry).
    const lastStreamId = payload.readUInt32BE(0) & 0x7fffffff;
    for (const s of [...this.streams.values()]) {
      if (s.id > lastStreamId) this.closeStream(s, H2_ERROR.REFUSED_STREAM);
    }
    const code = payload.readUInt32BE(4);
    if (code !== H2_ERROR.NO_ERROR) {
      this.destroy();
      this.io.fail(code, payload.subarray(8).toString("latin1"));
    }
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
    if (stream === undefined) return;
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
    if (streamId === 0) {
      this.connectionError(H2_ERROR.PROTOCOL_ERROR, "HEADERS on stream 0");
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
    if (flags & FLAG_END_HEADERS) this.headerBlock(streamId, endStream, fragment);
    else
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
    // Decoded even for a stream we closed: HPACK's table must see every block.
    let headers: IncomingHeaders;
    try {
      headers = this.decode(block);
    } catch (err) {
      this.connectionError(H2_ERROR.COMPRESSION_ERROR, `header block: ${String(err)}`);
      return;
    }
    const stream = this.streams.get(streamId);
    if (stream === undefined) return;
    stream.events.headers(headers, endStream);
    if (endStream && !stream.closed) this.remoteEnd(stream);
  }

  private decode(block: Buffer): IncomingHeaders {
    const d = this.decoder;
    d.write(block);
    d.execute();
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
    this.connUnacknowledged += payload.length;
    if (this.connUnacknowledged > this.options.windowBytes) {
      this.connectionError(H2_ERROR.FLOW_CONTROL_ERROR, "DATA beyond the connection window");
      return;
    }
    const stream = this.streams.get(streamId);
    if (stream === undefined || stream.remoteClosed) return;
    // The answer's bytes are not needed (StreamClosed, SnapshotAccepted: empty messages); a
    // large one is acknowledged as it arrives so the server is never held by our window.
    if (payload.length > 0) this.sendWindowUpdate(streamId, payload.length);
    if (flags & FLAG_END_STREAM && !stream.closed) this.remoteEnd(stream);
  }

  private remoteEnd(stream: H2ClientStream): void {
    stream.remoteClosed = true;
    if (stream.localClosed) this.closeStream(stream, undefined);
    // The server answered before our END_STREAM (a refusal): nothing more we send is read.
    else stream.reset(H2_ERROR.NO_ERROR);
  }

  /** @internal */
  schedule(stream: H2ClientStream): void {
    this.ready.add(stream);
    this.io.wake();
  }

  /** Frames what flow control and the socket allow: once per turn, and when the socket drains. */
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
      if (!stream.waiting) this.ready.delete(stream);
      else if (this.sendWindow <= 0) break;
    }
  }

  /** @internal */
  sendReset(streamId: number, code: number): void {
    const payload = Buffer.allocUnsafe(4);
    payload.writeUInt32BE(code, 0);
    this.output(frame(FRAME.RST_STREAM, 0, streamId, payload));
  }

  /** @internal */
  closeStream(stream: H2ClientStream, resetCode: number | undefined): void {
    if (stream.closed) return;
    stream.closed = true;
    stream.localClosed = true;
    stream.remoteClosed = true;
    this.streams.delete(stream.id);
    this.ready.delete(stream);
    stream.events.close(resetCode);
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

  /** The socket closed: every stream ends. */
  destroy(): void {
    if (this.dead) return;
    this.dead = true;
    for (const stream of [...this.streams.values()]) this.closeStream(stream, undefined);
    this.pingWaiters.length = 0;
  }

  private connectionError(code: number, reason: string): void {
    if (this.dead) return;
    const debug = Buffer.from(reason);
    const payload = Buffer.allocUnsafe(8 + debug.length);
    payload.writeUInt32BE(0, 0);
    payload.writeUInt32BE(code, 4);
    debug.copy(payload, 8);
    this.output(frame(FRAME.GOAWAY, 0, 0, payload));
    this.destroy();
    this.io.fail(code, reason);
  }
}
