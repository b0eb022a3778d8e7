// The JSON gateway's calls made over a gRPC channel, with wire bytes both ways: how an etcd
// member serves its gateway (grpc-gateway dials the member's own client port over loopback).
// The calls then take the gRPC path exactly as a gRPC client's do: same validation, auth,
// limits (--max-concurrent-streams holds for the gateway's one connection, as in etcd) and
// grpc_server_* metrics.

import grpc from "@grpc/grpc-js";
import type { HttpRoute } from "../gen/http-routes.js";
import type {
  GatewayStream,
  GatewayStreamSink,
  GatewayUnaryOutcome,
  JsonGatewayBackend,
} from "./json-gateway.js";

const passThrough = (bytes: Buffer): Buffer => bytes;

/** Channel options for a gateway's channel: no message size limits of the client's own. */
export const GATEWAY_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  "grpc.max_receive_message_length": -1,
  "grpc.max_send_message_length": -1,
};

export function grpcClientBackend(client: grpc.Client): JsonGatewayBackend {
  return {
    unary(route: HttpRoute, request: Buffer, metadata: grpc.Metadata, signal: AbortSignal) {
      return new Promise<GatewayUnaryOutcome>((resolve) => {
        const call = client.makeUnaryRequest(
          route.method.path,
          passThrough,
          passThrough,
          request,
          metadata,
          (err, response) => {
            if (err) resolve({ error: { code: err.code, details: err.details } });
            else resolve({ response: response ?? Buffer.alloc(0) });
          },
        );
        signal.addEventListener("abort", () => call.cancel(), { once: true });
      });
    },

    openStream(route: HttpRoute, metadata: grpc.Metadata, sink: GatewayStreamSink): GatewayStream {
      let ended = false;
      const end = (error?: { code: number; details: string }) => {
        if (ended) return;
        ended = true;
        sink.end(error);
      };
      const watch = (call: grpc.ClientReadableStream<Buffer>) => {
        call.on("data", (response: Buffer) => sink.message(response));
        call.on("error", (err: grpc.ServiceError) => end({ code: err.code, details: err.details }));
        call.on("status", (status: grpc.StatusObject) => {
          if (status.code === grpc.status.OK) end();
        });
      };
      if (route.method.requestStream) {
        const call = client.makeBidiStreamRequest(route.method.path, passThrough, passThrough, metadata);
        watch(call);
        return {
          send: (request) => {
            if (!ended) call.write(request);
          },
          cancel: () => {
            ended = true;
            call.cancel();
          },
        };
      }
      // A server stream starts with its one request.
      let call: grpc.ClientReadableStream<Buffer> | undefined;
      let cancelled = false;
      return {
        send: (request) => {
          if (call !== undefined || cancelled) return;
          call = client.makeServerStreamRequest(
            route.method.path,
            passThrough,
            passThrough,
            request,
            metadata,
          );
          watch(call);
        },
        cancel: () => {
          cancelled = true;
          ended = true;
          call?.cancel();
        },
      };
    },
  };
}
