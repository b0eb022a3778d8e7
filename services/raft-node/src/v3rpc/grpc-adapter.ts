// The member's services, written against grpc-js's handler shapes (generated service
// definitions, `call.write`, `callback(err, res)`), served by @etcd-ts/api's GrpcHttp2Server:
// node:http2 directly, with each call's messages of one event-loop turn in one HTTP/2 write
// (a watch stream answering 100 watchers per event made 100 writes under grpc-js's server,
// the largest cost of a member's fan-out in the profile; the gateway moved first).

import {
  CallEvents,
  type CallKind,
  type CallStatus,
  etcdRequestCheck,
  type GrpcHttp2Server,
  MAX_SEND_MESSAGE_BYTES,
  MessageParts,
  messageTooLarge,
  noLeaderError,
  type RequireLeaderGuard,
  type ServerCall,
} from "@etcd-ts/api";
import { type TraceContext, traceContextOf } from "@etcd-ts/telemetry";
import {
  type Metadata,
  type ServiceDefinition,
  status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { stageTimeline } from "../server/stage-timeline.js";

interface StatusLike {
  code?: number;
  details?: string;
  message?: string;
  metadata?: Metadata;
}

function statusOf(err: StatusLike | Error): CallStatus {
  const e = err as StatusLike;
  return {
    code: typeof e.code === "number" ? e.code : status.UNKNOWN,
    details: e.details ?? e.message ?? "",
    metadata: e.metadata,
  };
}

/** A listener's type (CallEvents', as EventEmitter's, takes any arguments). */
// biome-ignore lint/suspicious/noExplicitAny: the type EventEmitter's methods declare
type Listener = (...args: any[]) => void;

/** The ServerCall events a GrpcJsShapedCall passes on, each a bit of its `forwarding`. */
const FORWARDED: Record<string, number> = { cancelled: 1, drain: 2, close: 4 };

/**
 * The parts of grpc-js's ServerUnaryCall / ServerWritableStream / ServerDuplexStream the
 * handlers use. Events: 'data' (decoded request), 'end' (half-close), 'cancelled',
 * 'drain', 'close', and 'error' (a handler emitting one ends the call with that status).
 * CallEvents rather than EventEmitter: no listener table per call until a handler listens
 * (call-events.ts; most unary handlers never do).
 */
class GrpcJsShapedCall extends CallEvents {
  request: unknown;
  /** The call's events already forwarded here (FORWARDED bits). */
  private forwarding = 0;

  constructor(
    private readonly call: ServerCall,
    private readonly serialize: (value: unknown) => Buffer,
  ) {
    super();
  }

  // The call's 'cancelled', 'drain' and 'close' are forwarded once a handler listens for one:
  // most unary handlers never do, and three listeners per call were a cost of every put.
  // CallEvents' once() and prependOnceListener() add through on() / prependListener().
  override on(event: string | symbol, listener: Listener): this {
    this.forward(event);
    return super.on(event, listener);
  }

  override addListener(event: string | symbol, listener: Listener): this {
    this.forward(event);
    return super.addListener(event, listener);
  }

  override prependListener(event: string | symbol, listener: Listener): this {
    this.forward(event);
    return super.prependListener(event, listener);
  }

  private forward(event: string | symbol): void {
    const bit = typeof event === "string" ? FORWARDED[event] : undefined;
    if (bit === undefined || (this.forwarding & bit) !== 0) return;
    this.forwarding |= bit;
    this.call.on(event as string, () => super.emit(event));
  }

  get metadata(): Metadata {
    return this.call.metadata;
  }

  /** The bytes the request was decoded from (a unary or server-streaming call's one message). */
  get requestBytes(): Buffer {
    return this.call.request;
  }

  /** One request header (lower-case name), without building the metadata object. */
  header(name: string): string | undefined {
    return this.call.header(name);
  }

  get cancelled(): boolean {
    return this.call.cancelled;
  }

  /** The call's server span context when tracing is on (undefined otherwise). */
  get traceContext(): TraceContext | undefined {
    return traceContextOf(this.call);
  }

  /** The CN of the client's verified certificate (v3rpc/caller.ts). */
  get peerCommonName(): string | undefined {
    return this.call.peerCommonName;
  }

  getDeadline(): number {
    return this.call.getDeadline();
  }

  getPeer(): string {
    return "unknown";
  }

  write(value: unknown): boolean {
    return this.call.sendMessage(this.serialize(value));
  }

  /**
   * Sends a message its handler encoded itself, in pieces that are never joined: a snapshot's
   * 1 MiB blobs cost three copies through the generated encoder's growing buffer, and none here
   * (joining them to their few bytes of header cost as much as the rest of the send).
   */
  writeEncoded(message: MessageParts): boolean {
    return this.call.sendMessageParts(message);
  }

  /** Messages framed by the handler, back to back in one buffer (ServerCall.sendFramed). */
  writeFramed(framed: Buffer, lengths: readonly number[]): boolean {
    return this.call.sendFramed(framed, lengths);
  }

  end(metadata?: Metadata): void {
    this.call.finish({ code: status.OK, metadata });
  }

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === "error") {
      this.call.finish(statusOf(args[0] as StatusLike));
      // grpc-js passes the error to the handler's own 'error' listeners; none is no crash.
      return this.listenerCount("error") > 0 ? super.emit(event, ...args) : false;
    }
    return super.emit(event, ...args);
  }
}

/** A piece of an answer kept elsewhere until it is sent (a Range's chunk held by a read thread). */
export interface FetchedPiece {
  readonly length: number;
  /** Its bytes (once). */
  take(): Promise<Buffer>;
  /** Not wanted after all. */
  drop(): void;
  /** Its bytes, taken and written: no longer read here. */
  recycle(bytes: Buffer): void;
}

/**
 * A unary answer in pieces, some fetched only as the client takes them: the bytes reach this
 * thread a few pieces ahead of the socket, not all before the first one leaves. A piece that
 * cannot be fetched after the message has started ends the call with INTERNAL (the client sees
 * a failed call, not a short answer).
 */
export class FetchedMessage {
  readonly length: number;

  constructor(readonly pieces: readonly (Buffer | FetchedPiece)[]) {
    let length = 0;
    for (const p of pieces) length += p.length;
    this.length = length;
  }
}

/**
 * Pieces fetched ahead of the one being written, so the next is here when the socket wants it
 * even when the thread holding it (nice 10) waits for a core: a Range's are ~280 KB each.
 */
const FETCH_AHEAD = 8;

async function sendFetched(
  call: ServerCall,
  message: FetchedMessage,
  trailer: Metadata | undefined,
): Promise<void> {
  const { pieces } = message;
  let next = 0;
  const ahead: { piece: Buffer | FetchedPiece; bytes: Promise<Buffer> }[] = [];
  const fetchAhead = (depth: number) => {
    while (ahead.length < depth && next < pieces.length) {
      const piece = pieces[next++]!;
      const bytes = Buffer.isBuffer(piece) ? Promise.resolve(piece) : piece.take();
      // Never awaited when the call ends first; awaiting it still throws.
      bytes.catch(() => {});
      ahead.push({ piece, bytes });
    }
  };
  try {
    if (call.cancelled) return;
    if (message.length > MAX_SEND_MESSAGE_BYTES) {
      call.finish(messageTooLarge(message.length));
      return;
    }
    const writer = call.startMessage(message.length);
    if (writer === undefined) {
      // A call that cannot stream a message (a forwarded call's result frame is one buffer).
      fetchAhead(pieces.length);
      const parts: Buffer[] = [];
      for (const { bytes } of ahead.splice(0)) parts.push(await bytes);
      call.sendMessageParts(new MessageParts(parts));
      call.finish({ code: status.OK, metadata: trailer });
      return;
    }
    fetchAhead(FETCH_AHEAD);
    while (ahead.length > 0 && !call.cancelled) {
      const { piece, bytes: fetching } = ahead.shift()!;
      const bytes = await fetching;
      fetchAhead(FETCH_AHEAD);
      // Once written, a fetched piece's memory goes back where it came from (its thread) at
      // once, rather than counting as this isolate's until a GC finds it (range-read-thread.ts).
      const sent = Buffer.isBuffer(piece) ? undefined : () => piece.recycle(bytes);
      if (!writer.write(bytes, sent)) await new Promise<void>((resume) => writer.onDrain(resume));
    }
    call.finish({ code: status.OK, metadata: trailer });
  } catch (err) {
    call.finish({ code: status.INTERNAL, details: err instanceof Error ? err.message : String(err) });
  } finally {
    for (let i = next; i < pieces.length; i++) {
      const p = pieces[i]!;
      if (!Buffer.isBuffer(p)) p.drop();
    }
  }
}

/** A served call's writeEncoded (handlers are typed with grpc-js's call shapes). */
export function encodedWriter(call: object): {
  writeEncoded(message: MessageParts): boolean;
  writeFramed(framed: Buffer, lengths: readonly number[]): boolean;
} {
  if (!(call instanceof GrpcJsShapedCall)) throw new Error("grpc-adapter: not a call this adapter serves");
  return call;
}

type Handler = (
  call: GrpcJsShapedCall,
  callback?: (err: unknown, value?: unknown, trailer?: Metadata) => void,
) => void;

/** Registers every method of `definition` with the handler of the same name. */
export function serveService(
  server: GrpcHttp2Server,
  definition: ServiceDefinition,
  implementation: UntypedServiceImplementation,
  /** What a member checks before a client call's handler runs (etcd's server interceptors). */
  guard?: RequireLeaderGuard,
): void {
  for (const [name, method] of Object.entries(definition)) {
    const handler = implementation[name] as unknown as Handler | undefined;
    if (handler === undefined) continue;
    if (method.requestStream && !method.responseStream) {
      // etcd's client API has none; the peer transport serves its own (stream, snapshot).
      throw new Error(`${method.path}: client-streaming methods are not supported here`);
    }
    const kind: CallKind = method.requestStream ? "bidi" : method.responseStream ? "server-stream" : "unary";
    const serialize = method.responseSerialize as (value: unknown) => Buffer;
    const deserialize = method.requestDeserialize as (bytes: Buffer) => unknown;
    server.register(method.path, {
      kind,
      // Refused with etcd's words before decoding: our decoders are laxer than gogo's.
      requestCheck: etcdRequestCheck(method.path),
      handle: (call) => {
        const shaped = new GrpcJsShapedCall(call, serialize);
        // A stream is ended as its handler ends one itself: its 'error' listeners release it.
        const endStream = kind === "unary" ? undefined : () => shaped.emit("error", noLeaderError());
        if (guard !== undefined && !guard.admit(call, endStream)) return;
        try {
          if (kind === "bidi") {
            call.on("message", (bytes: Buffer) => {
              let decoded: unknown;
              try {
                decoded = deserialize(bytes);
              } catch (err) {
                // Past requestCheck only a limit of our decoder's (Txns nested 100 deep).
                call.finish({
                  code: status.INTERNAL,
                  details: `grpc: failed to unmarshal the received message ${(err as Error).message}`,
                });
                return;
              }
              shaped.emit("data", decoded);
            });
            call.on("halfClose", () => shaped.emit("end"));
            handler(shaped);
            return;
          }
          shaped.request = deserialize(call.request);
          stageTimeline?.begin("L.decoded");
          if (kind === "server-stream") {
            handler(shaped);
            return;
          }
          handler(shaped, (err, value, trailer) => {
            if (err) {
              call.finish(statusOf(err as StatusLike));
              return;
            }
            // An answer already in pieces (a Range) goes out as they are; over grpc-go's send
            // limit the call has ended with RESOURCE_EXHAUSTED and finish below does nothing.
            if (value instanceof MessageParts) {
              call.sendMessageParts(value);
              call.finish({ code: status.OK, metadata: trailer });
            } else if (value instanceof FetchedMessage) {
              void sendFetched(call, value, trailer);
            } else call.finishWith(serialize(value), { code: status.OK, metadata: trailer });
            stageTimeline?.mark("answered");
          });
        } catch (err) {
          call.finish({ code: status.UNKNOWN, details: err instanceof Error ? err.message : String(err) });
        }
      },
    });
  }
}
