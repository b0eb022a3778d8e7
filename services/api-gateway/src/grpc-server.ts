// The gRPC front door: every etcd method on a node:http2 server that hands handlers the
// request bytes, so request and response bodies stay bytes from the client's socket to the
// member's and back (@etcd-ts/api's GrpcHttp2Server: why not grpc-js's server is there).

import type http from "node:http";
import { GrpcHttp2Server, type ServerCall, type ServerTls, type TlsRejection } from "@etcd-ts/api";
import {
  GrpcServerMetrics,
  serverObserver,
  traceContextOf,
  traceLogFields,
  tracing,
} from "@etcd-ts/telemetry";
import grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { TokenGate } from "./auth/token-gate.js";
import type { KeepAliveHub } from "./lease/keepalive-hub.js";
import { handleKeepAliveCall } from "./lease/keepalive-proxy.js";
import type { GatewayMetrics } from "./observability/gateway-metrics.js";
import { AUTHENTICATE_PATH } from "./proxy/auth-service-forwarder.js";
import type { OpenStreams } from "./proxy/open-streams.js";
import type { StreamForwarder } from "./proxy/stream-forwarder.js";
import { CallCancellation, type UnaryForwarder } from "./proxy/unary-forwarder.js";
import { METHOD_ROUTES, type MethodRoute } from "./routing/method-table.js";
import type { WatchHub } from "./watch/watch-hub.js";
import { handleWatchCall } from "./watch/watch-proxy.js";

export interface GrpcParts {
  unary: UnaryForwarder;
  streams: StreamForwarder;
  watches: WatchHub;
  keepAlives: KeepAliveHub;
  metrics: GatewayMetrics;
  logger: Logger;
  openStreams: OpenStreams;
  /**
   * Refuses Watch streams opened with a bad JWT (unary calls and server streams: their
   * forwarders' own). Keep-alive streams carry none a member would read (etcd checks none).
   */
  tokenGate?: TokenGate | undefined;
  /** HTTP/1.1 requests on the gRPC port (etcd's port serves both): the JSON gateway. */
  http1?: http.RequestListener;
  /** TLS to clients (--cert-file ...); refused connections go to `onTlsRejected`. */
  tls?: ServerTls | undefined;
  onTlsRejected?: (rejection: TlsRejection) => void;
}

export function createGrpcServer(parts: GrpcParts): GrpcHttp2Server {
  const server = new GrpcHttp2Server({
    observer: serverObserver(new GrpcServerMetrics(parts.metrics.registry)),
    ...(parts.http1 === undefined ? {} : { http1: parts.http1 }),
    ...(parts.tls === undefined ? {} : { tls: parts.tls }),
    ...(parts.onTlsRejected === undefined ? {} : { onTlsRejected: parts.onTlsRejected }),
  });
  for (const route of METHOD_ROUTES) register(server, route, parts);
  return server;
}

function register(server: GrpcHttp2Server, route: MethodRoute, parts: GrpcParts): void {
  switch (route.route) {
    case "watch":
      server.register(route.path, {
        kind: "bidi",
        handle: (call) =>
          handleWatchCall(parts.watches, call, parts.logger, parts.openStreams, parts.tokenGate),
      });
      return;
    case "keepalive":
      server.register(route.path, {
        kind: "bidi",
        handle: (call) => handleKeepAliveCall(parts.keepAlives, call, parts.metrics, parts.openStreams),
      });
      return;
  }
  if (route.shape === "server-stream") {
    server.register(route.path, {
      kind: "server-stream",
      handle: (call) => void parts.streams.relay(route, call),
    });
    return;
  }
  server.register(route.path, { kind: "unary", handle: (call) => forwardUnary(route, call, parts) });
}

function forwardUnary(route: MethodRoute, call: ServerCall, parts: GrpcParts): void {
  const cancellation = new CallCancellation();
  call.once("cancelled", () => cancellation.cancel());
  // Only Authenticate needs the client's address (the auth service's per-address budget): the
  // socket lookup stays off every other call.
  const client = route.path === AUTHENTICATE_PATH ? call.remoteAddress : undefined;
  const trace = tracing.enabled ? traceContextOf(call) : undefined;
  parts.unary.forward(route, call.request, call.metadata, call.deadline, cancellation, trace, client).then(
    (outcome) => {
      if (outcome.error !== undefined) call.finish(outcome.error);
      else {
        call.sendMessage(outcome.response!);
        call.finish({ code: grpc.status.OK, metadata: outcome.trailers });
      }
    },
    (err: unknown) => {
      parts.logger.error({ err, method: route.path, ...traceLogFields(trace) }, "forwarding failed");
      call.finish({ code: grpc.status.INTERNAL, details: "etcd-ts gateway: internal error" });
    },
  );
}
