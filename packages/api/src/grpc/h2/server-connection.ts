// The I/O of one HTTP/2 server connection: socket bytes into H2ServerConnection, its frames out
// as one socket write per event-loop turn, the socket's back-pressure, keepalive timers, and a
// graceful close. The protocol itself is connection.ts.

import type net from "node:net";
import type { Duplex } from "node:stream";
import { type KeepalivePolicy, PingStrikes, TOO_MANY_PINGS } from "../keepalive.js";
import { type ConnectionHandler, H2ServerConnection } from "./connection.js";
import { H2_ERROR } from "./session.js";
import { SocketOutput, socketTaps } from "./socket-output.js";

/** How long a graceful close waits for its PING's ACK before the final GOAWAY. */
const FINAL_GOAWAY_AFTER_MS = 1000;

export interface ServerConnectionOptions {
  windowBytes: number;
  maxConcurrentStreams: number;
  keepalive?: KeepalivePolicy;
}

export class ServerConnection {
  readonly h2: H2ServerConnection;
  private readonly out: SocketOutput;
  private closing = false;
  private closedListeners: (() => void)[] = [];
  private timers: NodeJS.Timeout[] = [];
  private idlePoll: NodeJS.Timeout | undefined;
  isClosed = false;

  constructor(
    /** A socket, or client-port.ts's wrapper around one. */
    readonly socket: Duplex,
    handler: ConnectionHandler,
    options: ServerConnectionOptions,
  ) {
    const keepalive = options.keepalive;
    const strikes =
      keepalive !== undefined && keepalive.minTimeMs > 0 ? new PingStrikes(keepalive.minTimeMs) : undefined;
    this.out = new SocketOutput(
      socket,
      () => this.h2,
      () => this.isClosed,
    );
    this.h2 = new H2ServerConnection(
      {
        output: (bytes) => this.out.push(bytes),
        outputLater: (bytes) => this.out.pushLater(bytes),
        wake: () => this.out.wake(),
        written: (done) => this.out.written(done),
        fail: () => {
          this.out.writeOut();
          this.socket.end();
        },
      },
      {
        stream: handler.stream,
        // grpc-go's enforcement policy (keepalive.ts): too many pings close the connection.
        ping: () => {
          if (strikes?.ping(performance.now(), this.h2.framesSent) !== true || this.closing) return;
          this.h2.goAway(H2_ERROR.ENHANCE_YOUR_CALM, TOO_MANY_PINGS);
          this.close();
        },
      },
      { windowBytes: options.windowBytes, maxConcurrentStreams: options.maxConcurrentStreams },
    );
    socket.on("data", (chunk: Buffer) => {
      socketTaps.data?.(socket, chunk.length);
      this.h2.receive(chunk);
    });
    socket.on("error", () => {});
    socket.on("close", () => this.onSocketClose());
    socket.on("end", () => socket.end());
    if (keepalive !== undefined && keepalive.intervalMs > 0 && keepalive.timeoutMs > 0) {
      let deadline: NodeJS.Timeout | undefined;
      const interval = setInterval(() => {
        if (this.isClosed || deadline !== undefined) return;
        deadline = setTimeout(() => this.destroy(), keepalive.timeoutMs);
        deadline.unref();
        this.h2.ping(() => {
          clearTimeout(deadline);
          deadline = undefined;
        });
      }, keepalive.intervalMs);
      interval.unref();
      this.timers.push(interval);
      this.onClosed(() => clearTimeout(deadline));
    }
  }

  get remoteAddress(): string | undefined {
    return (this.socket as Partial<net.Socket>).remoteAddress;
  }

  /** Runs `listener` once the connection is gone. */
  onClosed(listener: () => void): void {
    if (this.isClosed) listener();
    else this.closedListeners.push(listener);
  }

  /**
   * A graceful close in two steps (RFC 9113 section 6.8; grpc-go's GracefulStop does the same): a
   * GOAWAY that refuses nothing, and a PING. Once its ACK is back, every stream the client sent
   * before it saw that GOAWAY has arrived, and the final GOAWAY names the last of them; the
   * socket ends once every open stream has. In one step, a call that crossed the GOAWAY on the
   * wire was refused, and a client's single transparent retry could meet another stopping server.
   */
  close(): void {
    if (this.isClosed || this.closing) return;
    this.closing = true;
    if (this.h2.goingAway) {
      this.endWhenIdle();
      return;
    }
    this.h2.shutdownNotice();
    let done = false;
    const final = () => {
      if (done) return;
      done = true;
      clearTimeout(unanswered);
      this.h2.goAway();
      this.endWhenIdle();
    };
    // A client that does not answer the PING gets the final GOAWAY anyway.
    const unanswered = setTimeout(final, FINAL_GOAWAY_AFTER_MS);
    unanswered.unref();
    this.timers.push(unanswered);
    this.h2.ping(final);
  }

  destroy(): void {
    this.out.writeOut();
    this.socket.destroy();
  }

  private endWhenIdle(): void {
    if (this.isClosed) return;
    if (this.h2.streams.size === 0) {
      this.out.writeOut();
      this.socket.end();
      return;
    }
    // One poll timer at a time.
    if (this.idlePoll !== undefined) return;
    this.idlePoll = setTimeout(() => {
      this.idlePoll = undefined;
      this.endWhenIdle();
    }, 50);
    this.idlePoll.unref();
  }

  private onSocketClose(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const t of this.timers) clearTimeout(t);
    clearTimeout(this.idlePoll);
    this.h2.destroy();
    for (const listener of this.closedListeners.splice(0)) listener();
  }
}
