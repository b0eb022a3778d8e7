// The client-facing gRPC server: every etcd v3 service on each --listen-client-urls address,
// on @etcd-ts/api's GrpcHttp2Server (node:http2; see grpc-adapter.ts for why not grpc-js's).

import http from "node:http";
import https from "node:https";
import {
  etcdserverpb,
  GATEWAY_CHANNEL_OPTIONS,
  GrpcHttp2Server,
  grpcClientBackend,
  jsonGatewayHandler,
  v3electionpb,
  v3lockpb,
} from "@etcd-ts/api";
import { GrpcServerMetrics, serverObserver } from "@etcd-ts/telemetry";
import grpc, { type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Registry } from "prom-client";
import { clientHttpHandler } from "../etcdhttp/client-http.js";
import { CLUSTER_VERSION, type EtcdServer, SERVER_VERSION } from "../server/mod.js";
import { channelCredentialsFor, type KeyPair } from "../transport/auto-tls.js";
import { grpcTarget } from "../transport/message-batching.js";
import { authService } from "./auth-service.js";
import { clusterService } from "./cluster-service.js";
import { electionService } from "./election-service.js";
import { serveService } from "./grpc-adapter.js";
import { kvService, kvServiceDefinition } from "./kv-service.js";
import { LeaderClients } from "./leader-clients.js";
import { leaseService } from "./lease-service.js";
import { lockService } from "./lock-service.js";
import { maintenanceService } from "./maintenance-service.js";
import { keepingRequestBytes } from "./raw-requests.js";
import { WatchServiceWithEncodedResponses, watchService } from "./watch-service.js";

/** etcd's allowance for gRPC framing on top of --max-request-bytes (embed/serve.go). */
const GRPC_OVERHEAD_BYTES = 512 * 1024;

export class ClientServer {
  private readonly leader: LeaderClients;
  private readonly services: [ServiceDefinition, UntypedServiceImplementation][];
  private readonly servers: GrpcHttp2Server[] = [];
  private readonly metricsServers: http.Server[] = [];
  private readonly http1: http.RequestListener;
  /** The JSON gateway's channels to our own listeners, one per client URL. */
  private readonly gatewayClients: grpc.Client[] = [];
  private readonly metricsHttp;
  private readonly grpcMetrics: GrpcServerMetrics;

  /** `metrics`: the process's registry, served at /metrics and given the grpc_server_* metrics. */
  constructor(
    private readonly member: EtcdServer,
    metrics: Registry,
  ) {
    this.leader = new LeaderClients(() => member.leaderClientUrls());
    const http1 = {
      probe: {
        alarmRaised: () => member.alarms().length > 0,
        hasLeader: () => member.leaderId !== 0n,
        linearizableRead: () => member.linearizableRead(),
      },
      serverVersion: SERVER_VERSION,
      clusterVersion: CLUSTER_VERSION,
      metrics,
    };
    this.http1 = clientHttpHandler(http1);
    this.metricsHttp = clientHttpHandler({ ...http1, routes: "metrics" });
    this.grpcMetrics = new GrpcServerMetrics(metrics, { etcdClientBytes: true });
    const asUntyped = (impl: object) => impl as UntypedServiceImplementation;
    this.services = [
      [kvServiceDefinition, asUntyped(kvService(member))],
      [WatchServiceWithEncodedResponses, watchService(member)],
      [
        keepingRequestBytes(etcdserverpb.LeaseService, ["leaseGrant", "leaseRevoke"]),
        asUntyped(leaseService(member, this.leader)),
      ],
      [etcdserverpb.ClusterService, asUntyped(clusterService(member, this.leader))],
      [etcdserverpb.MaintenanceService, asUntyped(maintenanceService(member))],
      [etcdserverpb.AuthService, asUntyped(authService(member))],
      [v3lockpb.LockService, asUntyped(lockService(member))],
      [v3electionpb.ElectionService, asUntyped(electionService(member))],
    ];
  }

  /** Binds each URL; https URLs are served with `tls` (auto-TLS). */
  async listen(urls: readonly URL[], tls?: KeyPair): Promise<void> {
    for (const url of urls) {
      if (url.protocol === "https:" && tls === undefined) {
        throw new Error(
          `${url.href}: https client URLs need --auto-tls (certificate files are not supported yet)`,
        );
      }
      let gateway: ((req: http.IncomingMessage, res: http.ServerResponse) => boolean) | undefined;
      let port = 0;
      const server = new GrpcHttp2Server({
        maxReceiveBytes: this.member.flags.maxRequestBytes + GRPC_OVERHEAD_BYTES,
        maxConcurrentStreams: Math.min(this.member.flags.maxConcurrentStreams, 2 ** 32 - 1),
        tls: url.protocol === "https:" ? tls : undefined,
        http1: (req, res) => {
          if (this.member.flags.grpcGateway) {
            gateway ??= this.jsonGateway(url, port);
            if (gateway(req, res)) return;
          }
          this.http1(req, res);
        },
        observer: serverObserver(this.grpcMetrics),
      });
      for (const [definition, implementation] of this.services)
        serveService(server, definition, implementation);
      port = await server.listen(grpcTarget(url.toString()));
      this.servers.push(server);
    }
  }

  /**
   * The JSON gateway of the listener on `url`: it calls this listener's gRPC server over one
   * loopback channel, as etcd's grpc-gateway does. Simpler than calling the handlers in
   * process (they are written against gRPC calls), and every JSON call then passes the same
   * validation, auth, --max-concurrent-streams and metrics as a gRPC call; the gRPC path itself
   * is untouched (HTTP/2 connections never reach this). Made on the first HTTP/1.1 request.
   */
  private jsonGateway(url: URL, port: number) {
    // A wildcard listener is reached on loopback.
    const host = url.hostname.replace(/^\[|\]$/g, "");
    const loopback = host === "0.0.0.0" || host === "" ? "127.0.0.1" : host === "::" ? "[::1]" : url.hostname;
    const target = url.protocol === "unix:" ? grpcTarget(url.href) : `${loopback}:${port}`;
    const client = new grpc.Client(target, channelCredentialsFor(url.href), GATEWAY_CHANNEL_OPTIONS);
    this.gatewayClients.push(client);
    return jsonGatewayHandler(grpcClientBackend(client));
  }

  /** Serves /metrics and /health on each --listen-metrics-urls address (https with `tls`, auto-TLS). */
  async listenMetrics(urls: readonly URL[], tls?: KeyPair): Promise<void> {
    for (const url of urls) {
      if (url.protocol === "https:" && tls === undefined) {
        throw new Error(
          `${url.href}: https metrics URLs need --auto-tls (certificate files are not supported yet)`,
        );
      }
      const server =
        url.protocol === "https:" && tls !== undefined
          ? https.createServer({ cert: tls.cert, key: tls.key }, this.metricsHttp)
          : http.createServer(this.metricsHttp);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(Number(url.port), url.hostname.replace(/^\[|\]$/g, ""), () => {
          server.off("error", reject);
          resolve();
        });
      });
      this.metricsServers.push(server);
    }
  }

  async close(): Promise<void> {
    this.leader.close();
    for (const client of this.gatewayClients.splice(0)) client.close();
    for (const server of this.metricsServers.splice(0)) {
      server.close();
      server.closeAllConnections();
    }
    await Promise.all(this.servers.splice(0).map((s) => s.close(1_000)));
  }
}
