// One client port for gRPC (HTTP/2) and HTTP/1.1, as etcd serves them, and gRPC from etcd's Go
// client whatever :authority it sends.
//
// Why a look at the first bytes of each connection:
// - etcd answers HTTP/1.1 on its client port too (/health, /version, the JSON gateway), so the
//   first bytes choose: HTTP/2's connection preface goes to the HTTP/2 server, anything else to
//   the HTTP/1.1 server.
// - clientv3 (etcdctl, kube-apiserver) dials per-endpoint Maintenance calls (Status, HashKV,
//   Defragment, MoveLeader) with the endpoint URL as the target, so grpc-go sends
//   `:authority: http://127.0.0.1:2379`. nghttp2 checks :authority against RFC 3986 and resets
//   such a stream with PROTOCOL_ERROR; the check is on whenever HTTP messaging is (Node offers
//   no way to turn it off: nghttp2_option_set_no_http_messaging is not reachable from
//   JavaScript). So before handing a connection over we read its first header block: a valid
//   authority (every other client) -> the socket itself goes to node:http2, which reads it
//   natively (the bytes already read are put back with unshift, and Node's HTTP/2 session takes
//   them from the socket's buffer): no cost per call. An authority nghttp2 would refuse -> the
//   connection goes through AuthorityRepairingSocket, which rewrites each header block (HPACK)
//   before nghttp2 sees it: slower per call, but only these connections pay, and etcdctl opens
//   them for one Maintenance call each.
// - grpc-go sends nothing but its preface until it has the server's SETTINGS frame, so when the
//   first bytes hold no HEADERS we send an empty SETTINGS frame (a valid server preface) and
//   take the client's ACK of it out of the byte stream, so nghttp2 never sees an ACK for a
//   SETTINGS frame it did not send.

import type net from "node:net";
import { Duplex } from "node:stream";
import type tls from "node:tls";
import {
  completeFrameAt,
  EMPTY_SETTINGS_FRAME,
  encodeLiteralHeaderBlock,
  FRAME_HEADER_BYTES,
  FrameFlag,
  FrameType,
  HeaderBlockDecoder,
  HTTP2_PREFACE,
  Http2FramingError,
  headersFragment,
  headersFrames,
  isInvalidAuthority,
  isSettingsAck,
  repairAuthority,
} from "./http2-frames.js";

export interface ClientPortTargets {
  /** Takes an HTTP/2 connection (the socket itself, or a repairing wrapper around it). */
  http2(connection: Duplex): void;
  /** Takes an HTTP/1.x connection; without it such connections are closed. */
  http1?(connection: Duplex): void;
}

/** How long a connection may take to send its first request before it is handed over as is. */
const FIRST_REQUEST_TIMEOUT_MS = 10_000;
/** Bytes held while looking for the first header block; more than any real preface + request. */
const MAX_SNIFF_BYTES = 256 * 1024;

/** Reads the start of a new connection and hands it to the right server (see the file comment). */
export function routeClientConnection(socket: net.Socket, targets: ClientPortTargets): void {
  let buffered: Buffer = Buffer.alloc(0);
  let sentSettings = false;
  let decided = false;

  const handOver = (route: () => void) => {
    decided = true;
    clearTimeout(timer);
    socket.off("data", onData);
    socket.off("error", onError);
    socket.pause();
    route();
  };
  const native = (bytes: Buffer) =>
    handOver(() => {
      if (bytes.length > 0) socket.unshift(bytes);
      targets.http2(socket);
    });
  const repairing = (bytes: Buffer, ackPending: boolean) =>
    handOver(() => targets.http2(new AuthorityRepairingSocket(socket, bytes, ackPending)));

  const onError = () => socket.destroy();
  const onData = (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    const prefix = Math.min(buffered.length, HTTP2_PREFACE.length);
    if (!buffered.subarray(0, prefix).equals(HTTP2_PREFACE.subarray(0, prefix))) {
      // Node's HTTP/1 server reads a socket natively and would not see bytes put back with
      // unshift (its HTTP/2 server does take them), so HTTP/1 gets a view that replays them.
      handOver(() => {
        if (targets.http1 !== undefined) targets.http1(new ReplayingSocket(socket, buffered));
        else socket.destroy();
      });
      return;
    }
    if (buffered.length < HTTP2_PREFACE.length) return;
    let start: ReturnType<typeof scanConnectionStart>;
    try {
      start = scanConnectionStart(buffered, sentSettings);
    } catch {
      // Not HTTP/2 we can read: nghttp2 will say what is wrong with it.
      native(buffered);
      return;
    }
    if (start.firstBlock !== undefined && (!sentSettings || start.ackAt !== undefined)) {
      const bytes = withoutAck(buffered, start.ackAt);
      const fields = new HeaderBlockDecoder().decode(start.firstBlock);
      const repair = fields.some(
        (f) => (f.name === ":authority" || f.name === "host") && isInvalidAuthority(f.value),
      );
      if (repair) repairing(bytes, false);
      else native(bytes);
      return;
    }
    if (!sentSettings) {
      sentSettings = true;
      socket.write(EMPTY_SETTINGS_FRAME);
    }
    if (buffered.length > MAX_SNIFF_BYTES) giveUp();
  };
  // A client that sends no request for a long time: hand it over as it is. If our SETTINGS
  // frame's ACK is still to come, the repairing wrapper takes it out.
  const giveUp = () => {
    if (decided) return;
    if (!sentSettings) {
      native(buffered);
      return;
    }
    let ackAt: number | undefined;
    try {
      ackAt = scanConnectionStart(buffered, true).ackAt;
    } catch {
      ackAt = undefined;
    }
    if (ackAt !== undefined) native(withoutAck(buffered, ackAt));
    else repairing(buffered, true);
  };
  const timer = setTimeout(giveUp, FIRST_REQUEST_TIMEOUT_MS);
  timer.unref();
  socket.on("data", onData);
  socket.on("error", onError);
}

function withoutAck(bytes: Buffer, ackAt: number | undefined): Buffer {
  if (ackAt === undefined) return bytes;
  return Buffer.concat([bytes.subarray(0, ackAt), bytes.subarray(ackAt + FRAME_HEADER_BYTES)]);
}

/**
 * Frames after the preface: the first complete header block (HEADERS + CONTINUATIONs), and
 * where the client's first SETTINGS ACK is (only looked for when we sent SETTINGS).
 */
export function scanConnectionStart(
  bytes: Buffer,
  lookForAck: boolean,
): { firstBlock?: Buffer; ackAt?: number } {
  let offset = HTTP2_PREFACE.length;
  let ackAt: number | undefined;
  let block: Buffer[] | undefined;
  let firstBlock: Buffer | undefined;
  // Every complete frame is looked at: grpc-go may send its first HEADERS before the ACK of our
  // SETTINGS (it is told of the server's preface before it queues the ACK).
  for (
    let frame = completeFrameAt(bytes, offset);
    frame !== undefined;
    frame = completeFrameAt(bytes, offset)
  ) {
    const payload = bytes.subarray(offset + FRAME_HEADER_BYTES, offset + FRAME_HEADER_BYTES + frame.length);
    if (lookForAck && ackAt === undefined && isSettingsAck(frame)) ackAt = offset;
    if (firstBlock === undefined) {
      if (block === undefined && frame.type === FrameType.HEADERS) {
        block = [headersFragment(payload, frame.flags).fragment];
        if (frame.flags & FrameFlag.END_HEADERS) firstBlock = Buffer.concat(block);
      } else if (block !== undefined) {
        if (frame.type !== FrameType.CONTINUATION)
          throw new Http2FramingError("HEADERS without its CONTINUATION");
        block.push(payload);
        if (frame.flags & FrameFlag.END_HEADERS) firstBlock = Buffer.concat(block);
      }
    }
    offset += FRAME_HEADER_BYTES + frame.length;
  }
  const found: { firstBlock?: Buffer; ackAt?: number } = {};
  if (firstBlock !== undefined) found.firstBlock = firstBlock;
  if (ackAt !== undefined) found.ackAt = ackAt;
  return found;
}

/**
 * A connection seen through JavaScript: the bytes already read first, then the socket's, each
 * chunk through `transformInbound`; what is written goes to the socket untouched.
 */
export class ReplayingSocket extends Duplex {
  constructor(
    protected readonly socket: net.Socket,
    alreadyRead: Buffer,
  ) {
    super();
    socket.on("data", (chunk: Buffer) => this.deliver(chunk));
    socket.on("end", () => this.push(null));
    socket.on("error", (err) => this.destroy(err));
    socket.on("close", () => this.destroy());
    if (alreadyRead.length > 0) queueMicrotask(() => this.deliver(alreadyRead));
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.socket.remotePort;
  }
  get localAddress(): string | undefined {
    return this.socket.localAddress;
  }
  get localPort(): number | undefined {
    return this.socket.localPort;
  }
  get encrypted(): boolean {
    return (this.socket as { encrypted?: boolean }).encrypted === true;
  }

  /** A TLS socket's verdict on the peer's certificate (read for the caller's CN). */
  get authorized(): boolean {
    return (this.socket as { authorized?: boolean }).authorized === true;
  }

  getPeerCertificate(): tls.PeerCertificate | undefined {
    return (this.socket as Partial<tls.TLSSocket>).getPeerCertificate?.();
  }

  setNoDelay(noDelay?: boolean): this {
    this.socket.setNoDelay(noDelay);
    return this;
  }

  setKeepAlive(enable?: boolean, delayMs?: number): this {
    this.socket.setKeepAlive(enable, delayMs);
    return this;
  }

  setTimeout(ms: number, callback?: () => void): this {
    this.socket.setTimeout(ms, callback);
    return this;
  }

  /** The bytes to pass on for `chunk` (none yet: return an empty buffer). */
  protected transformInbound(chunk: Buffer): Buffer {
    return chunk;
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.socket.write(chunk, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy(error ?? undefined);
    callback(error);
  }

  private deliver(chunk: Buffer): void {
    let out: Buffer;
    try {
      out = this.transformInbound(chunk);
    } catch (err) {
      this.destroy(err as Error);
      return;
    }
    if (out.length > 0 && !this.push(out)) this.socket.pause();
  }
}

/**
 * A client connection whose header blocks are rewritten on the way in: every block is decoded
 * (one HPACK decoder for the connection, as the client's encoder expects) and re-encoded as
 * literals with a repaired :authority. Everything else passes through as it came; our answers
 * go to the socket untouched.
 */
export class AuthorityRepairingSocket extends ReplayingSocket {
  private readonly decoder = new HeaderBlockDecoder();
  private inbound: Buffer = Buffer.alloc(0);
  private prefaceSeen = false;
  /** A header block waiting for its CONTINUATION frames. */
  private open:
    | { streamId: number; endStream: boolean; priority: Buffer | undefined; fragments: Buffer[] }
    | undefined;

  constructor(
    socket: net.Socket,
    alreadyRead: Buffer,
    private ackPending: boolean,
  ) {
    super(socket, alreadyRead);
  }

  protected override transformInbound(chunk: Buffer): Buffer {
    this.inbound = this.inbound.length === 0 ? chunk : Buffer.concat([this.inbound, chunk]);
    const out: Buffer[] = [];
    if (!this.prefaceSeen) {
      if (this.inbound.length < HTTP2_PREFACE.length) return Buffer.alloc(0);
      out.push(this.inbound.subarray(0, HTTP2_PREFACE.length));
      this.inbound = this.inbound.subarray(HTTP2_PREFACE.length);
      this.prefaceSeen = true;
    }
    let offset = 0;
    for (
      let frame = completeFrameAt(this.inbound, offset);
      frame !== undefined;
      frame = completeFrameAt(this.inbound, offset)
    ) {
      const end = offset + FRAME_HEADER_BYTES + frame.length;
      const payload = this.inbound.subarray(offset + FRAME_HEADER_BYTES, end);
      if (this.open !== undefined) {
        if (frame.type !== FrameType.CONTINUATION || frame.streamId !== this.open.streamId) {
          throw new Http2FramingError("HEADERS without its CONTINUATION");
        }
        this.open.fragments.push(payload);
        if (frame.flags & FrameFlag.END_HEADERS) out.push(this.rewriteOpenBlock());
      } else if (frame.type === FrameType.HEADERS) {
        const { fragment, priority } = headersFragment(payload, frame.flags);
        this.open = {
          streamId: frame.streamId,
          endStream: (frame.flags & FrameFlag.END_STREAM) !== 0,
          priority,
          fragments: [fragment],
        };
        if (frame.flags & FrameFlag.END_HEADERS) out.push(this.rewriteOpenBlock());
      } else if (this.ackPending && isSettingsAck(frame)) {
        this.ackPending = false;
      } else {
        out.push(this.inbound.subarray(offset, end));
      }
      offset = end;
    }
    this.inbound = this.inbound.subarray(offset);
    return Buffer.concat(out);
  }

  private rewriteOpenBlock(): Buffer {
    const open = this.open!;
    this.open = undefined;
    const fields = this.decoder.decode(Buffer.concat(open.fragments));
    repairAuthority(fields);
    return headersFrames(open.streamId, encodeLiteralHeaderBlock(fields), open.endStream, open.priority);
  }
}
