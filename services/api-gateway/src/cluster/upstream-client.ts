// One grpc-js client (one HTTP/2 channel) per member for the streams the gateway relays (watch,
// lease keep-alive, snapshot), carrying raw bytes both ways: the gateway forwards etcd messages
// without decoding them. Unary calls go over member-channel.ts.

import grpc from "@grpc/grpc-js";

export const passThrough = (bytes: Buffer): Buffer => bytes;

export const UPSTREAM_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // etcd accepts requests up to 1.5 MiB plus gRPC overhead and sends responses as large
  // as a range needs: the proxy must not impose limits of its own.
  "grpc.max_receive_message_length": -1,
  "grpc.max_send_message_length": -1,
  // A member that vanishes without closing its sockets (SIGKILL of a VM, partition) is
  // noticed by keepalive pings rather than by the next call timing out. Every 10 s: twice
  // members' (and etcd's) default --grpc-keepalive-min-time, since grpc-go counts a ping that
  // arrives early as a strike and answers three with GOAWAY too_many_pings.
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 2_000,
  "grpc.keepalive_permit_without_calls": 1,
  // Reconnect quickly after a member restarts; the tracker decides when to stop trying.
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1_000,
  "grpc.enable_channelz": 0,
};

/**
 * How the gateway dials members: plaintext, or TLS verified against `ca` (etcd grpc-proxy's
 * --cacert) offering `cert`/`key` for members that require client certificates (--cert, --key).
 */
export interface UpstreamTls {
  ca: Buffer | undefined;
  cert: Buffer | undefined;
  key: Buffer | undefined;
}

export function createUpstreamClient(address: string, tls?: UpstreamTls): grpc.Client {
  const credentials =
    tls === undefined
      ? grpc.credentials.createInsecure()
      : grpc.credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null);
  return new grpc.Client(address, credentials, UPSTREAM_CHANNEL_OPTIONS);
}

/**
 * "http://127.0.0.1:2379" -> "127.0.0.1:2379"; undefined for schemes the gateway cannot dial
 * (https only when it dials members over TLS, `secure`).
 */
export function addressFromClientUrl(url: string, secure = false): string | undefined {
  const match = /^(?:https?:\/\/)?([^/]+?)\/?$/.exec(url.trim());
  if (match === null || url.startsWith("unix")) return undefined;
  if (url.startsWith("https://") !== secure && url.includes("://")) return undefined;
  return match[1];
}
