// One HTTP/2 connection (RFC 9113), as much as gRPC uses, as a pure state machine shared by both
// roles: bytes in (`receive`), frames out (the `output` callback). No socket, no timers: the
// I/O is the caller's (server-connection.ts, the peer transport's peer-session.ts).
//
// What is the same on both sides lives here: frame parsing and dispatch, SETTINGS, PING,
// WINDOW_UPDATE, header blocks (CONTINUATION, HPACK decoding), flow control on what we receive,
// send-window scheduling of the streams' queued bytes, RST_STREAM, GOAWAY out and connection
// errors. A role on top (connection.ts: server, client-connection.ts: client) says what it
// does with a header block, a DATA frame, a GOAWAY and a stream's end, as nghttp2 keeps one
// session with its server and client parts.
//
// Choices for both roles: no server push; no priorities (ignored, as RFC 9113 allows); header
// blocks are decoded by our HPACK decoder (hpack-decoder.ts, the peer's dynamic table) and ours
// are encoded as literals that never enter the peer's table (http2-frames.ts), so no encoder
// state.

import { HTTP2_PREFACE } from "../http2-frames.js";
import { HpackDecoder, HpackError } from "./hpack-decoder.js";

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

export const FLAG_END_STREAM = 0x1;
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

export const SETTINGS_ENABLE_PUSH = 0x2;
export const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const SETTINGS_MAX_FRAME_SIZE = 0x5;

const DEFAULT_WINDOW = 65_535;
/** Queued bytes above which a stream's `write` asks its writer to wait (node:http2's streams: 16 KiB). */
export const STREAM_HIGH_WATER_BYTES = 256 * 1024;
const DEFAULT_MAX_FRAME = 16_384;
export const MAX_WINDOW = 2 ** 31 - 1;
/** Our SETTINGS_MAX_FRAME_SIZE: the default; a larger frame from the peer is an error. */
const OUR_MAX_FRAME = DEFAULT_MAX_FRAME;
/** A header block (HEADERS + CONTINUATION) larger than this ends the connection. */
const MAX_HEADER_BLOCK_BYTES = 1024 * 1024;

export type IncomingHeaders = Record<string, string | string[]>;

/**
 * A decoded header block as its fields, in order: `names[i]`, `values[i]` for i < count. The
 * arrays are the connection's HPACK decoder's and are reused by its next block: a role reads
 * them while its `headerBlock` runs and copies what it keeps (the strings may be kept: a field
 * from the peer's table is the table's string, shared by every block that names it).
 */
export interface HeaderFields {
  readonly names: readonly string[];
  readonly values: readonly string[];
  readonly count: number;
}

/** The fields as an object (a repeated name's values as an array, in order). */
export function headersObject(fields: HeaderFields): IncomingHeaders {
  // Nothing inherited (a header named like an Object property stays a header), and fast
  // properties: Object.create(null) makes a dictionary-mode object, whose every store, lookup
  // and for-in is a hash-table walk; an object whose prototype is an empty null-prototype
  // object gets hidden classes (the same for every block of one peer: its headers come in
  // one order).
  const headers = Object.create(HEADERS_PROTOTYPE) as IncomingHeaders;
  const { names, values, count } = fields;
  for (let i = 0; i < count; i++) {
    const name = names[i]!;
    const previous = headers[name];
    if (previous === undefined) headers[name] = values[i]!;
    else if (Array.isArray(previous)) previous.push(values[i]!);
    else headers[name] = [previous, values[i]!];
  }
  return headers;
}

/** The I/O side of a connection. */
export interface SessionIo {
  /** Bytes to send, in order; the I/O layer writes what a turn produced at once. */
  output(bytes: Buffer): void;
  /**
   * Bytes that may wait (a few ms at most) to leave with the next write: a PING's ACK. Without
   * it they go with `output`.
   */
  outputLater?(bytes: Buffer): void;
  /** Streams have bytes to send: call `flush` soon (once per turn). */
  wake(): void;
  /** A connection error (our GOAWAY is out), or the peer's GOAWAY with an error: close the socket. */
  fail(code: number, reason: string): void;
  /**
   * Runs `done` once every byte output so far has been written to the socket (handed to the
   * kernel). An I/O layer without it never runs such callbacks (see H2SessionStream.write).
   */
  written?(done: () => void): void;
}

/** What every stream's events have, whichever the role. */
export interface SessionStreamEvents {
  /** The stream is gone; `resetCode` when a RST_STREAM ended it. */
  close(resetCode: number | undefined): void;
  /** Queued bytes went out (after `write` returned false). */
  drain(): void;
}

/** One stream: bytes out (flow-controlled, then its end), its state on both sides. */
export abstract class H2SessionStream {
  abstract events: SessionStreamEvents | undefined;
  sendWindow: number;
  /** Bytes not yet framed (flow control or output back-pressure). */
  private queue: Buffer[] = [];
  queuedBytes = 0;
  /** Bytes ever queued, and ever framed: where a `write`'s `sent` waits. */
  private queuedTotal = 0;
  private framedTotal = 0;
  private sentWaiters: { at: number; sent: () => void }[] | undefined;
  /** `end` was called: our half closes after the queued bytes. */
  protected endQueued = false;
  /** We sent END_STREAM (or reset). */
  localClosed = false;
  /** The peer sent END_STREAM (or reset). */
  remoteClosed = false;
  closed = false;
  needDrain = false;
  /** Bytes received and not yet acknowledged with a stream WINDOW_UPDATE. */
  unacknowledged = 0;
  /** The reader asked the peer to wait: no stream WINDOW_UPDATE until `resumeReading`. */
  readingPaused = false;

  constructor(
    readonly id: number,
    protected readonly session: H2Session<H2SessionStream>,
    initialSendWindow: number,
  ) {
    this.sendWindow = initialSendWindow;
  }

  /**
   * Queues bytes; false: more than STREAM_HIGH_WATER_BYTES wait (flow control or a full
   * socket), wait for `drain`. `sent` runs once the chunk's last byte has been written to the
   * socket (the memory is no longer read), if it ever is and the I/O layer tells (SessionIo.written).
   */
  write(chunk: Buffer, sent?: () => void): boolean {
    if (this.closed || this.localClosed || this.endQueued) return false;
    if (chunk.length === 0) return true;
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    this.queuedTotal += chunk.length;
    if (sent !== undefined) {
      this.sentWaiters ??= [];
      this.sentWaiters.push({ at: this.queuedTotal, sent });
    }
    this.session.schedule(this);
    if (this.queuedBytes <= STREAM_HIGH_WATER_BYTES) return true;
    this.needDrain = true;
    return false;
  }

  /**
   * Back-pressure on what the peer sends (a snapshot written to disk, or an answer relayed to a
   * slower client, more slowly than it arrives): the stream's window is no longer replenished,
   * so the peer stops once it has sent one window's worth. Other streams and the connection's
   * window are not affected.
   */
  pauseReading(): void {
    this.readingPaused = true;
  }

  resumeReading(): void {
    if (!this.readingPaused) return;
    this.readingPaused = false;
    this.session.acknowledgeStream(this);
  }

  /** RST_STREAM: the stream ends at once (a cancelled or failed call). */
  reset(code: number = H2_ERROR.CANCEL): void {
    if (this.closed) return;
    this.session.sendReset(this.id, code);
    this.session.closeStream(this, code);
  }

  get waiting(): boolean {
    return this.queue.length > 0 || (this.endQueued && !this.localClosed);
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
      const last = this.queue.length === 0 && this.endQueued && this.endsOnData;
      out(frameHeader(size, FRAME.DATA, last ? FLAG_END_STREAM : 0, this.id));
      out(payload);
      this.queuedBytes -= size;
      this.sendWindow -= size;
      sent += size;
      if (last) this.endLocal();
    }
    this.framedTotal += sent;
    const waiters = this.sentWaiters;
    // Framed now, so in the output the I/O layer writes next.
    while (waiters !== undefined && waiters.length > 0 && waiters[0]!.at <= this.framedTotal) {
      this.session.afterWritten(waiters.shift()!.sent);
    }
    if (this.queue.length === 0 && this.endQueued && !this.localClosed) {
      this.sendEnd(out);
      this.endLocal();
    }
    return sent;
  }

  /** @internal After a pump: the writer that was told to wait may write again. */
  drained(): void {
    if (this.needDrain && !this.closed && this.queuedBytes <= this.drainAtBytes) {
      this.needDrain = false;
      this.events?.drain();
    }
  }

  /** @internal The peer ended its half (END_STREAM), before the stream closes if ours ended too. */
  abstract remoteEnded(): void;

  /** Our end goes on the last DATA frame (END_STREAM) rather than after it (`sendEnd`). */
  protected abstract get endsOnData(): boolean;
  /** Queued bytes at or below which a writer that was told to wait is told to go on. */
  protected abstract get drainAtBytes(): number;
  /** Our half's end once every queued byte is out: trailers, or an empty DATA with END_STREAM. */
  protected abstract sendEnd(out: (b: Buffer) => void): void;

  protected endLocal(): void {
    this.localClosed = true;
    if (this.remoteClosed) this.session.closeStream(this, undefined);
    else this.localEndedFirst();
  }

  /** Our half ended while the peer's is open. */
  protected localEndedFirst(): void {}
}

export abstract class H2Session<S extends H2SessionStream> {
  private buffer: Buffer = EMPTY;
  /** The server's side waits for the client's connection preface before the first frame. */
  private awaitingPreface: boolean;
  private readonly decoder = new HpackDecoder();
  readonly streams = new Map<number, S>();
  /** Highest stream ID the peer opened (GOAWAY's last stream; 0 for a client). */
  lastStreamId = 0;
  private sendWindow = DEFAULT_WINDOW;
  protected peerInitialWindow = DEFAULT_WINDOW;
  protected peerMaxFrame = DEFAULT_MAX_FRAME;
  /** The streams the peer lets us open at once (its SETTINGS_MAX_CONCURRENT_STREAMS; unlimited until said). */
  peerMaxStreams = Number.POSITIVE_INFINITY;
  private connUnacknowledged = 0;
  /** A header block being continued: its stream, flags and fragments. */
  private continuing:
    | { streamId: number; endStream: boolean; fragments: Buffer[]; bytes: number }
    | undefined;
  /** Streams with bytes or their end to send. */
  private readonly ready = new Set<H2SessionStream>();
  private readonly pingWaiters: (() => void)[] = [];
  /** The peer's SETTINGS arrived: it speaks HTTP/2. */
  settled = false;
  /** Output is held (the socket's buffer is full): DATA waits, control frames go. */
  outputHeld = false;
  /** A GOAWAY went either way: no new streams. */
  goingAway = false;
  /** The connection failed or was closed: nothing more is read or sent. */
  dead = false;
  /** HEADERS and DATA frames sent (keepalive: a ping after a response is no strike). */
  framesSent = 0;

  protected readonly output: (bytes: Buffer) => void;

  /**
   * Sends our side's start: the connection preface (a client's), our SETTINGS (`setting`, then
   * SETTINGS_INITIAL_WINDOW_SIZE), and the connection window raised to `windowBytes`.
   */
  constructor(
    protected readonly io: SessionIo,
    /** Our receive window per stream and for the connection. */
    protected readonly windowBytes: number,
    role: "server" | "client",
    setting: [id: number, value: number],
  ) {
    this.output = io.output;
    this.awaitingPreface = role === "server";
    if (role === "client") this.output(HTTP2_PREFACE);
    const settings = Buffer.alloc(12);
    settings.writeUInt16BE(setting[0], 0);
    settings.writeUInt32BE(setting[1], 2);
    settings.writeUInt16BE(SETTINGS_INITIAL_WINDOW_SIZE, 6);
    settings.writeUInt32BE(Math.min(windowBytes, MAX_WINDOW), 8);
    this.output(frame(FRAME.SETTINGS, 0, 0, settings));
    if (windowBytes > DEFAULT_WINDOW) this.sendWindowUpdate(0, windowBytes - DEFAULT_WINDOW);
  }

  /** A complete header block for `streamId`, decoded: `fields` are valid only during the call. */
  protected abstract headerBlock(streamId: number, endStream: boolean, fields: HeaderFields): void;
  /** Why a HEADERS frame may not be on `streamId` (a stream ID the peer may not use), or undefined. */
  protected abstract badHeadersStream(streamId: number): string | undefined;
  /**
   * A DATA frame's payload (padding removed) for a stream that is open on the peer's side;
   * `frameBytes` counts against flow control. The connection's window is accounted already.
   */
  protected abstract streamData(stream: S, flags: number, data: Buffer, frameBytes: number): void;
  /** DATA for no open stream: true if it is an error (a stream never opened) rather than late. */
  protected abstract idleStream(streamId: number): boolean;
  /** The peer's GOAWAY (`goingAway` is set). */
  protected abstract peerGoingAway(lastStreamId: number, code: number, debug: Buffer): void;

  /** A PING from the peer (answered already). */
  protected pingReceived(): void {}

  /**
   * Bytes from the socket. A frame left incomplete at the end of `chunk` is kept (copied) for the
   * next call; with `leaveRest`, when those bytes are the end of `chunk` itself, they are not
   * kept: the return value says how many they are, and the caller's next chunk starts with them
   * (RecycledReads reads into reused buffers: no copy allocated per read). Returns 0 otherwise.
   */
  receive(chunk: Buffer, leaveRest = false): number {
    if (this.dead) return 0;
    let buf = chunk;
    // `buf` ends where `chunk` ends (its rest may be left to the caller).
    let endsChunk = true;
    if (this.buffer.length >= 9 && !this.awaitingPreface) {
      // A frame begun in an earlier read (its length checked then): only its rest is copied to
      // it, and the frames after it are read where they are. Joining the whole read to the
      // remainder copied every byte of a large answer once more (the gateway relays 280 MB).
      const need = 9 + this.buffer.readUIntBE(0, 3) - this.buffer.length;
      if (chunk.length < need) {
        this.buffer = Buffer.concat([this.buffer, chunk]);
        return 0;
      }
      const first = Buffer.concat([this.buffer, chunk.subarray(0, need)]);
      this.buffer = EMPTY;
      this.frame(first[3]!, first[4]!, first.readUInt32BE(5) & 0x7fffffff, first.subarray(9));
      if (this.dead) return 0;
      buf = chunk.subarray(need);
    } else if (this.buffer.length > 0) {
      buf = Buffer.concat([this.buffer, chunk]);
      endsChunk = false;
    }
    let offset = 0;
    if (this.awaitingPreface) {
      if (buf.length < HTTP2_PREFACE.length) {
        this.buffer = Buffer.from(buf);
        return 0;
      }
      if (!buf.subarray(0, HTTP2_PREFACE.length).equals(HTTP2_PREFACE)) {
        this.connectionError(H2_ERROR.PROTOCOL_ERROR, "not an HTTP/2 connection preface");
        return 0;
      }
      this.awaitingPreface = false;
      offset = HTTP2_PREFACE.length;
    }
    while (!this.dead && buf.length - offset >= 9) {
      const length = buf.readUIntBE(offset, 3);
      if (length > OUR_MAX_FRAME) {
        this.connectionError(H2_ERROR.FRAME_SIZE_ERROR, `frame of ${length} bytes`);
        return 0;
      }
      if (buf.length - offset < 9 + length) break;
      const type = buf[offset + 3]!;
      const flags = buf[offset + 4]!;
      const streamId = buf.readUInt32BE(offset + 5) & 0x7fffffff;
      const payload = buf.subarray(offset + 9, offset + 9 + length);
      offset += 9 + length;
      this.frame(type, flags, streamId, payload);
    }
    if (this.dead) return 0;
    const rest = buf.length - offset;
    const left = leaveRest && endsChunk ? rest : 0;
    // The rest of a frame is kept; a copy, so the socket's chunk is not held for a few bytes.
    this.buffer = rest === 0 || left > 0 ? EMPTY : Buffer.from(buf.subarray(offset));
    // The connection's window, acknowledged once half of it was used (one frame per many reads).
    if (this.connUnacknowledged >= this.windowBytes / 2) {
      this.sendWindowUpdate(0, this.connUnacknowledged);
      this.connUnacknowledged = 0;
    }
    return left;
  }

  protected frame(type: number, flags: number, streamId: number, payload: Buffer): void {
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
        if (flags & FLAG_ACK) {
          this.pingWaiters.shift()?.();
          return;
        }
        // The ACK may wait for our next write (SocketOutput.pushLater): grpc-go's clients send a
        // BDP PING after each response, and an ACK of its own is a socket write here and a
        // wake-up of the client between its request and our answer. RFC 9113 asks only that
        // an ACK be sent; the wait is bounded, so keepalive timeouts (seconds) still hold.
        (this.io.outputLater ?? this.output)(frame(FRAME.PING, FLAG_ACK, 0, Buffer.from(payload)));
        this.pingReceived();
        return;
      case FRAME.GOAWAY:
        this.onGoAway(payload);
        return;
      case FRAME.WINDOW_UPDATE:
        this.onWindowUpdate(streamId, payload);
        return;
      case FRAME.PUSH_PROMISE:
        // A client never pushes; a server may not unless we enable it, and we never do.
        this.connectionError(H2_ERROR.PROTOCOL_ERROR, "PUSH_PROMISE (push is not enabled)");
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
      } else if (id === SETTINGS_MAX_CONCURRENT_STREAMS) {
        this.peerMaxStreams = value;
      }
      // SETTINGS_HEADER_TABLE_SIZE: our blocks never use the peer's dynamic table.
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
    this.peerGoingAway(payload.readUInt32BE(0) & 0x7fffffff, payload.readUInt32BE(4), payload.subarray(8));
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
    const bad = streamId === 0 ? "HEADERS on stream 0" : this.badHeadersStream(streamId);
    if (bad !== undefined) {
      this.connectionError(H2_ERROR.PROTOCOL_ERROR, bad);
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
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    if (flags & FLAG_END_HEADERS) {
      this.decodeBlock(streamId, endStream, payload, start, end);
      return;
    }
    const fragment = Buffer.from(payload.subarray(start, end));
    this.continuing = { streamId, endStream, fragments: [fragment], bytes: fragment.length };
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
      const block = Buffer.concat(c.fragments, c.bytes);
      this.decodeBlock(streamId, c.endStream, block, 0, block.length);
    }
  }

  /** Every block is decoded, even one for a stream that is gone: HPACK's table must see it. */
  private decodeBlock(streamId: number, endStream: boolean, block: Buffer, start: number, end: number): void {
    const d = this.decoder;
    try {
      d.decode(block, start, end);
    } catch (err) {
      // Any failure (a decoder bug too) leaves the peer's table unknown: the connection ends.
      const tooLarge = err instanceof HpackError && err.tooLarge;
      this.connectionError(tooLarge ? H2_ERROR.ENHANCE_YOUR_CALM : H2_ERROR.COMPRESSION_ERROR, String(err));
      return;
    }
    this.headerBlock(streamId, endStream, d);
  }

  private onData(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) {
      this.connectionError(H2_ERROR.PROTOCOL_ERROR, "DATA on stream 0");
      return;
    }
    // Padding counts against flow control too: the whole frame is acknowledged.
    this.connUnacknowledged += payload.length;
    // We acknowledge at half a window, so a peer within its windows never gets past one.
    if (this.connUnacknowledged > this.windowBytes) {
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
      if (this.idleStream(streamId)) this.connectionError(H2_ERROR.PROTOCOL_ERROR, "DATA on an idle stream");
      return;
    }
    this.streamData(stream, flags, data, payload.length);
  }

  /**
   * Counts a DATA frame against the stream's window; false (the stream is reset) when the peer
   * sent beyond it. We acknowledge at half a window, so a peer within its window never gets past one.
   */
  protected receivedStreamData(stream: S, frameBytes: number): boolean {
    stream.unacknowledged += frameBytes;
    if (stream.unacknowledged <= this.windowBytes) return true;
    stream.reset(H2_ERROR.FLOW_CONTROL_ERROR);
    return false;
  }

  /** @internal A stream's window, acknowledged once half of it was used (unless its reader paused). */
  acknowledgeStream(stream: H2SessionStream): void {
    if (stream.closed || stream.readingPaused || stream.remoteClosed) return;
    if (stream.unacknowledged >= this.windowBytes / 2) {
      this.sendWindowUpdate(stream.id, stream.unacknowledged);
      stream.unacknowledged = 0;
    }
  }

  /** The peer ended its half of `stream`. */
  protected remoteEnd(stream: S): void {
    stream.remoteClosed = true;
    stream.remoteEnded();
    if (stream.localClosed) this.closeStream(stream, undefined);
  }

  /** @internal `done` once what was output so far is written (SessionIo.written). */
  afterWritten(done: () => void): void {
    this.io.written?.(done);
  }

  /** @internal A stream has bytes or its end to send. */
  schedule(stream: H2SessionStream): void {
    this.ready.add(stream);
    this.io.wake();
  }

  /**
   * Frames what flow control and the socket allow, at most `budget` bytes of DATA (the rest stays
   * queued for a later call). The I/O layer calls it once per turn (after handlers ran) and when
   * the socket drains. Returns the DATA bytes framed.
   */
  flush(budget = Number.POSITIVE_INFINITY): number {
    if (this.dead || this.ready.size === 0) return 0;
    let framed = 0;
    for (const stream of this.ready) {
      if (stream.closed) {
        this.ready.delete(stream);
        continue;
      }
      if (this.outputHeld || framed >= budget) break;
      const sent = stream.pump(Math.min(this.sendWindow, budget - framed), this.peerMaxFrame, this.output);
      this.sendWindow -= sent;
      framed += sent;
      if (sent > 0) this.framesSent++;
      // Out of the set before its writer hears `drain`: what it writes then is added again and
      // framed in this same loop (a Set's iteration visits what is added during it).
      if (!stream.waiting) {
        this.ready.delete(stream);
        stream.drained();
      } else {
        stream.drained();
        if (framed >= budget) {
          // The next call starts with the streams after this one: a large answer goes a budget
          // at a time, in turn with the small ones beside it on the connection.
          this.ready.delete(stream);
          this.ready.add(stream);
          break;
        }
        if (this.sendWindow <= 0) break;
      }
    }
    return framed;
  }

  /** @internal A header block (split into CONTINUATION frames above the peer's frame size). */
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

  /** @internal */
  sendReset(streamId: number, code: number): void {
    const payload = Buffer.allocUnsafe(4);
    payload.writeUInt32BE(code, 0);
    this.output(frame(FRAME.RST_STREAM, 0, streamId, payload));
  }

  /** @internal `resetCode`: a RST_STREAM (either way) ended it. */
  closeStream(stream: H2SessionStream, resetCode: number | undefined): void {
    if (stream.closed) return;
    stream.closed = true;
    stream.localClosed = true;
    stream.remoteClosed = true;
    this.streams.delete(stream.id);
    this.ready.delete(stream);
    stream.events?.close(resetCode);
  }

  protected sendWindowUpdate(streamId: number, increment: number): void {
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
    for (const stream of [...this.streams.values()]) this.closeStream(stream, undefined);
    this.pingWaiters.length = 0;
  }

  protected connectionError(code: number, reason: string): void {
    if (this.dead) return;
    this.goAway(code, Buffer.from(reason));
    this.destroy();
    this.io.fail(code, reason);
  }
}

const EMPTY = Buffer.alloc(0);
/** The prototype of a decoded header block's object: empty, itself without one. */
const HEADERS_PROTOTYPE = Object.freeze(Object.create(null));

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
