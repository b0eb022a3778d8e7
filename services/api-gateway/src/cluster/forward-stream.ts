// Many unary calls to one member over one HTTP/2 stream (etcdts.internal.v1.Forward/Calls,
// @etcd-ts/api's forwarded-calls.ts), instead of a stream per call: node:http2's request()
// was 13.5% of the gateway's CPU per put, and the member pays for each stream's headers too.
// The frames of one event-loop turn leave in one write.
//
// Outcomes keep the per-call channel's meaning (member-channel.ts), which the retry
// policy reads: a call the stream ended under after it was written fails with "Connection
// dropped" (outcome unknown), or "No connection established" when the connection never
// connected; a call not yet written goes out on its own stream instead. A member that does
// not serve the method (etcd, an older member) refuses the stream with UNIMPLEMENTED before
// running any call on it: every call on it is then sent again on its own stream, and the
// channel stops offering this connection's calls to a Forward stream.

import {
  type CallFrame,
  type ClientSocketConnection,
  type ClientStreamEvents,
  callDeadlines,
  type DeadlineSlot,
  type DeadlineTarget,
  decodeCallResult,
  encodeCallFrame,
  H2_ERROR,
  type H2ClientStream,
  type IncomingHeaders,
  MessageDeframer,
} from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
import type { PendingUnary, UnaryResult } from "./member-channel.js";

/**
 * Calls in flight on one stream at most; beyond it calls take their own stream. Bounds what a
 * member holds for one gateway, as its --max-concurrent-streams bounds direct calls.
 */
export const MAX_CALLS_IN_FLIGHT = 1024;

/** What the stream needs of its channel. */
export interface ForwardStreamHost {
  /** Why the connection failed. */
  lastError(): string;
  /** The same call on its own HTTP/2 stream. */
  callAlone(
    path: string,
    request: Buffer,
    metadata: grpc.Metadata | undefined,
    deadlineMs: number | undefined,
  ): PendingUnary;
  /** The member answered UNIMPLEMENTED: it does not serve Forward/Calls. */
  refused(): void;
  /** The stream is gone (a stream to the member is free). */
  ended(): void;
}

interface PendingCall {
  readonly path: string;
  readonly request: Buffer;
  readonly metadata: grpc.Metadata | undefined;
  readonly deadlineMs: number | undefined;
  readonly resolve: (result: UnaryResult) => void;
  /** Part of a write already handed to the stream. */
  written: boolean;
  /** Its deadline's group (@etcd-ts/api's deadlines.ts: no Node timer per call), while it waits. */
  deadline: DeadlineSlot | undefined;
  /** Ends the call DEADLINE_EXCEEDED. */
  readonly expiry: DeadlineTarget;
  /** Set once the call went out on its own stream instead. */
  cancelAlone: (() => void) | undefined;
}

export class ForwardStream implements ClientStreamEvents {
  private stream!: H2ClientStream;
  private readonly calls = new Map<number, PendingCall>();
  private nextId = 1;
  /** Encoded frames (with their 5-byte prefix) waiting for this turn's write, and their ids. */
  private outbox: Buffer[] = [];
  private outboxIds: number[] = [];
  private flushScheduled = false;
  private draining = false;
  private closed = false;
  private status: number | undefined;
  private readonly inbox = new MessageDeframer();

  /** Opens the stream on `connection` (`headers`: its request's header block); undefined once it is going away. */
  static open(
    connection: ClientSocketConnection,
    headers: Buffer,
    host: ForwardStreamHost,
  ): ForwardStream | undefined {
    const forward = new ForwardStream(connection, host);
    // The stream carries no caller's metadata: every frame brings its own token.
    const stream = connection.h2.request(headers, forward);
    if (stream === undefined) return undefined;
    forward.stream = stream;
    return forward;
  }

  private constructor(
    readonly connection: ClientSocketConnection,
    private readonly host: ForwardStreamHost,
  ) {}

  /** @internal Response headers and trailers. */
  headers(headers: IncomingHeaders): void {
    // The member ended the call when it sends a status (the core resets our half if still open).
    const code = headers["grpc-status"];
    if (code !== undefined) this.status = Number(code);
  }

  /** @internal */
  data(chunk: Buffer): void {
    this.receive(chunk);
  }

  /** @internal */
  drain(): void {}

  /** @internal */
  close(resetCode: number | undefined): void {
    this.onClose(resetCode);
    this.host.ended();
  }

  /** Whether the stream takes new calls (it may be full: see `accepting`). */
  get open(): boolean {
    return !this.draining && !this.closed;
  }

  /** Whether a new call may be sent on this stream now. */
  get accepting(): boolean {
    return this.open && this.calls.size < MAX_CALLS_IN_FLIGHT;
  }

  /** Takes no new calls; ends the stream once the calls in flight are answered. */
  finish(): void {
    this.draining = true;
    this.endIfDrained();
  }

  call(
    path: string,
    request: Buffer,
    metadata: grpc.Metadata | undefined,
    deadlineMs: number | undefined,
  ): PendingUnary {
    const id = this.nextId++;
    let pending: PendingCall | undefined;
    const result = new Promise<UnaryResult>((resolve) => {
      pending = {
        path,
        request,
        metadata,
        deadlineMs,
        resolve,
        written: false,
        deadline: undefined,
        expiry: {
          deadlinePassed: () => this.abandon(id, grpc.status.DEADLINE_EXCEEDED, "Deadline exceeded"),
        },
        cancelAlone: undefined,
      };
    });
    const call = pending!;
    this.calls.set(id, call);
    const frame: CallFrame = {
      id,
      method: path,
      request,
      metadata,
      timeoutMs: deadlineMs === undefined ? 0 : Math.max(1, Math.ceil(deadlineMs - Date.now())),
      cancel: false,
    };
    this.enqueue(id, encodeCallFrame(frame, 5));
    if (deadlineMs !== undefined) call.deadline = callDeadlines.add(deadlineMs, call.expiry);
    return { result, cancel: () => this.abandon(id, grpc.status.CANCELLED, "Cancelled on client") };
  }

  /** Settles call `id` locally and tells the member to drop it. */
  private abandon(id: number, code: number, details: string): void {
    const call = this.calls.get(id);
    if (call === undefined) return;
    if (call.cancelAlone !== undefined) {
      call.cancelAlone();
      return;
    }
    this.settle(id, call, failure(code, details));
    if (!this.closed) {
      this.enqueue(
        0,
        encodeCallFrame(
          { id, method: "", request: EMPTY, metadata: undefined, timeoutMs: 0, cancel: true },
          5,
        ),
      );
    }
  }

  private settle(id: number, call: PendingCall, result: UnaryResult): void {
    this.calls.delete(id);
    clearDeadline(call);
    call.resolve(result);
    this.endIfDrained();
  }

  private enqueue(id: number, frame: Buffer): void {
    frame[0] = 0;
    frame.writeUInt32BE(frame.length - 5, 1);
    this.outbox.push(frame);
    this.outboxIds.push(id);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    process.nextTick(() => this.flush());
  }

  /** One write for every frame of this turn (one DATA frame for many calls). */
  private flush(): void {
    this.flushScheduled = false;
    if (this.closed) return; // onClose sends the unwritten calls alone
    const frames = this.outbox;
    const ids = this.outboxIds;
    this.outbox = [];
    this.outboxIds = [];
    for (const id of ids) {
      const call = this.calls.get(id);
      if (call !== undefined) call.written = true;
    }
    this.stream.write(frames.length === 1 ? frames[0]! : Buffer.concat(frames));
  }

  private endIfDrained(): void {
    if (!this.draining || this.calls.size > 0 || this.closed) return;
    this.stream.end();
  }

  /** Splits the response bytes into messages and settles their calls. */
  private receive(chunk: Buffer): void {
    this.inbox.push(chunk);
    while (!this.closed) {
      let message: Buffer | undefined;
      try {
        message = this.inbox.next();
      } catch {
        // A compressed answer: not our protocol (see onResult).
        this.stream.reset(H2_ERROR.CANCEL);
        return;
      }
      if (message === undefined) return;
      this.onResult(message);
    }
  }

  private onResult(message: Buffer): void {
    let result: ReturnType<typeof decodeCallResult>;
    try {
      result = decodeCallResult(message);
    } catch {
      // Not our protocol: the stream is useless, and its calls' outcomes unknown.
      this.stream.reset(H2_ERROR.CANCEL);
      return;
    }
    const call = this.calls.get(result.id);
    if (call === undefined) return; // abandoned: its cancel frame crossed this answer
    if (result.code === grpc.status.OK) {
      this.settle(result.id, call, {
        error: undefined,
        response: result.response,
        trailers: result.trailers,
      });
      return;
    }
    this.settle(result.id, call, {
      error: { code: result.code, details: result.message, metadata: result.trailers ?? new grpc.Metadata() },
      response: undefined,
      trailers: result.trailers,
    });
  }

  private onClose(resetCode: number | undefined): void {
    this.closed = true;
    const unimplemented = this.status === grpc.status.UNIMPLEMENTED;
    if (unimplemented) this.host.refused();
    // REFUSED_STREAM (RFC 9113 8.7): the member processed nothing on it (it was closing).
    const notRun = unimplemented || (resetCode === H2_ERROR.REFUSED_STREAM && this.status === undefined);
    for (const [id, call] of [...this.calls]) {
      if (call.cancelAlone !== undefined) continue;
      if (notRun || !call.written) {
        // Never run by the member: its own stream, with the per-call channel's outcomes.
        clearDeadline(call);
        const alone = this.host.callAlone(call.path, call.request, call.metadata, call.deadlineMs);
        call.cancelAlone = alone.cancel;
        void alone.result.then((result) => {
          this.calls.delete(id);
          call.resolve(result);
        });
        continue;
      }
      const neverSent = !this.connection.connected;
      this.settle(
        id,
        call,
        failure(
          grpc.status.UNAVAILABLE,
          neverSent
            ? `No connection established. Last error: ${this.host.lastError()}`
            : "Connection dropped",
        ),
      );
    }
  }
}

const EMPTY = Buffer.alloc(0);

function failure(code: number, details: string): UnaryResult {
  return {
    error: { code, details, metadata: new grpc.Metadata() },
    response: undefined,
    trailers: undefined,
  };
}

function clearDeadline(call: PendingCall): void {
  if (call.deadline === undefined) return;
  callDeadlines.remove(call.deadline, call.expiry);
  call.deadline = undefined;
}
