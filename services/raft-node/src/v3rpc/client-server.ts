// The client-facing gRPC server: every etcd v3 service on each --listen-client-urls address,
// on @etcd-ts/api's GrpcHttp2Server (node:http2; see grpc-adapter.ts for why not grpc-js's).

import http from "node:http";
import net from "node:net";
import {
  AccessControl,
  createTlsServer,
  etcdserverpb,
  FORWARD_CALLS_PATH,
  forwardedCallsHandler,
  GATEWAY_CHANNEL_OPTIONS,
  GrpcHttp2Server,
  grpcClientBackend,
  HealthStatuses,
  jsonGatewayHandler,
  parseGrpcTarget,
  ReplayingSocket,
  RequireLeaderGuard,
  type ServerTls,
  serveHealth,
  type TlsRejection,
  v3electionpb,
  v3lockpb,
} from "@etcd-ts/api";
import { GrpcServerMetrics, serverObserver } from "@etcd-ts/telemetry";
import grpc, { type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Registry } from "prom-client";
import { clientHttpHandler } from "../etcdhttp/client-http.js";
import { CLUSTER_VERSION, type EtcdServer, SERVER_VERSION } from "../server/mod.js";
import { grpcTarget } from "../transport/message-batching.js";
import type { DialTls } from "../transport/tls-credentials.js";
import { authService } from "./auth-service.js";
import { clusterService } from "./cluster-service.js";
import { electionService } from "./election-service.js";
import { serveService } from "./grpc-adapter.js";
import { kvService, kvServiceDefinition } from "./kv-service.js";
import { LeaderClients } from "./leader-clients.js";
import { leaseService } from "./lease-service.js";
import { lockService } from "./lock-service.js";
import { maintenanceService } from "./maintenance-service.js";
import { WatchServiceWithEncodedResponses, watchService } from "./watch-service.js";

/** etcd's allowance for gRPC framing on top of --max-request-bytes (embed/serve.go). */
const GRPC_OVERHEAD_BYTES = 512 * 1024;

export class ClientServer {
  private readonly leader: LeaderClients;
  private readonly services: [ServiceDefinition, UntypedServiceImplementation][];
  private readonly servers: GrpcHttp2Server[] = [];
  private readonly metricsServers: { server: http.Server; listener: net.Server }[] = [];
  private readonly http1: http.RequestListener;
  /** The JSON gateway's channels to our own listeners, one per client listener. */
  private readonly gatewayClients: grpc.Client[] = [];
  private readonly metricsHttp;
  private readonly grpcMetrics: GrpcServerMetrics;
  /** --host-whitelist and --cors, in front of everything HTTP/1.1 on the client URLs. */
  private readonly access: AccessControl;
  /** Require-leader calls (etcd's interceptor), one round per election timeout (its monitorLeader). */
  private readonly guard: RequireLeaderGuard;
  /**
   * grpc.health.v1 on every client listener, as etcd: SERVING from the moment the port opens
   * (after this member published itself, as etcd serves once ready), NOT_SERVING on close.
   */
  private readonly health = new HealthStatuses();

  /**
   * `metrics`: the process's registry, served at /metrics and given the grpc_server_* metrics.
   * `dial`: how the leader's https client URL is dialled (forwarded lease calls).
   * `onTlsRejected`: a client refused by TLS or the CRL, for the log.
   */
  constructor(
    private readonly member: EtcdServer,
    metrics: Registry,
    private readonly dial: DialTls = undefined,
    private readonly onTlsRejected: (rejection: TlsRejection) => void = () => {},
  ) {
    this.leader = new LeaderClients(() => member.leaderClientUrls(), dial);
    const hasLeader = () => member.leaderId !== 0n;
    const http1 = {
      probe: {
        alarmRaised: () => member.alarms().length > 0,
        hasLeader,
        linearizableRead: () => member.linearizableRead(),
      },
      serverVersion: SERVER_VERSION,
      clusterVersion: CLUSTER_VERSION,
      metrics,
    };
    this.http1 = clientHttpHandler(http1);
    this.metricsHttp = clientHttpHandler({ ...http1, routes: "metrics" });
    const flags = member.flags;
    this.grpcMetrics = new GrpcServerMetrics(metrics, {
      etcdClientBytes: true,
      handlingTime: flags.extensiveMetrics,
    });
    this.access = new AccessControl(flags.corsOrigins, flags.hostWhitelist);
    this.guard = new RequireLeaderGuard(hasLeader, flags.electionMs);
    const asUntyped = (impl: object) => impl as UntypedServiceImplementation;
    this.services = [
      [kvServiceDefinition, asUntyped(kvService(member))],
      [WatchServiceWithEncodedResponses, watchService(member)],
      [etcdserverpb.LeaseService, asUntyped(leaseService(member, this.leader))],
      [etcdserverpb.ClusterService, asUntyped(clusterService(member, this.leader))],
      [etcdserverpb.MaintenanceService, asUntyped(maintenanceService(member))],
      [etcdserverpb.AuthService, asUntyped(authService(member))],
      [v3lockpb.LockService, asUntyped(lockService(member))],
      [v3electionpb.ElectionService, asUntyped(electionService(member))],
    ];
  }

  /**
   * Binds each URL; https URLs are served with `tls` (certificate files or auto-TLS). An http
   * and an https URL on the same host:port share one listener (etcd sniffs each connection).
   */
  async listen(urls: readonly URL[], tls?: ServerTls): Promise<void> {
    for (const [address, schemes] of byAddress(urls, tls)) {
      const secure = schemes.has("https:");
      let gateway: ((req: http.IncomingMessage, res: http.ServerResponse) => boolean) | undefined;
      let port = 0;
      const server = new GrpcHttp2Server({
        maxReceiveBytes: this.member.flags.maxRequestBytes + GRPC_OVERHEAD_BYTES,
        maxConcurrentStreams: Math.min(this.member.flags.maxConcurrentStreams, 2 ** 32 - 1),
        tls: secure ? tls : undefined,
        plaintextToo: secure && schemes.has("http:"),
        onTlsRejected: this.onTlsRejected,
        keepalive: {
          minTimeMs: this.member.flags.grpcKeepaliveMinTimeMs,
          intervalMs: this.member.flags.grpcKeepaliveIntervalMs,
          timeoutMs: this.member.flags.grpcKeepaliveTimeoutMs,
        },
        http1: (req, res) => {
          if (this.access.answered(req, res)) return;
          if (this.member.flags.grpcGateway) {
            gateway ??= this.jsonGateway(address, port, secure && !schemes.has("http:"));
            if (gateway(req, res)) return;
          }
          this.http1(req, res);
        },
        observer: serverObserver(this.grpcMetrics),
      });
      for (const [definition, implementation] of this.services)
        serveService(server, definition, implementation, this.guard);
      serveHealth(server, this.health);
      // The api-gateway's many unary calls over one stream, each run by the handlers above
      // with its own token (proto/internal/forward.proto).
      server.register(FORWARD_CALLS_PATH, forwardedCallsHandler(server));
      port = await server.listen(address);
      this.servers.push(server);
    }
  }

  /**
   * The JSON gateway of the listener on `address`: it calls this listener's gRPC server over
   * one loopback channel, as etcd's grpc-gateway does. Simpler than calling the handlers in
   * process (they are written against gRPC calls), and every JSON call then passes the same
   * validation, auth, --max-concurrent-streams and metrics as a gRPC call; the gRPC path itself
   * is untouched (HTTP/2 connections never reach this). Made on the first HTTP/1.1 request.
   * An https-only listener is dialled as etcd's gateway dials itself: with the member's own
   * certificate (for --client-cert-auth), not verifying the server (InsecureSkipVerify).
   */
  private jsonGateway(address: string, port: number, https: boolean) {
    let target = address;
    if (!address.startsWith("unix:")) {
      // A wildcard listener is reached on loopback.
      const host = address.slice(0, address.lastIndexOf(":"));
      const bare = host.replace(/^\[|\]$/g, "");
      const loopback = bare === "0.0.0.0" || bare === "" ? "127.0.0.1" : bare === "::" ? "[::1]" : host;
      target = `${loopback}:${port}`;
    }
    const credentials = !https
      ? grpc.credentials.createInsecure()
      : grpc.credentials.createSsl(null, this.dial?.key ?? null, this.dial?.cert ?? null, {
          rejectUnauthorized: false,
        });
    const client = new grpc.Client(target, credentials, GATEWAY_CHANNEL_OPTIONS);
    this.gatewayClients.push(client);
    return jsonGatewayHandler(grpcClientBackend(client), { access: null });
  }

  /** Serves /metrics and /health on each --listen-metrics-urls address (https with `tls`). */
  async listenMetrics(urls: readonly URL[], tls?: ServerTls): Promise<void> {
    for (const [address, schemes] of byAddress(urls, tls)) {
      const server = http.createServer(this.metricsHttp);
      const listener = schemes.has("https:")
        ? createTlsServer(tls!, ["http/1.1"], {
            secure: (socket) => server.emit("connection", socket),
            plain: schemes.has("http:")
              ? (socket) => server.emit("connection", new ReplayingSocket(socket, Buffer.alloc(0)))
              : undefined,
            rejected: this.onTlsRejected,
          })
        : net.createServer({ noDelay: true }, (socket) => server.emit("connection", socket));
      await new Promise<void>((resolve, reject) => {
        listener.once("error", reject);
        listener.listen(parseGrpcTarget(address), () => {
          listener.off("error", reject);
          resolve();
        });
      });
      this.metricsServers.push({ server, listener });
    }
  }

  async close(): Promise<void> {
    this.health.shutdown();
    this.health.close();
    this.guard.close();
    this.leader.close();
    for (const client of this.gatewayClients.splice(0)) client.close();
    for (const { server, listener } of this.metricsServers.splice(0)) {
      listener.close();
      server.closeAllConnections();
    }
    await Promise.all(this.servers.splice(0).map((s) => s.close(1_000)));
  }
}

/** host:port -> the schemes asked for on it; an https URL without `tls` is refused as etcd does. */
function byAddress(urls: readonly URL[], tls: ServerTls | undefined): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const url of urls) {
    if (url.protocol === "https:" && tls === undefined) {
      throw new Error(
        `TLS key/cert (--cert-file, --key-file) must be provided for client url ${url.href} with HTTPS scheme`,
      );
    }
    const address = grpcTarget(url.toString());
    const schemes = out.get(address) ?? new Set<string>();
    schemes.add(url.protocol === "unix:" ? "http:" : url.protocol);
    out.set(address, schemes);
  }
  return out;
}
