// One stream from the gateway to a member, as the watch and keep-alive hubs use it: raw message
// bytes both ways, the stream's end reported once with its status (a failure is logged; an
// UNAVAILABLE member is marked down and the directory refreshed, so the hub's next pick avoids
// it), and timers that never keep the process alive.
//
// Server-streaming calls (Snapshot) use it too: one request, then `end`, and `pause`/`resume`
// for a slow client.
//
// It runs on the member's channel (member-channel.ts, our own HTTP/2 client), not grpc-js:
// grpc-js handed each answer on in a task of its own, so every keep-alive answer cost the
// gateway a socket write to its client (~0.9 writes per keep-alive at 100 clients); here a
// DATA chunk's messages are handed on in one go, and the clients' answers of that turn leave
// in one write per connection. The requests of one turn leave in one DATA frame as well.
import {
  type ClientSocketConnection,
  type ClientStreamEvents,
  frameGrpcMessage,
  H2_ERROR,
  type H2ClientStream,
  MessageDeframer,
} from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { AnswerStatus, type MemberChannel } from "./member-channel.js";
import type { MemberDirectory } from "./member-directory.js";

export interface UpstreamStream {
  /** Writes one request (ignored once the stream has ended). */
  send(request: Buffer): void;
  /** Half-closes: no more requests (after those sent). */
  end(): void;
  /** Stops reading the member's answers (its stream window is not replenished) until `resume`. */
  pause(): void;
  resume(): void;
  /** Cancels the stream; its end is then not reported. */
  close(): void;
}

export interface UpstreamStreamOptions {
  members: MemberDirectory;
  memberId: string;
  /** The gRPC method, e.g. "/etcdserverpb.Watch/Watch". */
  path: string;
  metadata: grpc.Metadata;
  logger: Logger;
  /** Names the stream in the log line: "upstream <what> stream ended". */
  what: string;
  onMessage(message: Buffer): void;
  onEnd(status: grpc.StatusObject): void;
  /** Each request written (metrics). */
  onSend?: () => void;
  /** The call's deadline (Date.now() ms): sent as grpc-timeout, and the stream ends DEADLINE_EXCEEDED there. */
  deadlineMs?: number;
  /**
   * Hand messages on after the I/O callbacks of the turn that read them (setImmediate), in
   * order, the end behind them, instead of during the read. The watch hub's: a member's answer
   * to a put and that put's events often arrive in one chunk of the one connection, and the
   * answer, settled by a promise, would otherwise reach its client only after the events' whole
   * fan-out (10,000 watchers: ~15 ms).
   */
  afterIo?: boolean;
}

/** The stream, or undefined when the directory has no channel for the member or it takes no stream now. */
export function openUpstreamStream(options: UpstreamStreamOptions): UpstreamStream | undefined {
  const channel = options.members.channelFor(options.memberId);
  if (channel === undefined) return undefined;
  const relay = new RelayedStream(options, channel);
  const opened = channel.openStream(options.path, options.metadata, relay.events, options.deadlineMs);
  if (opened === undefined) return undefined;
  relay.start(opened.stream, opened.connection);
  return relay;
}

class RelayedStream implements UpstreamStream {
  private stream!: H2ClientStream;
  private connection!: ClientSocketConnection;
  private readonly inbox = new MessageDeframer();
  private outbox: Buffer[] = [];
  private flushScheduled = false;
  private endAfterFlush = false;
  private deadlineTimer: NodeJS.Timeout | undefined;
  /** Ended or cancelled: nothing more is sent or reported. */
  private ended = false;
  /** Cancelled (close): messages read but not handed on yet are dropped too. */
  private cancelled = false;
  /** afterIo: messages read, to be handed on by the scheduled handOn. */
  private arrived: Buffer[] = [];
  private handOnScheduled = false;
  /** afterIo: the end, reported once the messages read before it are handed on. */
  private endStatus: grpc.StatusObject | undefined;
  private readonly answer = new AnswerStatus();

  /** What the HTTP/2 stream reports. */
  readonly events: ClientStreamEvents = {
    headers: (h) => this.answer.read(h),
    data: (chunk) => this.onData(chunk),
    close: (resetCode) => this.onClose(resetCode),
    drain: () => {},
  };

  constructor(
    private readonly options: UpstreamStreamOptions,
    private readonly channel: MemberChannel,
  ) {}

  start(stream: H2ClientStream, connection: ClientSocketConnection): void {
    this.stream = stream;
    this.connection = connection;
    const { deadlineMs } = this.options;
    if (deadlineMs !== undefined) {
      this.deadlineTimer = setTimeout(
        () => {
          if (this.answer.code !== undefined || this.ended) return;
          this.answer.code = grpc.status.DEADLINE_EXCEEDED;
          this.answer.details = "Deadline exceeded";
          this.stream.reset(H2_ERROR.CANCEL);
        },
        Math.max(0, deadlineMs - Date.now()),
      );
    }
  }

  send(request: Buffer): void {
    if (this.ended) return;
    this.options.onSend?.();
    this.outbox.push(frameGrpcMessage(request));
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    process.nextTick(() => this.flush());
  }

  end(): void {
    if (this.ended) return;
    if (this.flushScheduled) this.endAfterFlush = true;
    else this.stream.end();
  }

  pause(): void {
    this.stream.pauseReading();
  }

  resume(): void {
    this.stream.resumeReading();
  }

  close(): void {
    this.cancelled = true;
    this.arrived = [];
    this.endStatus = undefined;
    if (this.ended) return;
    this.ended = true;
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    this.stream.reset(H2_ERROR.CANCEL);
  }

  private flush(): void {
    this.flushScheduled = false;
    const frames = this.outbox;
    this.outbox = [];
    if (this.ended) return;
    if (frames.length > 0) this.stream.write(frames.length === 1 ? frames[0]! : Buffer.concat(frames));
    if (this.endAfterFlush) this.stream.end();
  }

  /** Every whole message of the chunk is handed on now, in this turn. */
  private onData(chunk: Buffer): void {
    if (this.ended) return;
    this.inbox.push(chunk);
    while (!this.ended) {
      let message: Buffer | undefined;
      try {
        message = this.inbox.next();
      } catch {
        // A compressed message: we asked for none.
        this.answer.code = grpc.status.INTERNAL;
        this.answer.details = "etcd-ts gateway: compressed message from a member";
        this.stream.reset(H2_ERROR.PROTOCOL_ERROR);
        return;
      }
      if (message === undefined) return;
      if (this.options.afterIo !== true) {
        this.options.onMessage(message);
        continue;
      }
      this.arrived.push(message);
      if (!this.handOnScheduled) {
        this.handOnScheduled = true;
        setImmediate(() => this.handOn());
      }
    }
  }

  /** afterIo: the messages read since the last call, in order, then the end if it came. */
  private handOn(): void {
    this.handOnScheduled = false;
    const messages = this.arrived;
    this.arrived = [];
    for (const message of messages) {
      if (this.cancelled) return;
      this.options.onMessage(message);
    }
    const status = this.endStatus;
    this.endStatus = undefined;
    if (status !== undefined && !this.cancelled) this.options.onEnd(status);
  }

  /** The stream is gone: its status, or why it has none (grpc-js's wording). */
  private onClose(resetCode: number | undefined): void {
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    this.channel.streamEnded();
    if (this.ended) return;
    this.ended = true;
    const status = this.statusAtEnd(resetCode);
    const { logger, memberId, members } = this.options;
    if (status.code !== grpc.status.OK) {
      logger.warn(
        { member: memberId, code: status.code, details: status.details },
        `upstream ${this.options.what} stream ended`,
      );
      if (status.code === grpc.status.UNAVAILABLE) members.markDown(memberId);
      void members.refresh();
    }
    if (this.handOnScheduled) this.endStatus = status;
    else this.options.onEnd(status);
  }

  private statusAtEnd(resetCode: number | undefined): grpc.StatusObject {
    const { code, details, trailers, httpStatus } = this.answer;
    const metadata = trailers ?? new grpc.Metadata();
    if (code !== undefined) return { code, details, metadata };
    if (!this.connection.connected) {
      return {
        code: grpc.status.UNAVAILABLE,
        details: this.channel.notConnectedError(this.connection),
        metadata,
      };
    }
    if (resetCode !== undefined && resetCode !== H2_ERROR.REFUSED_STREAM && this.connection.usable) {
      return { code: grpc.status.INTERNAL, details: `Received RST_STREAM with code ${resetCode}`, metadata };
    }
    const dropped = httpStatus === 200 || httpStatus === 0;
    return {
      code: grpc.status.UNAVAILABLE,
      details: dropped ? "Connection dropped" : `Received HTTP status code ${httpStatus}`,
      metadata,
    };
  }
}

/** Runs `fn` after `delayMs` without holding the process open; returns the cancel. */
export function unrefTimer(delayMs: number, fn: () => void): () => void {
  const timer = setTimeout(fn, delayMs);
  timer.unref();
  return () => clearTimeout(timer);
}
