// One client port for gRPC (HTTP/2) and HTTP/1.1, as etcd serves them: etcd answers HTTP/1.1 on
// its client port too (/health, /version, the JSON gateway), so the first bytes of a connection
// choose. HTTP/2's connection preface goes to our HTTP/2 server (h2/server-connection.ts; the
// bytes read are put back with unshift), anything else to the HTTP/1.1 server, through a view
// that replays them (Node's HTTP/1 server reads a socket natively and would not see them).
//
// Until 2026-12-06 this also read each connection's first header block, because node:http2
// (nghttp2) resets streams whose :authority is not an RFC 3986 authority, and grpc-go sends the
// endpoint URL there for etcdctl's per-endpoint Maintenance calls (`http://127.0.0.1:2379`).
// Our own HTTP/2 server takes any :authority, as etcd's Go server does, so that is gone.

import type net from "node:net";
import { Duplex } from "node:stream";
import type tls from "node:tls";
import { HTTP2_PREFACE } from "./http2-frames.js";

export interface ClientPortTargets {
  /** Takes an HTTP/2 connection: the socket, its first bytes put back. */
  http2(connection: net.Socket): void;
  /** Takes an HTTP/1.x connection; without it such connections are closed. */
  http1?(connection: Duplex): void;
}

/** Reads the start of a new connection and hands it to the right server (see the file comment). */
export function routeClientConnection(socket: net.Socket, targets: ClientPortTargets): void {
  let buffered: Buffer = Buffer.alloc(0);
  const handOver = (route: () => void) => {
    socket.off("data", onData);
    socket.off("error", onError);
    socket.pause();
    route();
  };
  const onError = () => socket.destroy();
  const onData = (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    const prefix = Math.min(buffered.length, HTTP2_PREFACE.length);
    if (!buffered.subarray(0, prefix).equals(HTTP2_PREFACE.subarray(0, prefix))) {
      handOver(() => {
        if (targets.http1 !== undefined) targets.http1(new ReplayingSocket(socket, buffered));
        else socket.destroy();
      });
      return;
    }
    if (buffered.length < HTTP2_PREFACE.length) return;
    handOver(() => {
      socket.unshift(buffered);
      targets.http2(socket);
    });
  };
  socket.on("data", onData);
  socket.on("error", onError);
}

/**
 * A connection seen through JavaScript: the bytes already read first, then the socket's; what
 * is written goes to the socket untouched.
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
    if (!this.push(chunk)) this.socket.pause();
  }
}
