// gRPC clients to the leader's client URL, for the calls etcd serves only on the leader (lease
// keep-alive and time-to-live, learner promotion): a follower forwards them, as etcd does.

import { EtcdError, etcdserverpb } from "@etcd-ts/api";
import { grpcTarget } from "../transport/message-batching.js";
import { channelCredentialsFor, type DialTls } from "../transport/tls-credentials.js";

export class LeaderClients {
  private url = "";
  private lease: etcdserverpb.LeaseClient | undefined;
  private cluster: etcdserverpb.ClusterClient | undefined;

  constructor(
    private readonly leaderUrls: () => string[],
    private readonly dial: DialTls = undefined,
  ) {}

  private target(): string {
    const urls = this.leaderUrls();
    if (urls.length === 0) throw new EtcdError("NoLeader");
    if (urls[0] !== this.url) {
      this.close();
      this.url = urls[0]!;
    }
    return grpcTarget(this.url);
  }

  leaseClient(): etcdserverpb.LeaseClient {
    const target = this.target();
    this.lease ??= new etcdserverpb.LeaseClient(target, channelCredentialsFor(this.url, this.dial));
    return this.lease;
  }

  clusterClient(): etcdserverpb.ClusterClient {
    const target = this.target();
    this.cluster ??= new etcdserverpb.ClusterClient(target, channelCredentialsFor(this.url, this.dial));
    return this.cluster;
  }

  close(): void {
    this.lease?.close();
    this.cluster?.close();
    this.lease = undefined;
    this.cluster = undefined;
  }
}
