// Many unary calls over one bidi stream (proto/internal/forward.proto, etcdts.internal.v1.Forward):
// the api-gateway's way to a member. Every unary call on its own HTTP/2 stream costs both ends
// a stream's headers, objects and callbacks (node:http2's request() alone was 13.5% of the
// gateway's CPU per put); here a call is one length-prefixed message on a stream that stays
// open, and the answers of one event-loop turn leave in one write.
//
// The member runs each frame as a ForwardedCall through GrpcHttp2Server.dispatchForwarded: the
// handler, observer (grpc_server_* metrics, tracing from traceparent) and size limit of a
// direct call, with the frame's metadata as the call's metadata. The stream itself grants
// nothing: a frame without a token is an unauthenticated call, and the TLS client
// certificate's CN is the connection's, as it would be for the same caller's direct call.
//
// Frames are encoded here by hand rather than by the generated codec (src/gen/internal/forward.ts,
// which the tests check these against): one allocation per frame on the hottest path there is.

import grpc from "@grpc/grpc-js";
import { WIRE_LENGTH_DELIMITED, WIRE_VARINT, WireFormatError, WireReader } from "../wire/protobuf-wire.js";
import { type CallStatus, type GrpcHttp2Server, type MethodHandler, ServerCall } from "./http2-server.js";

export const FORWARD_CALLS_PATH = "/etcdts.internal.v1.Forward/Calls";
/** What a frame may add to its request: id, method, deadline and metadata (nghttp2's header limit is 64 KiB). */
const FRAME_ALLOWANCE_BYTES = 64 * 1024;

/** One call, or the cancel of one (`cancel`: only `id` is meaningful). */
export interface CallFrame {
  id: number;
  method: string;
  request: Uint8Array;
  /** The caller's metadata as the member should see it; undefined or empty: none. */
  metadata: grpc.Metadata | undefined;
  /** Milliseconds left of the caller's deadline; 0: none. */
  timeoutMs: number;
  cancel: boolean;
}

export interface CallResult {
  id: number;
  code: number;
  message: string;
  /** Undefined unless code is OK. */
  response: Buffer | undefined;
  trailers: grpc.Metadata | undefined;
}

// ---- Encoding: a size pass, then one buffer. ----

function varintSize(value: number): number {
  let size = 1;
  let v = value;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    size++;
  }
  return size;
}

function putVarint(out: Buffer, at: number, value: number): number {
  let v = value;
  let pos = at;
  while (v >= 0x80) {
    out[pos++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  out[pos++] = v;
  return pos;
}

/** Metadata as [key, value bytes] pairs; user-agent is the transport's, not the caller's. */
function metadataPairs(metadata: grpc.Metadata | undefined): [Buffer, Buffer][] {
  const pairs: [Buffer, Buffer][] = [];
  if (metadata === undefined) return pairs;
  const map = metadata.getMap();
  for (const key in map) {
    if (key === "user-agent") continue;
    const value = map[key]!;
    pairs.push([Buffer.from(key), typeof value === "string" ? Buffer.from(value) : value]);
  }
  return pairs;
}

function pairSize(pair: [Buffer, Buffer]): number {
  const [key, value] = pair;
  return 1 + varintSize(key.length) + key.length + 1 + varintSize(value.length) + value.length;
}

function lengthDelimitedSize(length: number): number {
  return 1 + varintSize(length) + length;
}

function putBytes(out: Buffer, at: number, field: number, bytes: Uint8Array): number {
  out[at] = (field << 3) | WIRE_LENGTH_DELIMITED;
  const pos = putVarint(out, at + 1, bytes.length);
  out.set(bytes, pos);
  return pos + bytes.length;
}

function putPairs(out: Buffer, at: number, field: number, pairs: [Buffer, Buffer][]): number {
  let pos = at;
  for (const pair of pairs) {
    out[pos] = (field << 3) | WIRE_LENGTH_DELIMITED;
    pos = putVarint(out, pos + 1, pairSize(pair));
    pos = putBytes(out, pos, 1, pair[0]);
    pos = putBytes(out, pos, 2, pair[1]);
  }
  return pos;
}

/**
 * A CallFrame, after `prefix` bytes left for the caller to fill (the gateway writes gRPC's
 * 5-byte message prefix there, saving a copy).
 */
export function encodeCallFrame(frame: CallFrame, prefix = 0): Buffer {
  const method = frame.method === "" ? undefined : Buffer.from(frame.method);
  const pairs = metadataPairs(frame.metadata);
  let size = 1 + varintSize(frame.id);
  if (method !== undefined) size += lengthDelimitedSize(method.length);
  if (frame.request.length > 0) size += lengthDelimitedSize(frame.request.length);
  for (const pair of pairs) size += lengthDelimitedSize(pairSize(pair));
  if (frame.timeoutMs > 0) size += 1 + varintSize(frame.timeoutMs);
  if (frame.cancel) size += 2;
  const out = Buffer.allocUnsafe(prefix + size);
  out[prefix] = (1 << 3) | WIRE_VARINT;
  let pos = putVarint(out, prefix + 1, frame.id);
  if (method !== undefined) pos = putBytes(out, pos, 2, method);
  if (frame.request.length > 0) pos = putBytes(out, pos, 3, frame.request);
  pos = putPairs(out, pos, 4, pairs);
  if (frame.timeoutMs > 0) {
    out[pos] = (5 << 3) | WIRE_VARINT;
    pos = putVarint(out, pos + 1, frame.timeoutMs);
  }
  if (frame.cancel) {
    out[pos++] = (6 << 3) | WIRE_VARINT;
    out[pos++] = 1;
  }
  return out;
}

export function encodeCallResult(result: CallResult): Buffer {
  const message = result.message === "" ? undefined : Buffer.from(result.message);
  const pairs = metadataPairs(result.trailers);
  let size = 1 + varintSize(result.id);
  if (result.code !== 0) size += 1 + varintSize(result.code);
  if (message !== undefined) size += lengthDelimitedSize(message.length);
  if (result.response !== undefined && result.response.length > 0)
    size += lengthDelimitedSize(result.response.length);
  for (const pair of pairs) size += lengthDelimitedSize(pairSize(pair));
  const out = Buffer.allocUnsafe(size);
  out[0] = (1 << 3) | WIRE_VARINT;
  let pos = putVarint(out, 1, result.id);
  if (result.code !== 0) {
    out[pos] = (2 << 3) | WIRE_VARINT;
    pos = putVarint(out, pos + 1, result.code);
  }
  if (message !== undefined) pos = putBytes(out, pos, 3, message);
  if (result.response !== undefined && result.response.length > 0)
    pos = putBytes(out, pos, 4, result.response);
  putPairs(out, pos, 5, pairs);
  return out;
}

// ---- Decoding. Bytes fields are views into the frame, which nothing reuses. ----

function bytesView(reader: WireReader): Buffer {
  const [start, end] = reader.lengthDelimitedRange();
  const buf = reader.buf;
  return Buffer.from(buf.buffer, buf.byteOffset + start, end - start);
}

function expect(reader: WireReader, wireType: number): void {
  if (reader.wireType !== wireType)
    throw new WireFormatError(`field ${reader.fieldNumber}: wire type ${reader.wireType}`);
}

/** Adds one Metadata entry to `metadata` (created on first use); returns it. */
function readPair(reader: WireReader, metadata: grpc.Metadata | undefined): grpc.Metadata {
  const [start, end] = reader.lengthDelimitedRange();
  const inner = new WireReader(reader.buf, start, end);
  let key = "";
  let value: Buffer = EMPTY;
  while (inner.next()) {
    if (inner.fieldNumber === 1 && inner.wireType === WIRE_LENGTH_DELIMITED)
      key = bytesView(inner).toString();
    else if (inner.fieldNumber === 2 && inner.wireType === WIRE_LENGTH_DELIMITED) value = bytesView(inner);
    else inner.skip();
  }
  const out = metadata ?? new grpc.Metadata();
  // grpc.Metadata refuses keys a header could not carry: a malformed frame, thrown as one.
  try {
    out.add(key, key.endsWith("-bin") ? value : value.toString());
  } catch (err) {
    throw new WireFormatError(`metadata ${JSON.stringify(key)}: ${(err as Error).message}`);
  }
  return out;
}

export function decodeCallFrame(bytes: Uint8Array): CallFrame {
  const reader = new WireReader(bytes);
  const frame: CallFrame = {
    id: 0,
    method: "",
    request: EMPTY,
    metadata: undefined,
    timeoutMs: 0,
    cancel: false,
  };
  while (reader.next()) {
    switch (reader.fieldNumber) {
      case 1:
        expect(reader, WIRE_VARINT);
        frame.id = reader.varint();
        break;
      case 2:
        expect(reader, WIRE_LENGTH_DELIMITED);
        frame.method = bytesView(reader).toString();
        break;
      case 3:
        expect(reader, WIRE_LENGTH_DELIMITED);
        frame.request = bytesView(reader);
        break;
      case 4:
        expect(reader, WIRE_LENGTH_DELIMITED);
        frame.metadata = readPair(reader, frame.metadata);
        break;
      case 5:
        expect(reader, WIRE_VARINT);
        frame.timeoutMs = reader.varint();
        break;
      case 6:
        expect(reader, WIRE_VARINT);
        frame.cancel = reader.bool();
        break;
      default:
        reader.skip();
    }
  }
  return frame;
}

export function decodeCallResult(bytes: Uint8Array): CallResult {
  const reader = new WireReader(bytes);
  const result: CallResult = { id: 0, code: 0, message: "", response: undefined, trailers: undefined };
  while (reader.next()) {
    switch (reader.fieldNumber) {
      case 1:
        expect(reader, WIRE_VARINT);
        result.id = reader.varint();
        break;
      case 2:
        expect(reader, WIRE_VARINT);
        result.code = reader.varint();
        break;
      case 3:
        expect(reader, WIRE_LENGTH_DELIMITED);
        result.message = bytesView(reader).toString();
        break;
      case 4:
        expect(reader, WIRE_LENGTH_DELIMITED);
        result.response = bytesView(reader);
        break;
      case 5:
        expect(reader, WIRE_LENGTH_DELIMITED);
        result.trailers = readPair(reader, result.trailers);
        break;
      default:
        reader.skip();
    }
  }
  // An OK answer always has a message, even an empty one (an empty Put response encodes to 0 bytes).
  if (result.code === 0) result.response ??= EMPTY;
  return result;
}

const EMPTY = Buffer.alloc(0);

function asBuffer(bytes: Uint8Array | undefined): Buffer {
  if (bytes === undefined) return EMPTY;
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

// ---- The member's side. ----

/** One forwarded unary call, answered with a CallResult on the stream it came on. */
class ForwardedCall extends ServerCall {
  private response: Uint8Array | undefined;
  private finished = false;

  constructor(
    readonly id: number,
    path: string,
    request: Uint8Array,
    private readonly callMetadata: grpc.Metadata,
    deadline: number | undefined,
    private readonly calls: ForwardedCallStream,
  ) {
    super(path, deadline);
    this.request = asBuffer(request);
    this.peerCommonName = calls.stream.peerCommonName;
  }

  override get metadata(): grpc.Metadata {
    return this.callMetadata;
  }

  /** The gateway's address, as for its direct calls. */
  override get remoteAddress(): string | undefined {
    return this.calls.stream.remoteAddress;
  }

  override header(name: string): string | undefined {
    const value = this.callMetadata.get(name)[0];
    return typeof value === "string" ? value : undefined;
  }

  override get writableLength(): number {
    return this.calls.stream.writableLength;
  }

  override sendMessage(message: Uint8Array): boolean {
    if (this.finished) return false;
    this.observer?.sent(message.length);
    // A unary call answers one message; the result frame carries it.
    this.response = message;
    return true;
  }

  override finish(status: CallStatus): void {
    if (this.finished) return;
    this.end(status.code);
    this.calls.answer({
      id: this.id,
      code: status.code,
      message: status.details ?? "",
      response: status.code === grpc.status.OK ? asBuffer(this.response) : undefined,
      trailers: status.metadata,
    });
    this.emit("close");
  }

  /** The caller abandoned the call (cancel frame, or the stream went away): no result. */
  cancel(): void {
    if (this.finished) return;
    this.end(grpc.status.CANCELLED);
    this.markCancelled();
    this.emit("close");
  }

  private end(code: number): void {
    this.finished = true;
    this.observer?.handled(code, (performance.now() - this.startedAt) / 1000, this);
    this.clearDeadline();
    this.calls.forget(this.id);
  }
}

/** The calls of one Forward/Calls stream, on the member. */
class ForwardedCallStream {
  private readonly inFlight = new Map<number, ForwardedCall>();
  private halfClosed = false;
  private ended = false;

  constructor(
    readonly stream: ServerCall,
    private readonly server: GrpcHttp2Server,
  ) {
    stream.on("message", (bytes: Buffer) => this.onFrame(bytes));
    stream.on("halfClose", () => {
      this.halfClosed = true;
      this.endIfDone();
    });
    // The gateway went away: its calls are abandoned, as a direct call's when its stream resets.
    stream.on("close", () => this.abandonAll());
  }

  answer(result: CallResult): void {
    if (this.ended) return;
    this.stream.sendMessage(encodeCallResult(result));
  }

  forget(id: number): void {
    this.inFlight.delete(id);
    this.endIfDone();
  }

  private onFrame(bytes: Buffer): void {
    if (this.ended) return;
    let frame: CallFrame;
    try {
      frame = decodeCallFrame(bytes);
    } catch (err) {
      this.fail(`etcd-ts: malformed forwarded call frame: ${(err as Error).message}`);
      return;
    }
    if (frame.cancel) {
      this.inFlight.get(frame.id)?.cancel();
      return;
    }
    if (this.inFlight.has(frame.id)) {
      this.fail(`etcd-ts: forwarded call id ${frame.id} is already in flight`);
      return;
    }
    const deadline = frame.timeoutMs > 0 ? Date.now() + frame.timeoutMs : undefined;
    const call = new ForwardedCall(
      frame.id,
      frame.method,
      frame.request,
      frame.metadata ?? new grpc.Metadata(),
      deadline,
      this,
    );
    this.inFlight.set(frame.id, call);
    this.server.dispatchForwarded(call);
  }

  private endIfDone(): void {
    if (!this.halfClosed || this.ended || this.inFlight.size > 0) return;
    this.ended = true;
    this.stream.finish({ code: grpc.status.OK });
  }

  /** A protocol error: the stream ends, and the gateway reports its calls' outcome as unknown. */
  private fail(details: string): void {
    this.ended = true;
    this.stream.finish({ code: grpc.status.INTERNAL, details });
    this.abandonAll();
  }

  private abandonAll(): void {
    this.ended = true;
    for (const call of [...this.inFlight.values()]) call.cancel();
  }
}

/** The member's Forward/Calls handler, dispatching into `server`'s own unary handlers. */
export function forwardedCallsHandler(server: GrpcHttp2Server): MethodHandler {
  return {
    kind: "bidi",
    // The frame's own fields and the caller's metadata (headers, on a direct call).
    wrapperBytes: FRAME_ALLOWANCE_BYTES,
    handle: (call) => {
      new ForwardedCallStream(call, server);
    },
  };
}
