// Serving a grpc-js server on a socket we own. grpc-js's bindAsync leaves Nagle's algorithm on
// for accepted connections (it has no option for TCP_NODELAY; Go, and so etcd, turns Nagle off
// on every TCP connection). With Nagle on, the second small write of an answer (DATA after
// HEADERS, or the trailers) waits for the client's delayed ACK: on loopback that cost about
// 0.2-1 ms per call and halved the throughput of serializable reads. Listening ourselves and
// injecting each connection into the server (grpc-js's public createConnectionInjector) keeps
// grpc-js's HTTP/2 and TLS handling while the socket has TCP_NODELAY.

import net from "node:net";
import type { Server, ServerCredentials } from "@grpc/grpc-js";
import { createTlsServer, type ServerTls, type TlsRejection } from "../tls/server-tls.js";

export interface GrpcListener {
  /** The bound TCP port (0 for a unix socket). */
  readonly port: number;
  /**
   * Stops accepting connections. Connections already open are the server's: they end with
   * its tryShutdown()/forceShutdown().
   */
  close(): void;
}

/** `host:port`, `[v6]:port` or `unix:path`, as grpc-js's bindAsync takes them. */
export function parseGrpcTarget(target: string): net.ListenOptions {
  if (target.startsWith("unix:")) return { path: target.slice("unix:".length).replace(/^\/\/(?=\/)/, "") };
  const colon = target.lastIndexOf(":");
  if (colon < 0) throw new Error(`listen address ${target}: expected host:port`);
  const host = target.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  const port = Number(target.slice(colon + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`listen address ${target}: bad port`);
  }
  return { host: host === "" ? undefined : host, port };
}

/**
 * With `tls`, TLS is ours (tls/server-tls.ts: etcd's CRL and allowed-CN checks, its log line for
 * refused connections) and grpc-js gets the decrypted connections; `credentials` must then be
 * insecure ones.
 */
export async function listenGrpc(
  server: Server,
  target: string,
  credentials: ServerCredentials,
  tls?: { config: ServerTls; rejected(rejection: TlsRejection): void },
): Promise<GrpcListener> {
  const injector = server.createConnectionInjector(credentials);
  const listener =
    tls === undefined
      ? net.createServer({ noDelay: true }, (socket) => injector.injectConnection(socket))
      : createTlsServer(tls.config, ["h2"], {
          secure: (socket) => injector.injectConnection(socket),
          rejected: tls.rejected,
        });
  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(parseGrpcTarget(target), () => {
      listener.off("error", reject);
      resolve();
    });
  });
  const address = listener.address();
  return {
    port: typeof address === "object" && address !== null ? address.port : 0,
    close: () => {
      listener.close();
    },
  };
}
