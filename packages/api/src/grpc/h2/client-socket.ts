// The I/O of one HTTP/2 client connection (the peer transport's calls to a peer, the gateway's
// to a member): the socket dialled (TCP or TLS with ALPN h2), its bytes into
// H2ClientConnection, the core's frames out as one socket write per event-loop turn
// (SocketOutput), a keepalive PING, and the socket's end. The protocol itself is
// client-connection.ts.

import net from "node:net";
import tls from "node:tls";
import { H2ClientConnection } from "./client-connection.js";
import { RecycledReads, readInTurns, SocketOutput } from "./socket-output.js";

/** What a TLS dial offers and checks (undefined fields: node's defaults). */
export interface ClientTls {
  ca?: string | Buffer | (string | Buffer)[];
  cert?: string | Buffer;
  key?: string | Buffer;
  /** false: the server's certificate is not verified (etcd's auto-TLS). */
  rejectUnauthorized?: boolean;
}

export interface DialOptions {
  /** A URL's hostname: an IPv6 address in brackets (as URL gives it) or without. */
  host: string;
  port: number;
  /** Dial over TLS; undefined: plain TCP. */
  tls?: ClientTls;
  /** Our receive window per stream and for the connection. */
  windowBytes: number;
  /**
   * Plain TCP only: the socket reads into buffers that are reused (RecycledReads), and every
   * stream's `data` handler must `hold` what it keeps of a chunk past its return (the gateway's
   * Range lane: a relayed answer's DATA until written on).
   */
  recycleReads?: boolean;
  /** A PING every `intervalMs`; unanswered for `timeoutMs`, the connection is destroyed. */
  keepalive?: { intervalMs: number; timeoutMs: number };
  /** The connection (TCP, and TLS with h2 agreed) is up. */
  connected?(): void;
  /** The server's first SETTINGS arrived: it took the connection (H2ClientConnection's `accepted`). */
  accepted?(): void;
  /** The server's GOAWAY: no new streams on this connection. */
  goAway?(): void;
  /** The socket closed (every stream has ended). */
  closed?(): void;
}

export class ClientSocketConnection {
  readonly h2: H2ClientConnection;
  readonly socket: net.Socket;
  private readonly out: SocketOutput;
  /** The connection came up (`DialOptions.connected`): a request written may have reached the server. */
  connected = false;
  /** The socket closed. */
  closed = false;
  /** Why the connection failed, for the calls it ends. */
  error = "";
  /** The socket error's code (`ECONNREFUSED`: nothing listens there), if it failed with one. */
  errorCode = "";
  private keepalive: NodeJS.Timeout | undefined;
  private readonly reads: RecycledReads | undefined;

  constructor(private readonly options: DialOptions) {
    const host = options.host.replace(/^\[(.*)\]$/, "$1");
    const port = options.port;
    const secure = options.tls;
    let socket: net.Socket;
    if (secure === undefined) {
      // Nagle's algorithm would hold a request's DATA back until the previous segment is
      // acknowledged (Go, and so etcd, turns it off on every connection).
      this.reads = options.recycleReads
        ? new RecycledReads((bytes) => this.h2.receive(bytes, true))
        : undefined;
      socket = net.connect({
        host,
        port,
        noDelay: true,
        ...(this.reads === undefined ? {} : { onread: this.reads.onread }),
      });
      socket.once("connect", () => this.onConnected());
    } else {
      const t = tls.connect({
        host,
        port,
        ALPNProtocols: ["h2"],
        ...(net.isIP(host) === 0 ? { servername: host } : {}),
        ...(secure.ca !== undefined ? { ca: secure.ca } : {}),
        ...(secure.cert !== undefined ? { cert: secure.cert } : {}),
        ...(secure.key !== undefined ? { key: secure.key } : {}),
        ...(secure.rejectUnauthorized !== undefined ? { rejectUnauthorized: secure.rejectUnauthorized } : {}),
      });
      t.setNoDelay(true);
      t.once("secureConnect", () => {
        if (t.alpnProtocol !== "h2") {
          t.destroy(new Error(`the server did not agree to HTTP/2 (ALPN ${String(t.alpnProtocol)})`));
          return;
        }
        this.onConnected();
      });
      socket = t;
    }
    this.socket = socket;
    this.out = new SocketOutput(
      socket,
      () => this.h2,
      () => this.closed,
    );
    this.h2 = new H2ClientConnection(
      {
        output: (bytes) => this.out.push(bytes),
        wake: () => this.out.wake(),
        written: (done) => this.out.written(done),
        fail: (_code, reason) => {
          this.error ||= reason;
          this.out.writeOut();
          socket.destroy();
        },
      },
      {
        windowBytes: options.windowBytes,
        goAway: () => options.goAway?.(),
        accepted: () => options.accepted?.(),
      },
    );
    // A member's large answer (the gateway relaying a full list) no longer holds the loop for
    // libuv's whole run of reads on this socket (readInTurns).
    if (this.reads !== undefined) this.reads.attach(socket);
    else readInTurns(socket, (chunk) => this.h2.receive(chunk));
    socket.on("error", (err) => {
      this.error ||= err.message;
      this.errorCode ||= (err as NodeJS.ErrnoException).code ?? "";
    });
    socket.on("end", () => socket.end());
    socket.on("close", () => {
      this.closed = true;
      clearInterval(this.keepalive);
      this.h2.destroy();
      options.closed?.();
    });
  }

  /**
   * From a stream's `data` handler: keeps `chunk`'s memory from reuse until the returned function
   * runs (DialOptions.recycleReads). undefined: nothing to release (not a recycled read).
   */
  hold(chunk: Uint8Array): (() => void) | undefined {
    return this.reads?.hold(chunk);
  }

  /** Whether new requests may go on this connection. */
  get usable(): boolean {
    return !this.closed && !this.h2.goingAway && !this.h2.dead;
  }

  /**
   * Writes what the streams have queued now rather than at the end of this turn (SocketOutput):
   * for a caller whose bytes are on a latency path and who has nothing more to add this turn.
   */
  flush(): void {
    this.out.writeOut();
  }

  /** Destroys the socket (its streams end at once); `reason` for the calls it ends. */
  destroy(reason?: string): void {
    if (reason !== undefined) this.error ||= reason;
    this.socket.destroy();
  }

  /**
   * A graceful close: no new streams (our GOAWAY); the socket ends once the streams open have,
   * polled as ServerConnection's close polls.
   */
  close(): void {
    if (this.closed) return;
    if (!this.h2.goingAway) this.h2.goAway();
    if (this.h2.streams.size === 0 || !this.connected) {
      this.end();
      return;
    }
    setTimeout(() => this.close(), 50).unref();
  }

  /**
   * Ends the connection: its calls end at once, the socket with a FIN rather than a reset
   * (destroying a socket with unread bytes resets it, which the server logs as an error).
   */
  end(): void {
    this.h2.destroy();
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  private onConnected(): void {
    this.connected = true;
    const keepalive = this.options.keepalive;
    if (keepalive !== undefined && !this.closed) {
      // A server that vanished without closing its socket (power, partition) is found by ping.
      this.keepalive = setInterval(() => this.ping(keepalive.timeoutMs), keepalive.intervalMs);
      this.keepalive.unref();
    }
    this.options.connected?.();
  }

  private ping(timeoutMs: number): void {
    if (this.closed || !this.h2.settled) return;
    const deadline = setTimeout(() => this.destroy("keepalive ping not answered"), timeoutMs);
    deadline.unref();
    this.h2.ping(() => clearTimeout(deadline));
  }
}
