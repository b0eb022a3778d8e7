// Binds the WatchHub to grpc-js: client Watch streams in, upstream Watch streams out.

import { EtcdError, encodeWatchResponse, type ServerCall } from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { TokenGate, TokenVerdict } from "../auth/token-gate.js";
import type { MemberDirectory } from "../cluster/member-directory.js";
import { openUpstreamStream, unrefTimer } from "../cluster/upstream-stream.js";
import type { GatewayMetrics } from "../observability/gateway-metrics.js";
import type { EndStream, OpenStreams } from "../proxy/open-streams.js";
import { decodeWatchRequest } from "../wire/etcd-messages.js";
import { type AuthMetadata, type ClientSink, type UpstreamTransport, WatchHub } from "./watch-hub.js";

const WATCH_PATH = "/etcdserverpb.Watch/Watch";

/** Response bytes a client may leave unread before the gateway gives up on it. */
const MAX_BUFFERED_RESPONSE_BYTES = 64 * 1024 * 1024;

// The member does not serve the caller: moving the watch elsewhere would fail the same way.
const FINAL_CODES = new Set([
  grpc.status.UNAUTHENTICATED,
  grpc.status.PERMISSION_DENIED,
  grpc.status.INVALID_ARGUMENT,
]);

export function authOf(metadata: grpc.Metadata): AuthMetadata {
  const auth: AuthMetadata = {};
  const token = metadata.get("token")[0];
  const authorization = metadata.get("authorization")[0];
  if (typeof token === "string") auth.token = token;
  if (typeof authorization === "string") auth.authorization = authorization;
  return auth;
}

export function createWatchHub(members: MemberDirectory, metrics: GatewayMetrics, logger: Logger): WatchHub {
  const transport: UpstreamTransport = {
    pickMember(exclude, load) {
      const { members: all } = members.snapshot();
      const usable = all.filter((m) => !m.isLearner && !exclude.has(m.id));
      const healthy = usable.filter((m) => m.healthy);
      const pool = healthy.length > 0 ? healthy : usable;
      let best: (typeof pool)[number] | undefined;
      for (const m of pool) {
        if (
          best === undefined ||
          (load.get(m.id) ?? 0) < (load.get(best.id) ?? 0) ||
          ((load.get(m.id) ?? 0) === (load.get(best.id) ?? 0) && m.latencyMs < best.latencyMs)
        ) {
          best = m;
        }
      }
      return best?.id;
    },
    open(memberId, auth, onMessage, onClose) {
      const metadata = new grpc.Metadata();
      // The member ends the stream if it loses its leader, so the hub moves the watches to
      // a member that still has one instead of holding them on a partitioned member.
      metadata.set("hasleader", "true");
      if (auth.token !== undefined) metadata.set("token", auth.token);
      if (auth.authorization !== undefined) metadata.set("authorization", auth.authorization);
      const stream = openUpstreamStream({
        members,
        memberId,
        path: WATCH_PATH,
        metadata,
        logger,
        what: "watch",
        onMessage,
        afterIo: true,
        onEnd: (status) =>
          onClose({ code: status.code, details: status.details, final: FINAL_CODES.has(status.code) }),
      });
      if (stream === undefined) {
        queueMicrotask(() =>
          onClose({ code: grpc.status.UNAVAILABLE, details: "member gone", final: false }),
        );
        return { send() {}, close() {} };
      }
      return stream;
    },
    schedule: unrefTimer,
  };
  return new WatchHub(transport, (stats) => {
    metrics.clientWatches.set(stats.clientWatches);
    metrics.upstreamWatches.set(stats.upstreamWatches);
  });
}

/** A client watch stream as the hub sees it, whatever carries it (gRPC or JSON). */
export interface WatchSession {
  request(raw: Buffer): void;
  close(): void;
}

/**
 * A client's watch stream. With a token gate, a stream opened with a bad JWT reaches no member:
 * every create on it is refused as a member refuses it (watch ID -1, created and canceled,
 * "etcdserver: invalid auth token"; the stream stays open), everything else is ignored. A
 * verdict that needs a fresh list of keys holds the stream's requests until it comes, in order.
 */
export function openWatchSession(
  hub: WatchHub,
  sink: ClientSink,
  auth: AuthMetadata,
  gate?: TokenGate,
  client?: string,
): WatchSession {
  const token = auth.token ?? auth.authorization;
  const judged: TokenVerdict | Promise<TokenVerdict> =
    gate === undefined || token === undefined
      ? { pass: true }
      : gate.judge(token, { method: "Watch", client });
  if (!(judged instanceof Promise)) return judged.pass ? admitted(hub, sink, auth) : refused(hub, sink);
  let session: WatchSession | undefined;
  let closed = false;
  const held: Buffer[] = [];
  void judged.then((verdict) => {
    if (closed) return;
    const opened = verdict.pass ? admitted(hub, sink, auth) : refused(hub, sink);
    session = opened;
    for (const raw of held.splice(0)) {
      try {
        opened.request(raw);
      } catch {
        // Malformed: ignored here (the stream's own handler refuses it when it arrives later).
      }
    }
  });
  return {
    request: (raw) => {
      if (session === undefined) held.push(raw);
      else session.request(raw);
    },
    close: () => {
      closed = true;
      session?.close();
    },
  };
}

function admitted(hub: WatchHub, sink: ClientSink, auth: AuthMetadata): WatchSession {
  const client = hub.openClient(sink, auth);
  return {
    request: (raw) => hub.onClientRequest(client, decodeWatchRequest(raw)),
    close: () => hub.closeClient(client),
  };
}

const INVALID_AUTH_TOKEN = new EtcdError("InvalidAuthToken").details;

function refused(hub: WatchHub, sink: ClientSink): WatchSession {
  return {
    request: (raw) => {
      if (decodeWatchRequest(raw).kind !== "create") return;
      sink.send(
        encodeWatchResponse({
          headerBytes: hub.currentHeader(),
          watchId: -1,
          created: true,
          canceled: true,
          cancelReason: INVALID_AUTH_TOKEN,
        }),
      );
    },
    close: () => {},
  };
}

/** Serves a client's Watch stream; returns what ends it from outside (with a status). */
export function handleWatchCall(
  hub: WatchHub,
  call: ServerCall,
  logger: Logger,
  streams: OpenStreams,
  gate?: TokenGate,
): EndStream {
  let done = false;
  const session = openWatchSession(
    hub,
    {
      send(response) {
        if (done) return;
        if (call.writableLength > MAX_BUFFERED_RESPONSE_BYTES) {
          finish({
            code: grpc.status.RESOURCE_EXHAUSTED,
            details: "etcd-ts gateway: watch client is not reading its responses",
          });
          return;
        }
        call.sendMessage(response);
      },
    },
    authOf(call.metadata),
    gate,
    call.remoteAddress,
  );
  const finish = (error?: { code: number; details: string }) => {
    if (done) return;
    done = true;
    forget();
    session.close();
    call.finish(error ?? { code: grpc.status.OK });
  };
  const forget = streams.add(finish);
  call.on("message", (raw: Buffer) => {
    try {
      session.request(raw);
    } catch (err) {
      logger.debug({ err: String(err) }, "malformed watch request");
      finish({ code: grpc.status.INVALID_ARGUMENT, details: "etcd-ts gateway: malformed WatchRequest" });
    }
  });
  // Like etcd, a client that half-closes keeps its watches: only cancellation ends them.
  call.on("cancelled", () => finish());
  return finish;
}
