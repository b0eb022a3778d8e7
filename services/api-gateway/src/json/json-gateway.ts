// etcd's JSON gateway (POST /v3/..., and the /v3beta/ aliases etcd 3.4 still serves), on a
// port of its own and, as on an etcd member, on the gRPC port too (HTTP/1.1 connections there
// are handed to it): JSON in, wire bytes through the same routing as gRPC calls, JSON out.
// JSON <-> wire is @etcd-ts/api's codec (jsonToWire/wireToJson), the one the project has.
// Streaming RPCs answer with newline-delimited {"result": ...} objects, as grpc-gateway.

import {
  ETCD_CLUSTER_VERSION,
  ETCD_SERVER_VERSION,
  HTTP_ROUTES,
  httpStatusForGrpcCode,
  jsonToWire,
  wireToJson,
} from "@etcd-ts/api";
import { type TraceContext, tracing } from "@etcd-ts/telemetry";
import grpc from "@grpc/grpc-js";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { Logger } from "pino";
import type { KeepAliveHub } from "../lease/keepalive-hub.js";
import { openKeepAliveSession } from "../lease/keepalive-proxy.js";
import type { GatewayMetrics } from "../observability/gateway-metrics.js";
import { traceHttpRequest } from "../observability/gateway-tracing.js";
import { CallCancellation, type UnaryForwarder } from "../proxy/unary-forwarder.js";
import { METHOD_BY_PATH, type MethodRoute } from "../routing/method-table.js";
import type { WatchHub } from "../watch/watch-hub.js";
import { authOf, openWatchSession } from "../watch/watch-proxy.js";
import { parseJsonValues } from "./json-body.js";

export interface JsonGatewayParts {
  /** Whether the gateway can route writes now (it knows a healthy leader). */
  healthy: () => boolean;
  unary: UnaryForwarder;
  watches: WatchHub;
  keepAlives: KeepAliveHub;
  metrics: GatewayMetrics;
  logger: Logger;
}

/** grpc-gateway's error body; etcd clients (etcd3gw, curl scripts) read `error` and `code`. */
export function errorBody(code: number, message: string): string {
  return JSON.stringify({ error: message, message, code });
}

const CORS_HEADERS = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "POST, GET, OPTIONS, PUT, DELETE",
  "access-control-allow-headers": "accept, content-type, authorization",
};

export function createJsonGateway(parts: JsonGatewayParts): FastifyInstance {
  // Fastify's own request logging stays off: the gateway's metrics count requests.
  const app = Fastify({ logger: false, bodyLimit: 8 * 1024 * 1024 });
  // Bodies are parsed here, not by fastify: a malformed body must get etcd's 400 answer,
  // and streaming bodies hold several JSON values.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "string" }, (_req, body, done) => done(null, body));
  app.addHook("onSend", async (_req, reply) => {
    reply.headers(CORS_HEADERS);
  });

  for (const httpRoute of HTTP_ROUTES) {
    const route = METHOD_BY_PATH.get(httpRoute.method.path);
    if (route === undefined) continue;
    const { requestType, responseType } = httpRoute;
    if (route.route === "watch") {
      app.post(httpRoute.path, (req, reply) => serveWatch(parts, requestType, responseType, req, reply));
    } else if (route.route === "keepalive") {
      app.post(httpRoute.path, (req, reply) => serveKeepAlive(parts, requestType, responseType, req, reply));
    } else if (route.shape === "unary") {
      const path = httpRoute.path;
      app.post(path, (req, reply) =>
        tracing.enabled
          ? traceHttpRequest(
              "POST",
              path,
              req.headers.traceparent,
              (trace) => serveUnary(parts, route, requestType, responseType, req, reply, trace),
              () => reply.statusCode,
            )
          : serveUnary(parts, route, requestType, responseType, req, reply),
      );
    }
    // Snapshot and Observe are server streams of large or endless data; etcd serves them
    // over JSON too, but nothing uses them there, so they are gRPC-only here (README).
  }

  // etcd's /health body; the gateway is healthy when it can reach the cluster's leader.
  app.get("/health", async (_req, reply) => {
    const healthy = parts.healthy();
    reply.code(healthy ? 200 : 503).header("content-type", "application/json");
    return JSON.stringify({ health: String(healthy) });
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
    return parts.metrics.registry.metrics();
  });
  return app;
}

function metadataOf(req: FastifyRequest): grpc.Metadata {
  const md = new grpc.Metadata();
  const authorization = req.headers.authorization;
  if (typeof authorization === "string") md.set("authorization", authorization);
  return md;
}

function bodyText(req: FastifyRequest): string {
  return typeof req.body === "string" ? req.body : "";
}

async function serveUnary(
  parts: JsonGatewayParts,
  route: MethodRoute,
  requestType: string,
  responseType: string,
  req: FastifyRequest,
  reply: FastifyReply,
  trace?: TraceContext,
): Promise<void> {
  let request: Buffer;
  try {
    const [json] = parseJsonValues(bodyText(req));
    request = jsonToWire(requestType, json);
  } catch (err) {
    return sendError(reply, 400, grpc.status.INVALID_ARGUMENT, (err as Error).message);
  }
  const cancellation = new CallCancellation();
  // The response's close before it finished means the client went away.
  reply.raw.once("close", () => {
    if (!reply.raw.writableFinished) cancellation.cancel();
  });
  const outcome = await parts.unary.forward(route, request, metadataOf(req), undefined, cancellation, trace);
  if (outcome.error !== undefined) {
    const { code, details } = outcome.error;
    return sendError(reply, httpStatusForGrpcCode(code), code, details);
  }
  reply.header("content-type", "application/json");
  reply.send(JSON.stringify(wireToJson(responseType, outcome.response ?? Buffer.alloc(0))));
}

function sendError(reply: FastifyReply, httpStatus: number, code: number, message: string): void {
  reply.code(httpStatus).header("content-type", "application/json").send(errorBody(code, message));
}

/** Starts a newline-delimited JSON stream on the raw response. */
function openStream(reply: FastifyReply): (line: string) => void {
  reply.hijack();
  reply.raw.writeHead(200, { "content-type": "application/json", ...CORS_HEADERS });
  return (line) => {
    if (!reply.raw.writableEnded) reply.raw.write(`${line}\n`);
  };
}

function parseStreamRequests(
  requestType: string,
  req: FastifyRequest,
  reply: FastifyReply,
): Buffer[] | undefined {
  try {
    return parseJsonValues(bodyText(req)).map((json) => jsonToWire(requestType, json));
  } catch (err) {
    sendError(reply, 400, grpc.status.INVALID_ARGUMENT, (err as Error).message);
    return undefined;
  }
}

function serveWatch(
  parts: JsonGatewayParts,
  requestType: string,
  responseType: string,
  req: FastifyRequest,
  reply: FastifyReply,
): void {
  const requests = parseStreamRequests(requestType, req, reply);
  if (requests === undefined) return;
  const write = openStream(reply);
  const session = openWatchSession(
    parts.watches,
    { send: (raw) => write(JSON.stringify({ result: wireToJson(responseType, raw) })) },
    authOf(metadataOf(req)),
  );
  // As in etcd, the end of the request body does not end the watch: the client does.
  reply.raw.once("close", () => session.close());
  for (const raw of requests) session.request(raw);
}

function serveKeepAlive(
  parts: JsonGatewayParts,
  requestType: string,
  responseType: string,
  req: FastifyRequest,
  reply: FastifyReply,
): void {
  const requests = parseStreamRequests(requestType, req, reply);
  if (requests === undefined) return;
  const write = openStream(reply);
  let outstanding = requests.length;
  // etcd answers each keep-alive in the body, then ends the stream with the body.
  const session = openKeepAliveSession(
    parts.keepAlives,
    {
      send: (raw) => {
        write(JSON.stringify({ result: wireToJson(responseType, raw) }));
        if (--outstanding === 0) {
          session.close();
          reply.raw.end();
        }
      },
    },
    parts.metrics,
  );
  reply.raw.once("close", () => session.close());
  for (const raw of requests) session.request(raw);
}
