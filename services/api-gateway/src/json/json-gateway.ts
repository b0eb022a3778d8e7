// etcd's JSON gateway on the gateway's JSON port and, as on an etcd member, on the gRPC port
// too (HTTP/1.1 connections there are handed to it). The gateway itself is @etcd-ts/api's
// jsonGatewayHandler, the one members serve too; this file gives it the gateway's way of
// making calls (the unary forwarder, the watch and keep-alive coalescers) and serves the
// gateway's /health, /version and /metrics beside it.

import {
  ETCD_CLUSTER_VERSION,
  ETCD_SERVER_VERSION,
  type GatewayStream,
  type GatewayStreamSink,
  type HttpRoute,
  type JsonGatewayBackend,
  jsonGatewayHandler,
} from "@etcd-ts/api";
import { type TraceContext, tracing } from "@etcd-ts/telemetry";
import grpc from "@grpc/grpc-js";
import Fastify, { type FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { TokenGate } from "../auth/token-gate.js";
import type { KeepAliveHub } from "../lease/keepalive-hub.js";
import { openKeepAliveSession } from "../lease/keepalive-proxy.js";
import type { GatewayMetrics } from "../observability/gateway-metrics.js";
import { traceHttpRequest } from "../observability/gateway-tracing.js";
import { CallCancellation, type UnaryForwarder } from "../proxy/unary-forwarder.js";
import { METHOD_BY_PATH } from "../routing/method-table.js";
import type { WatchHub } from "../watch/watch-hub.js";
import { authOf, openWatchSession } from "../watch/watch-proxy.js";

export interface JsonGatewayParts {
  /** Whether the gateway can route writes now (it knows a healthy leader). */
  healthy: () => boolean;
  /** Whether this gateway takes new connections (false once it is shutting down). */
  ready: () => boolean;
  unary: UnaryForwarder;
  watches: WatchHub;
  keepAlives: KeepAliveHub;
  metrics: GatewayMetrics;
  logger: Logger;
  /** Refuses watch streams opened with a bad JWT. */
  tokenGate?: TokenGate | undefined;
}

/**
 * The gateway's calls as the JSON gateway makes them; `clientAddress` is the HTTP client's,
 * passed on with Authenticate (services/auth's failed-login limits).
 */
export function gatewayCallBackend(
  parts: JsonGatewayParts,
  trace?: TraceContext,
  clientAddress?: string,
): JsonGatewayBackend {
  return {
    async unary(route: HttpRoute, request: Buffer, metadata: grpc.Metadata, signal: AbortSignal) {
      const methodRoute = METHOD_BY_PATH.get(route.method.path);
      if (methodRoute === undefined) {
        return { error: { code: grpc.status.UNIMPLEMENTED, details: `unknown method ${route.method.path}` } };
      }
      const cancellation = new CallCancellation();
      signal.addEventListener("abort", () => cancellation.cancel(), { once: true });
      const outcome = await parts.unary.forward(
        methodRoute,
        request,
        metadata,
        undefined,
        cancellation,
        trace,
        clientAddress,
      );
      if (outcome.error !== undefined) return { error: outcome.error };
      return { response: outcome.response ?? Buffer.alloc(0) };
    },

    openStream(route: HttpRoute, metadata: grpc.Metadata, sink: GatewayStreamSink): GatewayStream {
      const methodRoute = METHOD_BY_PATH.get(route.method.path);
      const clientSink = { send: (raw: Buffer) => sink.message(raw) };
      if (methodRoute?.route === "watch") {
        const session = openWatchSession(
          parts.watches,
          clientSink,
          authOf(metadata),
          parts.tokenGate,
          clientAddress,
        );
        return { send: (raw) => session.request(raw), cancel: () => session.close() };
      }
      if (methodRoute?.route === "keepalive") {
        const session = openKeepAliveSession(parts.keepAlives, clientSink, parts.metrics);
        return { send: (raw) => session.request(raw), cancel: () => session.close() };
      }
      // Snapshot and Observe are server streams of large or endless data; nothing uses them
      // over JSON, so the gateway serves them over gRPC only (README).
      queueMicrotask(() =>
        sink.end({
          code: grpc.status.UNIMPLEMENTED,
          details: `etcd-ts gateway: ${route.rpc} is served over gRPC only`,
        }),
      );
      return { send: () => {}, cancel: () => {} };
    },
  };
}

export function createJsonGateway(parts: JsonGatewayParts): FastifyInstance {
  // Fastify's own request logging stays off: the gateway's metrics count requests.
  const app = Fastify({ logger: false });
  // The JSON gateway reads the raw request itself (bodies are streams of JSON values).
  app.addHook("onRequest", async (req, reply) => {
    const url = req.raw.url ?? "";
    if (!url.startsWith("/v3/") && !url.startsWith("/v3beta/")) return;
    reply.hijack();
    if (!tracing.enabled) {
      // One handler per request: it carries the client's address (a closure, cheap to make).
      jsonGatewayHandler(gatewayCallBackend(parts, undefined, req.ip))(req.raw, reply.raw);
      return;
    }
    // Traced: a span per request, ended when the answer is sent; the calls carry its context.
    const res = reply.raw;
    void traceHttpRequest(
      req.raw.method ?? "POST",
      url.split("?")[0]!,
      req.headers,
      (trace) =>
        new Promise<void>((resolve) => {
          res.once("close", resolve);
          jsonGatewayHandler(gatewayCallBackend(parts, trace, req.ip))(req.raw, res);
        }),
      () => res.statusCode,
    );
  });

  // etcd's /health body; the gateway is healthy when it can reach the cluster's leader.
  app.get("/health", async (_req, reply) => {
    const healthy = parts.healthy();
    reply.code(healthy ? 200 : 503).header("content-type", "application/json");
    return JSON.stringify({ health: String(healthy) });
  });

  // Readiness for a balancer (etcd 3.5's /readyz path; "ok" as there): 503 from the moment a
  // SIGTERM starts the shutdown delay, so new connections go to other replicas before the
  // listener closes. Not tied to the cluster's health: a balancer must not drop every gateway
  // while the members elect a leader.
  app.get("/readyz", async (_req, reply) => {
    const ready = parts.ready();
    reply.code(ready ? 200 : 503).header("content-type", "text/plain");
    return ready ? "ok" : "shutting down";
  });

  // Patroni and other tools choose their API by the version a member reports; the gateway speaks
  // for the members behind it.
  const version = JSON.stringify({ etcdserver: ETCD_SERVER_VERSION, etcdcluster: ETCD_CLUSTER_VERSION });
  app.get("/version", async (_req, reply) => {
    reply.header("content-type", "application/json");
    return version;
  });

  app.get("/metrics", async (_req, reply) => {
    reply.header("content-type", parts.metrics.registry.contentType);
    return parts.metrics.exposition();
  });
  return app;
}
