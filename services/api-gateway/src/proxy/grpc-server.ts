// The gRPC front door: every etcd method registered with pass-through codecs, so request
// and response bodies stay bytes from the client's socket to the member's and back.

import grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { passThrough } from "../cluster/upstream-client.js";
import type { KeepAliveHub } from "../lease/keepalive-hub.js";
import { handleKeepAliveCall } from "../lease/keepalive-proxy.js";
import type { GatewayMetrics } from "../observability/gateway-metrics.js";
import { METHOD_ROUTES, type MethodRoute } from "../routing/method-table.js";
import type { WatchHub } from "../watch/watch-hub.js";
import { handleWatchCall } from "../watch/watch-proxy.js";
import type { OpenStreams } from "./open-streams.js";
import type { StreamForwarder } from "./stream-forwarder.js";
import { CallCancellation, type UnaryForwarder } from "./unary-forwarder.js";

export interface GrpcParts {
  unary: UnaryForwarder;
  streams: StreamForwarder;
  watches: WatchHub;
  keepAlives: KeepAliveHub;
  metrics: GatewayMetrics;
  logger: Logger;
  openStreams: OpenStreams;
}

export function createGrpcServer(parts: GrpcParts): grpc.Server {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": -1,
    "grpc.max_send_message_length": -1,
    // etcd clients ping every 10-30 s without calls (clientv3 keepalive); allow it.
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.min_ping_interval_without_data_ms": 5_000,
    // Channelz bookkeeping runs on every call; nothing here reads it.
    "grpc.enable_channelz": 0,
  });
  for (const route of METHOD_ROUTES) register(server, route, parts);
  return server;
}

function register(server: grpc.Server, route: MethodRoute, parts: GrpcParts): void {
  const name = route.path;
  switch (route.route) {
    case "watch":
      server.register(
        name,
        (call: grpc.ServerDuplexStream<Buffer, Buffer>) =>
          handleWatchCall(parts.watches, call, parts.logger, parts.openStreams),
        passThrough,
        passThrough,
        "bidi",
      );
      return;
    case "keepalive":
      server.register(
        name,
        (call: grpc.ServerDuplexStream<Buffer, Buffer>) =>
          handleKeepAliveCall(parts.keepAlives, call, parts.metrics, parts.openStreams),
        passThrough,
        passThrough,
        "bidi",
      );
      return;
  }
  if (route.shape === "server-stream") {
    server.register(
      name,
      (call: grpc.ServerWritableStream<Buffer, Buffer>) => void parts.streams.relay(route, call),
      passThrough,
      passThrough,
      "serverStream",
    );
    return;
  }
  server.register(
    name,
    (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      const cancellation = new CallCancellation();
      call.once("cancelled", () => cancellation.cancel());
      parts.unary.forward(route, call.request, call.metadata, call.getDeadline(), cancellation).then(
        (outcome) => {
          if (outcome.error !== undefined) callback(outcome.error);
          else callback(null, outcome.response, outcome.trailers);
        },
        (err: unknown) => {
          parts.logger.error({ err, method: name }, "forwarding failed");
          callback({ code: grpc.status.INTERNAL, details: "etcd-ts gateway: internal error" });
        },
      );
    },
    passThrough,
    passThrough,
    "unary",
  );
}
