// Binds the KeepAliveHub to grpc-js: client LeaseKeepAlive streams in, one upstream stream
// to the leader out.

import type { ServerCall } from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { MemberDirectory } from "../cluster/member-directory.js";
import { openUpstreamStream, unrefTimer } from "../cluster/upstream-stream.js";
import type { GatewayMetrics } from "../observability/gateway-metrics.js";
import type { EndStream, OpenStreams } from "../proxy/open-streams.js";
import { selectMember } from "../routing/member-selection.js";
import type { ClientSink } from "../watch/watch-hub.js";
import { decodeKeepAliveRequest } from "../wire/etcd-messages.js";
import { KeepAliveHub } from "./keepalive-hub.js";

const KEEPALIVE_PATH = "/etcdserverpb.Lease/LeaseKeepAlive";

export function createKeepAliveHub(
  members: MemberDirectory,
  metrics: GatewayMetrics,
  logger: Logger,
  reuseWindowMs: number,
): KeepAliveHub {
  const hub: KeepAliveHub = new KeepAliveHub(
    {
      open(onMessage, onClose) {
        const leader = selectMember({ kind: "leader" }, members.snapshot(), { next: 0 });
        if (leader === undefined) return undefined;
        const metadata = new grpc.Metadata();
        metadata.set("hasleader", "true");
        return openUpstreamStream({
          members,
          memberId: leader.id,
          path: KEEPALIVE_PATH,
          metadata,
          logger,
          what: "keep-alive",
          onMessage,
          onEnd: (status) => onClose(status.details),
          onSend: () => metrics.keepAlivesSent.inc(),
        });
      },
      schedule: unrefTimer,
      now: () => performance.now(),
    },
    reuseWindowMs,
  );
  let leaderId = members.snapshot().leaderId;
  members.onChange((snapshot) => {
    // Renewals belong on the leader: a follower would forward each one to it.
    if (snapshot.leaderId !== undefined && snapshot.leaderId !== leaderId) {
      const hadLeader = leaderId !== undefined;
      leaderId = snapshot.leaderId;
      if (hadLeader) hub.rehome();
    }
  });
  return hub;
}

export interface KeepAliveSession {
  request(raw: Buffer): void;
  close(): void;
}

export function openKeepAliveSession(
  hub: KeepAliveHub,
  sink: ClientSink,
  metrics: GatewayMetrics,
): KeepAliveSession {
  const client = hub.openClient(sink);
  return {
    request: (raw) => {
      metrics.keepAlivesReceived.inc();
      hub.onClientRequest(client, decodeKeepAliveRequest(raw));
    },
    close: () => hub.closeClient(client),
  };
}

/** How long a half-closed keep-alive stream waits for answers still due before it ends. */
const HALF_CLOSE_GRACE_MS = 5_000;

/** Serves a client's LeaseKeepAlive stream; returns what ends it from outside (with a status). */
export function handleKeepAliveCall(
  hub: KeepAliveHub,
  call: ServerCall,
  metrics: GatewayMetrics,
  streams: OpenStreams,
): EndStream {
  let done = false;
  let outstanding = 0;
  let halfClosed = false;
  const session = openKeepAliveSession(
    hub,
    {
      send(response) {
        if (done) return;
        call.sendMessage(response);
        outstanding = Math.max(0, outstanding - 1);
        if (halfClosed && outstanding === 0) finish();
      },
    },
    metrics,
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
      outstanding++;
      session.request(raw);
    } catch {
      finish({
        code: grpc.status.INVALID_ARGUMENT,
        details: "etcd-ts gateway: malformed LeaseKeepAliveRequest",
      });
    }
  });
  // etcd ends a keep-alive stream when the client half-closes it, after answering what
  // it already received.
  call.on("halfClose", () => {
    halfClosed = true;
    if (outstanding === 0) finish();
    else setTimeout(() => finish(), HALF_CLOSE_GRACE_MS).unref();
  });
  call.on("cancelled", () => finish());
  return finish;
}
