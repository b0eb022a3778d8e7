// etcd 3.4's member metrics under etcd's names, labels, units and buckets (etcdserver/metrics.go,
// wal/metrics.go, mvcc/metrics.go, mvcc/backend/metrics.go, etcdserver/api/rafthttp/metrics.go),
// which etcd's Grafana dashboard and the kube-prometheus etcd alerts read unchanged.
//
// Cost: state that already exists (leader, indexes, sizes, key and watcher counts) is read when
// scraped (`collect`), never on the request path; events (fsync, commit, peer bytes) go to label
// children resolved once.

import { CountingHistogram, type CountingHistogramChild } from "@etcd-ts/telemetry";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { MvccOpCounts } from "../mvcc/mod.js";

/** prometheus.ExponentialBuckets(start, factor, count). */
function exponentialBuckets(start: number, factor: number, count: number): number[] {
  const buckets: number[] = [];
  for (let i = 0, b = start; i < count; i++, b *= factor) buckets.push(b);
  return buckets;
}

/** What the metrics read from the member when scraped. */
export interface MemberState {
  hasLeader(): boolean;
  isLeader(): boolean;
  committedIndex(): number;
  appliedIndex(): number;
  pendingProposals(): number;
  dbSizeBytes(): number;
  dbSizeInUseBytes(): number;
  quotaBytes(): number;
  liveKeys(): number;
  watchers(): number;
  /** The current store's request counts (a snapshot install replaces the store). */
  opCounts(): MvccOpCounts;
}

type CounterChild = ReturnType<Counter<string>["labels"]>;
type HistogramChild = ReturnType<Histogram<string>["labels"]>;

export class MemberMetrics {
  readonly leaderChanges: Counter;
  readonly proposalsFailed: Counter;
  readonly heartbeatSendFailures: Counter;
  readonly slowApplies: Counter;
  readonly walFsync: CountingHistogramChild;
  readonly backendCommit: CountingHistogramChild;
  readonly backendSnapshot: Histogram;
  private readonly peerSendFailures: Counter<string>;
  private readonly peerRoundTrip: Histogram<string>;
  private readonly peerFailureChildren = new Map<bigint, CounterChild>();
  /**
   * Peer bytes since the last scrape, by member: counted on every batch, so kept as plain
   * numbers and added to the counters when scraped (prom-client hashes the labels of every inc).
   */
  private readonly peerSentSinceScrape = new Map<bigint, number>();
  private readonly peerReceivedSinceScrape = new Map<bigint, number>();
  private readonly peerRoundTripChildren = new Map<bigint, HistogramChild>();
  private readonly snapshotSends: Counter<string>;
  private readonly snapshotSendFailures: Counter<string>;
  private readonly snapshotReceives: Counter<string>;
  private readonly snapshotReceiveFailures: Counter<string>;
  private readonly serverId: Gauge<string>;
  private state: MemberState | undefined;
  private readonly opsSeen: { source: MvccOpCounts | undefined } & MvccOpCounts = {
    source: undefined,
    put: 0,
    delete: 0,
    txn: 0,
    range: 0,
  };

  constructor(
    readonly registry: Registry,
    versions: { serverVersion: string; clusterVersion: string },
  ) {
    const registers = [registry];
    const read = <T>(f: (s: MemberState) => T, otherwise: T) => (this.state ? f(this.state) : otherwise);

    new Gauge({
      name: "etcd_server_has_leader",
      help: "Whether or not a leader exists. 1 is existence, 0 is not.",
      registers,
      collect() {
        this.set(read((s) => (s.hasLeader() ? 1 : 0), 0));
      },
    });
    new Gauge({
      name: "etcd_server_is_leader",
      help: "Whether or not this member is a leader. 1 if is, 0 otherwise.",
      registers,
      collect() {
        this.set(read((s) => (s.isLeader() ? 1 : 0), 0));
      },
    });
    this.leaderChanges = new Counter({
      name: "etcd_server_leader_changes_seen_total",
      help: "The number of leader changes seen.",
      registers,
    });
    // etcd's "_total" proposals committed/applied are gauges holding the Raft indexes.
    new Gauge({
      name: "etcd_server_proposals_committed_total",
      help: "The total number of consensus proposals committed.",
      registers,
      collect() {
        this.set(read((s) => s.committedIndex(), 0));
      },
    });
    new Gauge({
      name: "etcd_server_proposals_applied_total",
      help: "The total number of consensus proposals applied.",
      registers,
      collect() {
        this.set(read((s) => s.appliedIndex(), 0));
      },
    });
    new Gauge({
      name: "etcd_server_proposals_pending",
      help: "The current number of pending proposals to commit.",
      registers,
      collect() {
        this.set(read((s) => s.pendingProposals(), 0));
      },
    });
    this.proposalsFailed = new Counter({
      name: "etcd_server_proposals_failed_total",
      help: "The total number of failed proposals seen.",
      registers,
    });
    this.heartbeatSendFailures = new Counter({
      name: "etcd_server_heartbeat_send_failures_total",
      help: "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
      registers,
    });
    this.slowApplies = new Counter({
      name: "etcd_server_slow_apply_total",
      help: "The total number of slow apply requests (likely overloaded from slow disk).",
      registers,
    });
    new Gauge({
      name: "etcd_server_quota_backend_bytes",
      help: "Current backend storage quota size in bytes.",
      registers,
      collect() {
        this.set(read((s) => s.quotaBytes(), 0));
      },
    });
    new Gauge({
      name: "etcd_server_version",
      help: "Which version is running. 1 for 'server_version' label with current version.",
      labelNames: ["server_version"],
      registers,
    }).set({ server_version: versions.serverVersion }, 1);
    // etcd labels it with version.Cluster(): major.minor ("3.4"), not the full version.
    new Gauge({
      name: "etcd_cluster_version",
      help: "Which version is running. 1 for 'cluster_version' label with current cluster version",
      labelNames: ["cluster_version"],
      registers,
    }).set({ cluster_version: versions.clusterVersion.split(".").slice(0, 2).join(".") }, 1);
    this.serverId = new Gauge({
      name: "etcd_server_id",
      help: "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
      labelNames: ["server_id"],
      registers,
    });

    // Observed once per WAL write and per applied batch (a follower makes one of each per
    // MsgApp): @etcd-ts/telemetry's CountingHistogram, the same series as prom-client's, without
    // its label hashing on every observe (~1.5% of a follower's CPU under puts).
    this.walFsync = new CountingHistogram({
      name: "etcd_disk_wal_fsync_duration_seconds",
      help: "The latency distributions of fsync called by WAL.",
      labelNames: [],
      buckets: exponentialBuckets(0.001, 2, 14),
      registers,
    }).labels();
    this.backendCommit = new CountingHistogram({
      name: "etcd_disk_backend_commit_duration_seconds",
      help: "The latency distributions of commit called by backend.",
      labelNames: [],
      buckets: exponentialBuckets(0.001, 2, 14),
      registers,
    }).labels();
    this.backendSnapshot = new Histogram({
      name: "etcd_disk_backend_snapshot_duration_seconds",
      help: "The latency distribution of backend snapshots.",
      buckets: exponentialBuckets(0.01, 2, 17),
      registers,
    });

    new Gauge({
      name: "etcd_mvcc_db_total_size_in_bytes",
      help: "Total size of the underlying database physically allocated in bytes.",
      registers,
      collect() {
        this.set(read((s) => s.dbSizeBytes(), 0));
      },
    });
    new Gauge({
      name: "etcd_mvcc_db_total_size_in_use_in_bytes",
      help: "Total size of the underlying database logically in use in bytes.",
      registers,
      collect() {
        this.set(read((s) => s.dbSizeInUseBytes(), 0));
      },
    });
    new Gauge({
      name: "etcd_debugging_mvcc_keys_total",
      help: "Total number of keys.",
      registers,
      collect() {
        this.set(read((s) => s.liveKeys(), 0));
      },
    });
    new Gauge({
      name: "etcd_debugging_mvcc_watcher_total",
      help: "Total number of watchers.",
      registers,
      collect() {
        this.set(read((s) => s.watchers(), 0));
      },
    });
    const ops = {
      put: ["etcd_mvcc_put_total", "Total number of puts seen by this member."],
      delete: ["etcd_mvcc_delete_total", "Total number of deletes seen by this member."],
      txn: ["etcd_mvcc_txn_total", "Total number of txns seen by this member."],
      range: ["etcd_mvcc_range_total", "Total number of ranges seen by this member."],
    } as const;
    for (const op of ["put", "delete", "txn", "range"] as const) {
      const syncOps = () => this.syncOps();
      const counter: Counter = new Counter({
        name: ops[op][0],
        help: ops[op][1],
        registers,
        collect: syncOps,
      });
      this.opCounters[op] = counter;
    }

    const peerSentSinceScrape = this.peerSentSinceScrape;
    new Counter({
      name: "etcd_network_peer_sent_bytes_total",
      help: "The total number of bytes sent to peers.",
      labelNames: ["To"],
      registers,
      collect() {
        addPeerCounts(this, "To", peerSentSinceScrape);
      },
    });
    const peerReceivedSinceScrape = this.peerReceivedSinceScrape;
    new Counter({
      name: "etcd_network_peer_received_bytes_total",
      help: "The total number of bytes received from peers.",
      labelNames: ["From"],
      registers,
      collect() {
        addPeerCounts(this, "From", peerReceivedSinceScrape);
      },
    });
    this.peerSendFailures = new Counter({
      name: "etcd_network_peer_sent_failures_total",
      help: "The total number of send failures from peers.",
      labelNames: ["To"],
      registers,
    });
    // Snapshots are rare (a lagging member's catch-up): plain labelled counters, as in etcd 3.4.
    this.snapshotSends = new Counter({
      name: "etcd_network_snapshot_send_success",
      help: "Total number of successful snapshot sends",
      labelNames: ["To"],
      registers,
    });
    this.snapshotSendFailures = new Counter({
      name: "etcd_network_snapshot_send_failures",
      help: "Total number of snapshot send failures",
      labelNames: ["To"],
      registers,
    });
    this.snapshotReceives = new Counter({
      name: "etcd_network_snapshot_receive_success",
      help: "Total number of successful snapshot receives",
      labelNames: ["From"],
      registers,
    });
    this.snapshotReceiveFailures = new Counter({
      name: "etcd_network_snapshot_receive_failures",
      help: "Total number of snapshot receive failures",
      labelNames: ["From"],
      registers,
    });
    this.peerRoundTrip = new Histogram({
      name: "etcd_network_peer_round_trip_time_seconds",
      help: "Round-Trip-Time histogram between peers",
      labelNames: ["To"],
      buckets: exponentialBuckets(0.0001, 2, 14),
      registers,
    });
  }

  /** A snapshot streamed to `to`: etcd_network_snapshot_send_{success,failures}. */
  snapshotSent(to: bigint, ok: boolean): void {
    (ok ? this.snapshotSends : this.snapshotSendFailures).inc({ To: to.toString(16) });
  }

  /** A snapshot received whole from `from` (`undefined`: failed before its header said who). */
  snapshotReceived(from: bigint | undefined, ok: boolean): void {
    const label = { From: from === undefined ? "" : from.toString(16) };
    (ok ? this.snapshotReceives : this.snapshotReceiveFailures).inc(label);
  }

  private readonly opCounters: Partial<Record<keyof MvccOpCounts, Counter>> = {};

  /** Starts reading the member's state when scraped; `memberId` in hex, as etcd prints it. */
  observe(state: MemberState, memberId: string): void {
    this.state = state;
    this.serverId.set({ server_id: memberId }, 1);
  }

  peerBytesSent(to: bigint, bytes: number): void {
    this.peerSentSinceScrape.set(to, (this.peerSentSinceScrape.get(to) ?? 0) + bytes);
  }

  peerBytesReceived(from: bigint, bytes: number): void {
    this.peerReceivedSinceScrape.set(from, (this.peerReceivedSinceScrape.get(from) ?? 0) + bytes);
  }

  /** Messages to `to` that never left (etcdMembersDown reads the rate). */
  peerSendFailed(to: bigint, messages: number): void {
    childFor(this.peerFailureChildren, to, () => this.peerSendFailures.labels(to.toString(16))).inc(messages);
  }

  peerRoundTripSeconds(to: bigint, seconds: number): void {
    childFor(this.peerRoundTripChildren, to, () => this.peerRoundTrip.labels(to.toString(16))).observe(
      seconds,
    );
  }

  /** Adds what the store counted since the last scrape; a new store (snapshot install) starts at 0. */
  private syncOps(): void {
    const source = this.state?.opCounts();
    if (source === undefined) return;
    const seen = this.opsSeen;
    if (seen.source !== source) {
      seen.source = source;
      seen.put = seen.delete = seen.txn = seen.range = 0;
    }
    for (const op of ["put", "delete", "txn", "range"] as const) {
      const delta = source[op] - seen[op];
      if (delta > 0) this.opCounters[op]?.inc(delta);
      seen[op] = source[op];
    }
  }
}

/** Adds the counts gathered since the last scrape to `counter`, one label value (hex ID) per member. */
function addPeerCounts(counter: Counter<string>, label: string, sinceScrape: Map<bigint, number>): void {
  for (const [id, n] of sinceScrape) counter.inc({ [label]: id.toString(16) }, n);
  sinceScrape.clear();
}

function childFor<C>(children: Map<bigint, C>, id: bigint, make: () => C): C {
  let child = children.get(id);
  if (child === undefined) {
    child = make();
    children.set(id, child);
  }
  return child;
}
