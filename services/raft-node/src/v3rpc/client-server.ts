// The client-facing gRPC server: every etcd v3 service on each --listen-client-urls address.

import { etcdserverpb, type GrpcListener, listenGrpc, v3electionpb, v3lockpb } from "@etcd-ts/api";
import { Server } from "@grpc/grpc-js";
import type { Member } from "../server/member.js";
import { type KeyPair, serverCredentialsFor } from "../transport/auto-tls.js";
import { grpcTarget } from "../transport/message-batching.js";
import { authService } from "./auth-service.js";
import { clusterService } from "./cluster-service.js";
import { electionService } from "./election-service.js";
import { kvService } from "./kv-service.js";
import { LeaderClients } from "./leader-clients.js";
import { leaseService } from "./lease-service.js";
import { lockService } from "./lock-service.js";
import { maintenanceService } from "./maintenance-service.js";
import { keepingRequestBytes } from "./raw-requests.js";
import { WatchServiceWithEncodedResponses, watchService } from "./watch-service.js";

/** etcd's allowance for gRPC framing on top of --max-request-bytes (embed/serve.go). */
const GRPC_OVERHEAD_BYTES = 512 * 1024;

export class ClientServer {
  readonly server: Server;
  private readonly leader: LeaderClients;
  private readonly listeners: GrpcListener[] = [];

  constructor(member: Member) {
    this.server = new Server({
      "grpc.max_receive_message_length": member.config.maxRequestBytes + GRPC_OVERHEAD_BYTES,
      // channelz keeps per-call statistics nobody reads here; it costs CPU on every call.
      "grpc.enable_channelz": 0,
      "grpc.max_send_message_length": 2 ** 31 - 1,
      "grpc.max_concurrent_streams": Math.min(member.config.maxConcurrentStreams, 2 ** 31 - 1),
    });
    this.leader = new LeaderClients(() => member.leaderClientUrls());
    this.server.addService(
      keepingRequestBytes(etcdserverpb.KVService, ["put", "deleteRange", "txn", "compact"]),
      kvService(member),
    );
    this.server.addService(WatchServiceWithEncodedResponses, watchService(member));
    this.server.addService(
      keepingRequestBytes(etcdserverpb.LeaseService, ["leaseGrant", "leaseRevoke"]),
      leaseService(member, this.leader),
    );
    this.server.addService(etcdserverpb.ClusterService, clusterService(member, this.leader));
    this.server.addService(etcdserverpb.MaintenanceService, maintenanceService(member));
    this.server.addService(etcdserverpb.AuthService, authService(member));
    this.server.addService(v3lockpb.LockService, lockService(member));
    this.server.addService(v3electionpb.ElectionService, electionService(member));
  }

  /** Binds each URL; https URLs are served with `tls` (auto-TLS). */
  async listen(urls: readonly URL[], tls?: KeyPair): Promise<void> {
    for (const url of urls) {
      if (url.protocol === "https:" && tls === undefined) {
        throw new Error(
          `${url.href}: https client URLs need --auto-tls (certificate files are not supported yet)`,
        );
      }
      const creds = serverCredentialsFor(url.protocol === "https:" ? tls : undefined);
      this.listeners.push(await listenGrpc(this.server, grpcTarget(url.toString()), creds));
    }
  }

  async close(): Promise<void> {
    this.leader.close();
    for (const l of this.listeners.splice(0)) l.close();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 1000);
      timer.unref();
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
