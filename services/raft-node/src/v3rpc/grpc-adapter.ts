// The member's services, written against grpc-js's handler shapes (generated service
// definitions, `call.write`, `callback(err, res)`), served by @etcd-ts/api's GrpcHttp2Server:
// node:http2 directly, with each call's messages of one event-loop turn in one HTTP/2 write
// (a watch stream answering 100 watchers per event made 100 writes under grpc-js's server,
// the largest cost of a member's fan-out in the profile; the gateway moved first).

import { EventEmitter } from "node:events";
import {
  type CallKind,
  type CallStatus,
  type GrpcHttp2Server,
  MessageParts,
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

/** EventEmitter's listener type (its own signature takes any arguments). */
// biome-ignore lint/suspicious/noExplicitAny: the type EventEmitter's methods declare
type Listener = (...args: any[]) => void;

/** The ServerCall events a GrpcJsShapedCall passes on, each a bit of its `forwarding`. */
const FORWARDED: Record<string, number> = { cancelled: 1, drain: 2, close: 4 };

/**
 * The parts of grpc-js's ServerUnaryCall / ServerWritableStream / ServerDuplexStream the
 * handlers use. Events: 'data' (decoded request), 'end' (half-close), 'cancelled',
 * 'drain', 'close', and 'error' (a handler emitting one ends the call with that status).
 */
class GrpcJsShapedCall extends EventEmitter {
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
  // EventEmitter's once() and prependOnceListener() add through on() / prependListener().
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

/** A served call's writeEncoded (handlers are typed with grpc-js's call shapes). */
export function encodedWriter(call: object): { writeEncoded(message: MessageParts): boolean } {
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
      handle: (call) => {
        const shaped = new GrpcJsShapedCall(call, serialize);
        try {
          if (kind === "bidi") {
            call.on("message", (bytes: Buffer) => {
              let decoded: unknown;
              try {
                decoded = deserialize(bytes);
              } catch (err) {
                call.finish({
                  code: status.INTERNAL,
                  details: `Error deserializing request: ${String(err)}`,
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
