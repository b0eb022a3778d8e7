// gRPC's health checking protocol (grpc.health.v1.Health; proto/grpc/health/v1/health.proto),
// which etcd registers on its client port with the empty service name standing for all of its
// services (v3rpc/grpc.go and health.go). Probes and balancers speak it (grpc_health_probe,
// Kubernetes' gRPC probes, Envoy, grpc-go's client-side health checking); without it they read
// UNIMPLEMENTED as "down". Members and the gateway serve the same code; each decides when it is
// SERVING (a member from the moment its client port opens, as etcd once published; the
// gateway while it is ready, as its /readyz) and both say NOT_SERVING once they shut down.
// Answers and errors are grpc-go's health server's (google.golang.org/grpc/health).

import grpc from "@grpc/grpc-js";
import {
  HealthCheckRequest,
  HealthCheckResponse,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../gen/grpc/health/v1/health.js";
import type { GrpcHttp2Server, ServerCall } from "./http2-server.js";

export { ServingStatus };

export const HEALTH_CHECK_PATH = "/grpc.health.v1.Health/Check";
export const HEALTH_WATCH_PATH = "/grpc.health.v1.Health/Watch";
/** The name that stands for all of a server's services (etcd's allGRPCServices). */
export const ALL_SERVICES = "";

interface Watcher {
  send(status: ServingStatus): void;
  end(): void;
}

/**
 * The status of each service a server knows, and the Watch calls waiting for changes. Pure of
 * I/O (serveHealth binds it to a server), so tests drive it directly.
 */
export class HealthStatuses {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Map<string, Set<Watcher>>();
  private shutDown = false;

  /** Knows the empty service name (all services) as SERVING, as etcd once it serves. */
  constructor(initial: ServingStatus = ServingStatus.SERVING) {
    this.statuses.set(ALL_SERVICES, initial);
  }

  /** Sets a service's status, telling its watchers; ignored after shutdown (grpc-go's rule). */
  set(service: string, status: ServingStatus): void {
    if (this.shutDown) return;
    this.update(service, status);
  }

  /** Every known service NOT_SERVING from now on (grpc-go's Shutdown): a server going away. */
  shutdown(): void {
    for (const service of this.statuses.keys()) this.update(service, ServingStatus.NOT_SERVING);
    this.shutDown = true;
  }

  /** A service's status, undefined for one this server does not know. */
  check(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /**
   * Calls `send` with the service's status now (SERVICE_UNKNOWN for one not known), then with
   * each change (never the same status twice in a row), until the returned function is called.
   * `end` is called when the statuses are closed (the server is stopping).
   */
  watch(service: string, send: (status: ServingStatus) => void, end: () => void): () => void {
    let last = this.check(service) ?? ServingStatus.SERVICE_UNKNOWN;
    const watcher: Watcher = {
      send: (status) => {
        if (status === last) return;
        last = status;
        send(status);
      },
      end,
    };
    let set = this.watchers.get(service);
    if (set === undefined) {
      set = new Set();
      this.watchers.set(service, set);
    }
    set.add(watcher);
    send(last);
    return () => {
      set.delete(watcher);
      if (set.size === 0 && this.watchers.get(service) === set) this.watchers.delete(service);
    };
  }

  /** Watch calls still open. */
  get watching(): number {
    let n = 0;
    for (const set of this.watchers.values()) n += set.size;
    return n;
  }

  /** Ends every Watch call (they never end on their own, and a closing server waits for them). */
  close(): void {
    const sets = [...this.watchers.values()];
    this.watchers.clear();
    for (const set of sets) for (const watcher of set) watcher.end();
  }

  private update(service: string, status: ServingStatus): void {
    this.statuses.set(service, status);
    for (const watcher of this.watchers.get(service) ?? []) watcher.send(status);
  }
}

/** Serves Check and Watch on `server` from `statuses`. No token, no leader needed (as etcd). */
export function serveHealth(server: GrpcHttp2Server, statuses: HealthStatuses): void {
  const serviceOf = (call: ServerCall): string | undefined => {
    try {
      return HealthCheckRequest.decode(call.request).service;
    } catch (err) {
      call.finish({ code: grpc.status.INTERNAL, details: `Error deserializing request: ${String(err)}` });
      return undefined;
    }
  };
  const encode = (status: ServingStatus) => Buffer.from(HealthCheckResponse.encode({ status }).finish());
  server.register(HEALTH_CHECK_PATH, {
    kind: "unary",
    handle: (call) => {
      const service = serviceOf(call);
      if (service === undefined) return;
      const status = statuses.check(service);
      if (status === undefined) call.finish({ code: grpc.status.NOT_FOUND, details: "unknown service" });
      else call.finishWith(encode(status), { code: grpc.status.OK });
    },
  });
  server.register(HEALTH_WATCH_PATH, {
    kind: "server-stream",
    handle: (call) => {
      const service = serviceOf(call);
      if (service === undefined) return;
      const stop = statuses.watch(
        service,
        (status) => call.sendMessage(encode(status)),
        () => call.finish({ code: grpc.status.UNAVAILABLE, details: "health: server shutting down" }),
      );
      call.once("cancelled", stop);
    },
  });
}
