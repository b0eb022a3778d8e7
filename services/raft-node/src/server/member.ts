// One etcd member (etcd's EtcdServer, server.go): the parts wired together and the server
// interface the RPC layer uses (server-api.ts). The parts, each in its folder:
//   bootstrap/   start-up and recovery: identity, WAL + snapshot replay, new cluster or join
//   raft-loop/   tick, Ready: persist to the WAL, send, hand committed entries on; snapshots
//   apply/       committed entries -> the applier chain (quota -> backend) -> waiting calls
//   lease/, watch/, membership/, mvcc/   the state machines the entries change
// Client calls wait in a registry for their entry to be applied here; linearizable reads wait
// for a batched ReadIndex round.
import { readdir, rename, rm } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import {
  authBackend,
  ETCD_CLUSTER_VERSION,
  ETCD_SERVER_VERSION,
  EtcdError,
  etcdserverpb,
  jwsKeyId,
  type peer,
  type ServerTls,
} from "@etcd-ts/api";
import {
  ConfChangeType,
  type Message,
  MessageType,
  ProposalDroppedError,
  type Snapshot,
  type SnapshotMetadata,
  StateRole,
  type Status,
} from "@etcd-ts/raft";
import { eventTrace, type TraceContext, tracing } from "@etcd-ts/telemetry";
import type { UntypedServiceImplementation } from "@grpc/grpc-js";
import { Registry } from "prom-client";
import { applierChain } from "../apply/applier-chain.js";
import type { AuthenticateApplied } from "../apply/auth-requests.js";
import { EntryApplier, type ProposalContext } from "../apply/entry-applier.js";
import { EntryKind, encodeEnvelope } from "../apply/entry-envelope.js";
import {
  AUTH_COLUMN,
  type AuthInfo,
  AuthStore,
  hashPassword,
  JwtTokens,
  PublishedKeys,
  parseJwtOptions,
  passwordMatches,
  ROOT_USER,
  SimpleTokens,
  simpleTokenPrefix,
} from "../auth/mod.js";
import { bootstrap, openStore } from "../bootstrap/bootstrap.js";
import { EXTRA_COLUMNS, type Layout } from "../bootstrap/data-dir.js";
import { type MemberConfig, parseGoDuration } from "../config/flags.js";
import {
  LEASE_COLUMN,
  type LeaseCheckpoint,
  type LeaseGrantApplied,
  LeaseIdGenerator,
  LeasePoller,
  LeaseStateMachine,
  type LeaseTimeToLive,
  Lessor,
  minLeaseTtlSeconds,
  NO_LEASE,
} from "../lease/mod.js";
import { LearnerAutoPromotion } from "../membership/learner-auto-promotion.js";
import { memberCodec, urlString } from "../membership/member-codec.js";
import { formatId, memberIdFor } from "../membership/member-id.js";
import {
  learnerInSync,
  MEMBERS_COLUMN,
  type MemberInfo,
  type MembersTable,
} from "../membership/members-table.js";
import { MemberMetrics } from "../metrics/member-metrics.js";
import type {
  AlarmMember,
  AlarmRequest,
  AlarmResponse,
  CompactionRequest,
  CompactionResponse,
  DeleteRangeRequest,
  DeleteRangeResponse,
  EncodedRangeResponse,
  HashKVResponse,
  HeldPart,
  MvccStore,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  ResponseHeader,
  TxnRequest,
  TxnResponse,
} from "../mvcc/mod.js";
import { apiHashKV, apiHeader, appliedInMetaRows, META_COLUMN } from "../mvcc/mod.js";
import { RaftLoop } from "../raft-loop/raft-loop.js";
import { importStateImage, type RowBlock, writeStateImage } from "../raft-loop/state-image.js";
import {
  keySplitAt,
  SNAPSHOT_SEND_YIELD_FACTOR,
  type SnapshotSink,
  sendBackendFile,
  WriteLoad,
  WritePacer,
  writeBackendFileOffThread,
} from "../snapshot/mod.js";
import { authBackendService } from "../transport/auth-backend-service.js";
import { HeartbeatClock } from "../transport/heartbeat-clock.js";
import { PeerTransport, type TransportLogger } from "../transport/peer-transport.js";
import { dialTlsFrom } from "../transport/tls-credentials.js";
import { serveService } from "../v3rpc/grpc-adapter.js";
import { MvccEventHistory, WatchableStore } from "../watch/mod.js";
import { MemberTracing } from "./member-tracing.js";
import { ReadIndexBatcher } from "./read-index-batcher.js";
import type { AuthMethod, EtcdServer, MemberStatus, RpcFlags } from "./server-api.js";
import { stageTimeline } from "./stage-timeline.js";
import { WaitRegistry } from "./wait-registry.js";

export interface MemberLogger extends TransportLogger {
  error(details: Record<string, unknown>, message: string): void;
  debug?(details: Record<string, unknown>, message: string): void;
}

export const SERVER_VERSION = ETCD_SERVER_VERSION;
export const CLUSTER_VERSION = ETCD_CLUSTER_VERSION;
const READ_INDEX_RETRY_MS = 500;
const PUBLISH_RETRY_MS = 500;
/** etcd's maxLeaseCheckpointBatchSize: checkpoints per LeaseCheckpoint entry. */
const LEASE_CHECKPOINT_BATCH = 1000;

export function proposalDroppedError(err: ProposalDroppedError): EtcdError {
  switch (err.reason) {
    case "no leader":
      return new EtcdError("NoLeader");
    case "leadership transfer in progress":
      return new EtcdError("LeaderChanged");
    case "too many uncommitted entries":
      return new EtcdError("TooManyRequests");
    case "not a member":
      return new EtcdError("Stopped");
    default:
      // Another membership change is still being applied; etcd's raft would turn this one into
      // an empty entry and the caller would time out, so say so at once.
      return new EtcdError("Timeout");
  }
}

export interface MemberEvents {
  /** This member was removed from the cluster and has stopped taking part. */
  onRemoved?(): void;
  /** An unrecoverable local failure (disk): the process should exit. */
  onFatal?(error: unknown): void;
  /** Where control-plane events go (NATS in main.ts); called on the Raft loop, so it must only queue. */
  controlPlane?: ClusterEvents;
}

/**
 * What other services may react to at once. The new leader reports its election; the leader at
 * apply time reports applied membership, alarm and compaction changes (one report per change
 * instead of one per member). Reports are hints: they can be lost, and nothing depends on them.
 */
export interface ClusterEvents {
  leaderElected(event: {
    clusterId: bigint;
    leaderId: bigint;
    term: number;
    name: string;
    clientUrls: string[];
  }): void;
  membersChanged(event: { clusterId: bigint; reporter: bigint; members: MemberInfo[] }): void;
  alarmsChanged(event: { clusterId: bigint; reporter: bigint; alarms: AlarmMember[] }): void;
  compacted(event: { clusterId: bigint; reporter: bigint; revision: number }): void;
  authChanged(event: { clusterId: bigint; reporter: bigint; revision: number; enabled: boolean }): void;
}

export class Member implements EtcdServer {
  readonly id: bigint;
  readonly clusterId: bigint;
  readonly name: string;
  readonly config: MemberConfig;
  readonly flags: RpcFlags;
  readonly watchable: WatchableStore;
  readonly transport: PeerTransport;
  readonly startedAt = Date.now();
  readonly published: Promise<void>;
  /** etcd's member metrics, in the registry given to open(). */
  readonly metrics: MemberMetrics;

  /** Replaced by a snapshot install. */
  private store: MvccStore;
  private readonly membership: MembersTable;
  private readonly lessor: Lessor;
  private readonly raft: RaftLoop;
  private readonly applier: EntryApplier;
  private readonly layout: Layout;
  private readonly leaseMachine: LeaseStateMachine;
  private readonly authStore = new AuthStore();
  /** services/auth's published JWT verification keys (auth column, "k/" rows). */
  private readonly signingKeys = new PublishedKeys();
  /** The auth state the last control-plane auth event reported (events only on a change). */
  private lastAuthEvent: { revision: number; enabled: boolean } | undefined;
  private readonly tokens: SimpleTokens;
  /** --auth-token jwt: tokens are signed and verified instead of kept in `tokens`. */
  private readonly jwt: JwtTokens | undefined;
  private readonly leaseIds: LeaseIdGenerator;
  private readonly leasePoller: LeasePoller;
  /** Set with --experimental-learner-auto-promote; promotions in flight are in promoting. */
  private readonly learnerPromotion: LearnerAutoPromotion | undefined;
  private readonly promoting = new Set<bigint>();
  private readonly proposals: WaitRegistry<ProposalContext>;
  private readonly reads: ReadIndexBatcher;
  /** Set only when tracing is on: every tracing call site tests it first. */
  private readonly tracer: MemberTracing | undefined;
  /** Members known from --initial-cluster or a peer, for bootstrap ConfChanges without context. */
  private readonly seedMembers: Map<bigint, MemberInfo>;
  private unsubscribeStore: () => void = () => {};
  private closed = false;
  private publishedResolve!: () => void;
  /** Snapshot images received from the leader, by snapshot index, waiting for Raft's Ready. */
  private readonly incomingImages = new Map<number, string>();
  /** Numbers the snapshot files Maintenance.Snapshot writes (several may stream at once). */
  private snapshotFiles = 0;

  private constructor(
    config: MemberConfig,
    private readonly logger: MemberLogger,
    private readonly events: MemberEvents,
    parts: Awaited<ReturnType<typeof bootstrap>>,
    lessor: Lessor,
    metrics: MemberMetrics,
  ) {
    const member = this;
    this.metrics = metrics;
    this.config = config;
    this.flags = config;
    this.name = config.name;
    this.id = parts.identity.memberId;
    this.clusterId = parts.identity.clusterId;
    this.layout = parts.layout;
    this.store = parts.store;
    this.membership = parts.members;
    this.seedMembers = parts.seed;
    this.lessor = lessor;
    const tracer = tracing.enabled ? new MemberTracing(this.id) : undefined;
    this.tracer = tracer;
    this.published = new Promise((resolve) => {
      this.publishedResolve = resolve;
    });

    // The view follows this.store, which a snapshot install replaces.
    this.leaseMachine = new LeaseStateMachine(this.lessor, {
      leaseOfLiveKey: (key) => {
        const entry = this.store.index.lookup(key.toString("latin1"));
        return entry?.isLive ? entry.lease : NO_LEASE;
      },
      leasedKeys: () => this.store.leasedKeys(),
      get revision() {
        return member.store.revision;
      },
    });
    this.leaseMachine.recover(parts.leaseRows);
    this.authStore.restore(parts.authRows);
    this.signingKeys.restore(parts.authRows);
    this.tokens = new SimpleTokens(config.authTokenTtl * 1000, () => performance.now());
    this.jwt = config.authToken.startsWith("jwt")
      ? new JwtTokens(
          parseJwtOptions(config.authToken.slice("jwt".length), (d) => parseGoDuration("auth-token", d)),
        )
      : undefined;
    this.leaseIds = new LeaseIdGenerator(this.id, Date.now());
    this.learnerPromotion = config.learnerAutoPromote
      ? new LearnerAutoPromotion({ maxLagEntries: 100, holdMs: config.electionMs })
      : undefined;
    this.leasePoller = new LeasePoller(this.lessor, {
      proposeRevoke: (id) => {
        const payload = etcdserverpb.LeaseRevokeRequest.encode({ ID: id }).finish();
        // etcd revokes expired leases as root (authStore.WithRoot): the auth link lets it.
        const root = this.authStore.enabled
          ? { username: ROOT_USER, revision: this.authStore.revision }
          : undefined;
        if (tracer === undefined) this.proposeInternal(EntryKind.LeaseRevoke, payload, root);
        else tracer.leaseExpiring(id, (t) => this.proposeInternal(EntryKind.LeaseRevoke, payload, root, t));
      },
      proposeCheckpoints: (checkpoints: LeaseCheckpoint[]) => {
        this.proposeInternal(EntryKind.LeaseCheckpoint, this.encodeCheckpoints(checkpoints));
      },
    });

    this.watchable = new WatchableStore({
      history: {
        compactedRevision: () => this.store.compactRevision,
        eventsBetween: (from, to, options) =>
          new MvccEventHistory(this.store).eventsBetween(from, to, options),
      },
      currentRevision: this.store.revision,
      onSyncError: (error) => this.logger.warn({ error: String(error) }, "watch catch-up failed"),
    });
    this.subscribeStore();
    this.watchable.start();

    const requestTimeoutMs = 5000 + 2 * config.electionMs;
    this.proposals = new WaitRegistry(requestTimeoutMs);
    this.reads = new ReadIndexBatcher({
      requestIndex: (ctx) => this.raft.readIndex(ctx),
      appliedIndex: () => this.applier.appliedIndex,
      now: () => performance.now(),
      timeoutMs: requestTimeoutMs,
      retryMs: READ_INDEX_RETRY_MS,
      timeoutError: () => this.timeoutError(),
    });

    this.raft = new RaftLoop(
      config,
      {
        id: this.id,
        storage: parts.storage,
        wal: parts.wal,
        snapshotter: parts.snapshotter,
        applied: parts.applied,
      },
      {
        send: (messages) => {
          this.heartbeatClock.sending(messages);
          this.transport.send(messages);
        },
        appliedIndex: () => this.applier.appliedIndex,
        applyCommitted: (entries) => {
          const started = performance.now();
          return this.applier.apply(entries).then((result) => {
            // etcd counts each request whose apply took over --experimental-warning-apply-duration
            // (100 ms); a batch applies as one write.
            if (performance.now() - started > config.warningApplyDurationMs) this.metrics.slowApplies.inc();
            tracer?.applied(entries, started);
            return result;
          });
        },
        restoreStateMachine: (snapshot) => this.restoreStateMachine(snapshot),
        syncStateMachine: () => this.store.syncToDisk(),
        prepareStateMachineSync: () => this.store.prepareSync(),
        leadershipChanged: (lead, isLeader, wasLeader) => {
          if (lead !== 0n && lead !== this.lastLeader) this.metrics.leaderChanges.inc();
          if (lead !== 0n) this.lastLeader = lead;
          if (isLeader && !wasLeader) {
            this.lessor.promote(config.electionMs);
            this.events.controlPlane?.leaderElected({
              clusterId: this.clusterId,
              leaderId: this.id,
              term: this.raft.term,
              name: this.name,
              // Its own flags: the membership has no client URLs before this member published them.
              clientUrls: config.advertiseClientUrls.map(urlString),
            });
          }
          if (!isLeader && wasLeader) {
            this.lessor.demote();
            this.learnerPromotion?.reset();
          }
        },
        readState: (ctx, index) => this.reads.onReadState(ctx, index),
        ticked: (now) => {
          this.promoteCaughtUpLearners(now);
          this.reads.tick();
          this.tokens.expire();
          const expired = this.proposals.expire(now, () => this.timeoutError());
          if (expired > 0) this.metrics.proposalsFailed.inc(expired);
        },
        fatal: (err) => this.events.onFatal?.(err),
        ...(tracer === undefined
          ? {}
          : {
              persisted: (entries, startedAt) => tracer.persisted(entries, startedAt),
              committed: (entries) => tracer.committed(entries),
            }),
      },
      logger,
    );
    this.applier = new EntryApplier(
      {
        memberId: this.id,
        chain: applierChain(
          () => this.store,
          () => this.authStore,
          (id) => this.lessor.lookup(id)?.keys ?? [],
        ),
        proposals: this.proposals,
        leaseMachine: this.leaseMachine,
        members: this.membership,
        auth: {
          store: this.authStore,
          tokens: this.tokens,
          assignSimpleTokens: this.jwt === undefined,
          signingKeys: this.signingKeys,
        },
        seedMembers: this.seedMembers,
        applyConfChange: (cc, index) => this.raft.applyConfChange(cc, index),
        membershipChanged: () => {
          this.refreshPeers();
          if (this.isLeader) {
            this.events.controlPlane?.membersChanged({
              clusterId: this.clusterId,
              reporter: this.id,
              members: this.membership.list(),
            });
          }
        },
        controlApplied: (request) => {
          const events = this.events.controlPlane;
          if (events === undefined || !this.isLeader) return;
          const origin = { clusterId: this.clusterId, reporter: this.id };
          if ("compaction" in request) events.compacted({ ...origin, revision: request.compaction.revision });
          else events.alarmsChanged({ ...origin, alarms: this.store.alarms() });
        },
        authApplied: () => {
          const events = this.events.controlPlane;
          if (events === undefined || !this.isLeader) return;
          const { revision, enabled } = this.authStore;
          const last = this.lastAuthEvent;
          // Authenticate and the Get/List calls are auth entries too, and change nothing.
          if (last !== undefined && last.revision === revision && last.enabled === enabled) return;
          this.lastAuthEvent = { revision, enabled };
          events.authChanged({ clusterId: this.clusterId, reporter: this.id, revision, enabled });
        },
        removed: () => {
          this.logger.warn({ member: formatId(this.id) }, "this member was removed from the cluster");
          setImmediate(() => this.events.onRemoved?.());
        },
        applied: (index) => this.reads.onApplied(index),
      },
      parts.applied,
    );
    this.transport = new PeerTransport(this.transportHandler(), logger, dialTlsFrom(config.peerTls));
    metrics.observe(
      {
        hasLeader: () => this.raft.leaderId !== 0n,
        isLeader: () => this.isLeader,
        committedIndex: () => this.raft.status().commit,
        appliedIndex: () => this.applier.appliedIndex,
        pendingProposals: () => this.proposals.size,
        dbSizeBytes: () => this.store.backendSize,
        dbSizeInUseBytes: () => this.store.backendSizeInUse,
        quotaBytes: () => this.store.quota,
        liveKeys: () => this.store.countLiveKeys(),
        watchers: () => this.watchable.syncedCount + this.watchable.unsyncedCount,
        opCounts: () => this.store.opCounts,
      },
      formatId(this.id),
    );
  }

  /** The leader last seen (etcd counts a change to a different known leader). */
  private lastLeader = 0n;
  private readonly heartbeatClock = new HeartbeatClock((to, seconds) =>
    this.metrics.peerRoundTripSeconds(to, seconds),
  );

  // ---- start-up -------------------------------------------------------------------------------

  /** Opens the member; its metrics go to `registry` (main.ts's, with the process metrics). */
  static async open(
    config: MemberConfig,
    logger: MemberLogger,
    events: MemberEvents = {},
    registry: Registry = new Registry(),
  ): Promise<Member> {
    const metrics = new MemberMetrics(registry, {
      serverVersion: SERVER_VERSION,
      clusterVersion: CLUSTER_VERSION,
    });
    const lessor = new Lessor({
      clock: () => performance.now(),
      minTtlSeconds: minLeaseTtlSeconds(config.heartbeatMs, config.electionMs),
      checkpointing: config.leaseCheckpoint,
      checkpointIntervalMs: config.leaseCheckpointIntervalMs,
      maxCheckpointBatch: LEASE_CHECKPOINT_BATCH,
    });
    const parts = await bootstrap(config, logger, (id) => lessor.lookup(id) !== undefined, {
      walFsync: (seconds) => metrics.walFsync.observe(seconds),
      backendCommit: (seconds) => metrics.backendCommit.observe(seconds),
    });
    const member = new Member(config, logger, events, parts, lessor, metrics);
    member.refreshPeers();
    return member;
  }

  /** Serves the peer service, starts Raft and publishes this member's attributes. */
  async start(peerTls?: ServerTls): Promise<void> {
    // services/auth's calls share the peer port: the only boundary password hashes cross.
    const authBackendImplementation = authBackendService(this, this.logger) as UntypedServiceImplementation;
    await this.transport.listen(this.config.listenPeerUrls, peerTls, (server) =>
      serveService(server, authBackend.AuthBackendService, authBackendImplementation),
    );
    this.raft.start();
    this.leasePoller.start();
    void this.publishLoop();
  }

  private async publishLoop(): Promise<void> {
    const attributes = memberCodec.encode({
      id: this.id,
      name: this.name,
      peerUrls: [],
      clientUrls: this.config.advertiseClientUrls.map(urlString),
      isLearner: false,
    });
    while (!this.raft.isStopped) {
      try {
        await this.propose(EntryKind.MemberAttributes, attributes, undefined);
        this.publishedResolve();
        return;
      } catch (err) {
        this.logger.debug?.({ error: String(err) }, "publish not applied yet; retrying");
        // Dropped for want of a leader (a restarted member's first try): again as soon as one
        // is known, not a fixed retry later (that wait was ~0.3-0.5 s of a restart's time).
        if (this.raft.leaderId === 0n) await this.raft.waitLeaderChange(PUBLISH_RETRY_MS);
        else await new Promise((r) => setTimeout(r, PUBLISH_RETRY_MS));
      }
    }
  }

  // ---- proposals --------------------------------------------------------------------------------

  /**
   * Proposes a request and resolves with its apply result on this member. `payload` is the
   * request's protobuf bytes as received; `context`, its decoded form, skips decoding at apply.
   */
  private propose(
    kind: EntryKind,
    payload: Uint8Array,
    context: ProposalContext,
    caller?: AuthInfo,
    trace?: TraceContext,
  ): Promise<unknown> {
    if (this.raft.isStopped) return Promise.reject(new EtcdError("Stopped"));
    if (payload.length > this.config.maxRequestBytes) return Promise.reject(new EtcdError("RequestTooLarge"));
    const { seq, done } = this.proposals.register<unknown>(context, performance.now());
    stageTimeline?.mark("proposed");
    const span = trace === undefined ? undefined : this.tracer?.proposing(kind, trace);
    const carried = span === undefined ? undefined : this.tracer!.proposed(seq, span, done);
    try {
      this.raft.propose(encodeEnvelope(kind, this.id, seq, payload, caller, carried));
    } catch (err) {
      this.metrics.proposalsFailed.inc();
      this.proposals.reject(
        seq,
        err instanceof ProposalDroppedError ? proposalDroppedError(err) : (err as Error),
      );
    }
    return done;
  }

  /** Proposals nobody waits for (lease expiry, checkpoints, alarms); failures are retried by their owners. */
  private proposeInternal(kind: EntryKind, payload: Uint8Array, caller?: AuthInfo, trace?: Uint8Array): void {
    if (this.raft.isStopped) return;
    try {
      this.raft.propose(encodeEnvelope(kind, this.id, 0, payload, caller, trace));
    } catch (err) {
      if (!(err instanceof ProposalDroppedError)) throw err;
    }
  }

  /** Proposes a membership change and resolves with the membership once applied here. */
  private proposeConfChange(type: ConfChangeType, member: MemberInfo): Promise<MemberInfo[]> {
    if (this.raft.isStopped) return Promise.reject(new EtcdError("Stopped"));
    const { seq, done } = this.proposals.register<MemberInfo[]>(undefined, performance.now());
    const context = encodeEnvelope(EntryKind.MemberConfChange, this.id, seq, memberCodec.encode(member));
    try {
      this.raft.proposeConfChange({ type, nodeId: member.id, context });
    } catch (err) {
      this.proposals.reject(
        seq,
        err instanceof ProposalDroppedError ? proposalDroppedError(err) : (err as Error),
      );
    }
    return done;
  }

  private timeoutError(): EtcdError {
    // etcd words a timeout shortly after a leader change differently (parseProposeCtxErr).
    const changedAt = this.raft.leaderChangedAt;
    if (changedAt > 0 && performance.now() - changedAt < 3 * this.config.electionMs) {
      return new EtcdError("TimeoutDueToLeaderFail");
    }
    return new EtcdError("Timeout");
  }

  // ---- RaftKV -----------------------------------------------------------------------------------

  range(request: RangeRequest): Promise<RangeResponse> {
    return this.store.range(request) as Promise<RangeResponse>;
  }

  rangeEncoded(request: RangeRequest): Promise<EncodedRangeResponse<Buffer | HeldPart>> {
    return this.store.rangeHeld(request);
  }

  linearizableRead(trace?: TraceContext): Promise<void> {
    if (this.raft.isStopped) return Promise.reject(new EtcdError("Stopped"));
    if (this.tracer !== undefined && trace !== undefined) {
      return this.tracer.linearizableRead(trace, (indexKnown) => this.reads.wait(indexKnown));
    }
    return this.reads.wait();
  }

  put(request: PutRequest, raw?: Uint8Array, caller?: AuthInfo, trace?: TraceContext): Promise<PutResponse> {
    // The store's PutRequest has the API's fields and types (the lease ID is a bigint in both).
    // Not an async function: the proposal's own promise is the answer (one promise less per put).
    try {
      const payload = raw ?? etcdserverpb.PutRequest.encode(request).finish();
      return this.propose(EntryKind.Put, payload, { put: request }, caller, trace) as Promise<PutResponse>;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async deleteRange(
    request: DeleteRangeRequest,
    raw?: Uint8Array,
    caller?: AuthInfo,
    trace?: TraceContext,
  ): Promise<DeleteRangeResponse> {
    const payload = raw ?? etcdserverpb.DeleteRangeRequest.encode(request).finish();
    return (await this.propose(
      EntryKind.DeleteRange,
      payload,
      { deleteRange: request },
      caller,
      trace,
    )) as DeleteRangeResponse;
  }

  async txn(
    request: TxnRequest,
    raw: Uint8Array,
    caller?: AuthInfo,
    trace?: TraceContext,
  ): Promise<TxnResponse> {
    return (await this.propose(EntryKind.Txn, raw, { txn: request }, caller, trace)) as TxnResponse;
  }

  async compact(
    request: CompactionRequest,
    raw?: Uint8Array,
    trace?: TraceContext,
  ): Promise<CompactionResponse> {
    const payload =
      raw ??
      etcdserverpb.CompactionRequest.encode({
        revision: BigInt(request.revision),
        physical: request.physical,
      }).finish();
    const res = (await this.propose(
      EntryKind.Compaction,
      payload,
      { compaction: request },
      undefined,
      trace,
    )) as CompactionResponse;
    // etcd's physical compaction answers once the old revisions are gone from the backend.
    if (request.physical) await this.store.compactionDone();
    return res;
  }

  // ---- quota and alarms ---------------------------------------------------------------------------

  quotaAvailable(request: { put: PutRequest } | { txn: TxnRequest } | { leaseGrant: unknown }): boolean {
    return this.store.quotaAvailable(request);
  }

  /** Raises the NOSPACE alarm (etcd's quota check before proposing a write). */
  raiseNoSpace(): void {
    const request = { action: 1, memberID: this.id, alarm: 1 };
    if (this.store.alarms(1).some((a) => a.memberID === this.id)) return;
    this.proposeInternal(EntryKind.Alarm, etcdserverpb.AlarmRequest.encode(request).finish());
  }

  alarms(type?: number): AlarmMember[] {
    return this.store.alarms(type);
  }

  async alarm(request: AlarmRequest): Promise<AlarmResponse> {
    return (await this.propose(EntryKind.Alarm, etcdserverpb.AlarmRequest.encode(request).finish(), {
      alarm: request,
    })) as AlarmResponse;
  }

  // ---- leases -------------------------------------------------------------------------------------

  nextLeaseId(): bigint {
    return this.leaseIds.next();
  }

  async leaseGrant(
    grant: { ID: bigint; TTL: number },
    raw?: Uint8Array,
    trace?: TraceContext,
  ): Promise<LeaseGrantApplied> {
    const payload =
      raw ?? etcdserverpb.LeaseGrantRequest.encode({ ID: grant.ID, TTL: BigInt(grant.TTL) }).finish();
    return (await this.propose(
      EntryKind.LeaseGrant,
      payload,
      undefined,
      undefined,
      trace,
    )) as LeaseGrantApplied;
  }

  async leaseRevoke(
    id: bigint,
    raw?: Uint8Array,
    caller?: AuthInfo,
    trace?: TraceContext,
  ): Promise<{ revision: number }> {
    const payload = raw ?? etcdserverpb.LeaseRevokeRequest.encode({ ID: id }).finish();
    return (await this.propose(EntryKind.LeaseRevoke, payload, undefined, caller, trace)) as {
      revision: number;
    };
  }

  leaseExists(id: bigint): boolean {
    return this.lessor.lookup(id) !== undefined;
  }

  leaseTimeToLive(id: bigint, keys: boolean): LeaseTimeToLive {
    return this.lessor.timeToLive(id, keys);
  }

  leases(): bigint[] {
    return this.lessor.leases();
  }

  async leaseRenew(id: bigint): Promise<number> {
    const { ttl, clear } = this.lessor.renew(id);
    if (clear !== undefined)
      await this.propose(EntryKind.LeaseCheckpoint, this.encodeCheckpoints([clear]), undefined);
    return ttl;
  }

  private encodeCheckpoints(checkpoints: readonly LeaseCheckpoint[]): Uint8Array {
    return etcdserverpb.LeaseCheckpointRequest.encode({
      checkpoints: checkpoints.map((c) => ({ ID: c.id, remainingTTL: BigInt(c.remainingTtl) })),
    }).finish();
  }

  /** Before a transfer: every lease's remaining TTL into the log the transferee must match. */
  private checkpointBeforeHandover(): void {
    const all = this.lessor.handoverCheckpoints();
    for (let i = 0; i < all.length; i += LEASE_CHECKPOINT_BATCH) {
      this.proposeInternal(
        EntryKind.LeaseCheckpoint,
        this.encodeCheckpoints(all.slice(i, i + LEASE_CHECKPOINT_BATCH)),
      );
    }
  }

  // ---- auth ---------------------------------------------------------------------------------------

  get authEnabled(): boolean {
    return this.authStore.enabled;
  }

  get authRevision(): number {
    return this.authStore.revision;
  }

  /**
   * etcd's AuthInfoFromCtx: who a token names (a simple token at the current auth revision, a
   * JWT at the revision it was issued at). A simple token names the entry that created it; a
   * member that has not applied that entry yet waits for it (etcd's indexWaiter), so a token
   * from the leader works at once on a follower.
   */
  async authInfoFromToken(token: string | undefined): Promise<AuthInfo | undefined> {
    if (token === undefined) return undefined;
    const kid = jwsKeyId(token);
    if (kid !== undefined) {
      // services/auth's token. A key published moments ago may not be applied here yet: wait
      // for what the leader has committed (once), as etcd waits for a simple token's entry.
      let checked = this.signingKeys.check(token, kid, Date.now());
      if ("unknownKey" in checked) {
        await this.linearizableRead().catch(() => {});
        checked = this.signingKeys.check(token, kid, Date.now());
      }
      if (!("info" in checked)) throw new EtcdError("InvalidAuthToken");
      return checked.info;
    }
    if (this.jwt !== undefined) {
      const info = this.jwt.info(token);
      if (info === undefined) throw new EtcdError("InvalidAuthToken");
      return info;
    }
    let username = this.tokens.userOf(token);
    if (username === undefined) {
      const index = Number(token.slice(token.lastIndexOf(".") + 1));
      if (Number.isSafeInteger(index) && index > this.applier.appliedIndex) {
        await this.reads.waitApplied(index).catch(() => {});
        username = this.tokens.userOf(token);
      }
    }
    if (username === undefined) throw new EtcdError("InvalidAuthToken");
    return { username, revision: this.authStore.revision };
  }

  authInfoFromCertificate(commonName: string): AuthInfo | undefined {
    if (!this.config.clientCertAuth) return undefined;
    return { username: commonName, revision: this.authStore.revision };
  }

  isRangePermitted(caller: AuthInfo | undefined, key: Buffer, rangeEnd: Buffer): void {
    this.authStore.isRangePermitted(caller, key, rangeEnd);
  }

  isAdminPermitted(caller: AuthInfo | undefined): void {
    this.authStore.isAdminPermitted(caller);
  }

  /**
   * etcd's Authenticate (v3_server.go): the password is compared here, off the apply path (on
   * libuv's pool), then an entry assigns the token on every member; if the auth store changed
   * between the check and the apply, the check is made again.
   */
  async authenticate(name: string, password: string): Promise<string> {
    await this.linearizableRead();
    for (let attempt = 0; ; attempt++) {
      const hash = this.authStore.passwordHashOf(name);
      const checkedRevision = this.authStore.revision;
      if (!(await passwordMatches(password, hash))) throw new EtcdError("AuthFailed");
      const payload = etcdserverpb.AuthenticateRequest.encode({
        name,
        password: simpleTokenPrefix(),
      }).finish();
      const applied = (await this.propose(EntryKind.Authenticate, payload, undefined)) as AuthenticateApplied;
      if (applied.revision === checkedRevision || attempt >= 2) {
        return this.jwt !== undefined ? this.jwt.assign(applied.username, applied.revision) : applied.token;
      }
    }
  }

  // ---- services/auth (peer port: transport/auth-backend-service.ts) ----------------------------

  /**
   * One user's bcrypt hash and the auth revision it was read at, after a linearizable read, or
   * etcd's Authenticate error (not enabled; unknown or password-less user: "authentication failed").
   */
  async authCredential(name: string): Promise<authBackend.CredentialResponse> {
    await this.linearizableRead();
    const authRevision = BigInt(this.authStore.revision);
    return {
      passwordHash: this.authStore.passwordHashOf(name),
      authRevision,
      header: apiHeader(this.header()),
    };
  }

  /** Whether auth is on and the auth store's revision, after a linearizable read. */
  async readAuthRevision(): Promise<authBackend.AuthRevisionResponse> {
    await this.linearizableRead();
    return {
      enabled: this.authStore.enabled,
      authRevision: BigInt(this.authStore.revision),
      header: apiHeader(this.header()),
    };
  }

  async putSigningKey(key: authBackend.SigningKey): Promise<authBackend.SigningKeySet> {
    PublishedKeys.validate(key);
    const payload = authBackend.SigningKey.encode(key).finish();
    return (await this.propose(EntryKind.AuthSigningKeyPut, payload, undefined)) as authBackend.SigningKeySet;
  }

  async deleteSigningKey(kid: string): Promise<authBackend.SigningKeySet> {
    const payload = authBackend.DeleteSigningKeyRequest.encode({ kid }).finish();
    return (await this.propose(
      EntryKind.AuthSigningKeyDelete,
      payload,
      undefined,
    )) as authBackend.SigningKeySet;
  }

  async listSigningKeys(): Promise<authBackend.SigningKeySet> {
    await this.linearizableRead();
    return { keys: this.signingKeys.list() };
  }

  /** An auth change or read through Raft; passwords are hashed here, before proposing. */
  async authCall(
    method: AuthMethod,
    request: Record<string, unknown>,
    caller?: AuthInfo,
    trace?: TraceContext,
  ): Promise<unknown> {
    const [kind, encode] = AUTH_METHODS[method];
    let message = request;
    if (method === "userAdd") {
      const r = request as unknown as etcdserverpb.AuthUserAddRequest;
      const noPassword = r.options?.noPassword ?? false;
      const hashed = noPassword
        ? ""
        : (await hashPassword(r.password, this.config.bcryptCost)).toString("latin1");
      message = { ...r, password: "", hashedPassword: hashed };
    } else if (method === "userChangePassword") {
      const r = request as unknown as etcdserverpb.AuthUserChangePasswordRequest;
      const hashed = (await hashPassword(r.password, this.config.bcryptCost)).toString("latin1");
      message = { ...r, password: "", hashedPassword: hashed };
    }
    return this.propose(kind, encode(message), undefined, caller, trace);
  }

  // ---- cluster ------------------------------------------------------------------------------------

  members(): MemberInfo[] {
    return this.membership.list();
  }

  async addMember(
    peerUrls: string[],
    isLearner: boolean,
  ): Promise<{ member: MemberInfo; members: MemberInfo[] }> {
    const info: MemberInfo = {
      // etcd's MemberAdd: NewMember("", urls, "", &now), no token, the unix seconds.
      id: memberIdFor(peerUrls, "", Math.floor(Date.now() / 1000)),
      name: "",
      peerUrls,
      clientUrls: [],
      isLearner,
    };
    this.membership.checkAdd(info, this.config.maxLearners);
    if (!isLearner && this.config.strictReconfigCheck) this.membership.checkEnoughStartedToAdd();
    const members = await this.proposeConfChange(
      isLearner ? ConfChangeType.AddLearnerNode : ConfChangeType.AddNode,
      info,
    );
    return { member: info, members };
  }

  async removeMember(id: bigint): Promise<MemberInfo[]> {
    this.membership.checkRemove(id);
    const target = this.membership.get(id)!;
    if (this.config.strictReconfigCheck && !target.isLearner) this.membership.checkEnoughStartedToRemove(id);
    return this.proposeConfChange(ConfChangeType.RemoveNode, target);
  }

  async updateMember(id: bigint, peerUrls: string[]): Promise<MemberInfo[]> {
    this.membership.checkUpdate(id, peerUrls);
    const current = this.membership.get(id)!;
    await this.propose(EntryKind.MemberUpdate, memberCodec.encode({ ...current, peerUrls }), undefined);
    return this.membership.list();
  }

  /**
   * --experimental-learner-auto-promote: caught up means a match index within 100 entries of
   * the leader's (and etcd's 90% check) on every tick for one election timeout.
   */
  private promoteCaughtUpLearners(now: number): void {
    if (this.learnerPromotion === undefined || !this.isLeader) return;
    const status = this.raft.status();
    const own = status.progress.get(this.id);
    if (own === undefined) return;
    const learners = new Map<bigint, number>();
    for (const [id, pr] of status.progress)
      if (pr.isLearner && !this.promoting.has(id)) learners.set(id, pr.match);
    for (const id of this.learnerPromotion.due(now, own.match, learners)) {
      this.promoting.add(id);
      this.promoteMember(id)
        .then(
          () => this.logger.info({ member: formatId(id) }, "promoted a caught-up learner"),
          (err: unknown) =>
            this.logger.warn({ member: formatId(id), error: String(err) }, "learner promotion failed"),
        )
        .finally(() => this.promoting.delete(id));
    }
  }

  async promoteMember(id: bigint): Promise<MemberInfo[]> {
    this.membership.checkPromote(id);
    const status = this.raft.status();
    const learner = status.progress.get(id);
    const own = status.progress.get(this.id);
    if (learner === undefined || own === undefined || !learnerInSync(learner.match, own.match)) {
      throw new EtcdError("LearnerNotReady");
    }
    const target = this.membership.get(id)!;
    return this.proposeConfChange(ConfChangeType.AddNode, { ...target, isLearner: false });
  }

  // ---- queries ----------------------------------------------------------------------------------

  header(revision = this.store.revision): ResponseHeader {
    return { clusterId: this.clusterId, memberId: this.id, revision, raftTerm: this.raft.term };
  }

  isLearner(): boolean {
    return this.membership.get(this.id)?.isLearner ?? this.raft.learners.includes(this.id);
  }

  get isLeader(): boolean {
    return this.raft.role === StateRole.Leader;
  }

  get leaderId(): bigint {
    return this.raft.leaderId;
  }

  get applied(): number {
    return this.applier.appliedIndex;
  }

  raftStatus(): Status {
    return this.raft.status();
  }

  leaderClientUrls(): string[] {
    return this.membership.get(this.raft.leaderId)?.clientUrls ?? [];
  }

  // ---- maintenance --------------------------------------------------------------------------------

  status(): MemberStatus {
    const raft = this.raft.status();
    return {
      dbSize: this.store.backendSize,
      dbSizeInUse: this.store.backendSizeInUse,
      dbSizeQuota: this.store.quota,
      raftIndex: raft.commit,
      raftTerm: raft.term,
      raftAppliedIndex: this.applier.appliedIndex,
    };
  }

  async defragment(): Promise<void> {
    const started = performance.now();
    const before = this.store.backendSize;
    await this.store.defragment();
    // etcd logs its defrag too ("finished defragmenting directory"); the phases say what held applies.
    this.logger.info(
      {
        took_ms: Math.round(performance.now() - started),
        phases_ms: this.store.lastDefragPhasesMs,
        size_before: before,
        size_after: this.store.backendSize,
      },
      "finished defragmenting the backend",
    );
  }

  hash(): Promise<{ hash: number; revision: number }> {
    return this.store.hash();
  }

  hashKV(revision: number): Promise<HashKVResponse> {
    return this.store.hashKV(revision) as Promise<HashKVResponse>;
  }

  async moveLeader(target: bigint, timeoutMs: number): Promise<boolean> {
    if (!this.isLeader) throw new EtcdError("NotLeader");
    const member = this.membership.get(target);
    if (member === undefined || member.isLearner) throw new EtcdError("BadLeaderTransferee");
    if (target === this.id) return true;
    this.checkpointBeforeHandover();
    return this.raft.transferLeadership(target, timeoutMs);
  }

  async streamSnapshot(sink: SnapshotSink): Promise<{ size: number; sha256: Buffer }> {
    await removeStaleSnapshotFiles(this.layout.snapDir);
    const path = join(this.layout.snapDir, `client-${process.pid}-${++this.snapshotFiles}.db`);
    try {
      const started = performance.now();
      // Encoded on a worker thread, from a view of this moment (backend-file-worker.ts).
      const context = { memberCodec, clusterVersion: CLUSTER_VERSION };
      // A large key space is read by two threads, one per core, each half of the revisions.
      const split = keySplitAt(this.store.compactRevision, this.store.revision, availableParallelism());
      // How busy this thread is with writes: the workers and the send pace themselves by it.
      const load = new WriteLoad(() => this.applier.appliedIndex);
      const { size, sha256, stagesMs } = await writeBackendFileOffThread(
        this.store,
        context,
        path,
        split,
        () => load.busy,
      );
      try {
        const written = performance.now();
        this.metrics.backendSnapshot.observe((written - started) / 1000);
        // Sending stays here (the call is this thread's), which is then not the member's load.
        load.ownWork();
        const pacer = new WritePacer(
          () => load.busy,
          SNAPSHOT_SEND_YIELD_FACTOR,
          (ms) => load.pause(ms),
          () => load.probeDue(),
        );
        let sendPausedMs = 0;
        await sendBackendFile(path, size, {
          begin: (bytes) => sink.begin(bytes),
          write: async (chunk) => {
            const sending = performance.now();
            await sink.write(chunk);
            const pausing = performance.now();
            if (await pacer.pause(pausing - sending)) sendPausedMs += performance.now() - pausing;
          },
        });
        const digest = await sha256;
        // etcd logs the same ("sent database snapshot to writer").
        this.logger.info(
          {
            size,
            threads: split === undefined ? 1 : 2,
            write_ms: Math.round(written - started),
            send_ms: Math.round(performance.now() - written),
            stages_ms: stagesMs,
            send_paused_ms: Math.round(sendPausedMs),
            // The member's mean busy share with writes while the snapshot was written and sent.
            write_load: Math.round(load.mean * 1000) / 1000,
          },
          "sent database snapshot to client",
        );
        return { size, sha256: digest };
      } finally {
        // The worker reads the file until then.
        await sha256.catch(() => {});
      }
    } finally {
      await rm(path, { force: true });
    }
  }

  // ---- snapshots from the leader ----------------------------------------------------------------

  /**
   * The state machine's image for a follower, and the snapshot metadata to send with it: the
   * image's own applied index and term (read from its "meta" rows) and the configuration at that
   * index. The image is cut when it is written, after the Raft snapshot's index; stamping the
   * message with what the image holds (etcd's createMergedSnapshotMessage) keeps a follower's
   * state machine from running ahead of its log.
   */
  private async writeSnapshotImage(path: string): Promise<{ size: number; metadata: SnapshotMetadata }> {
    let applied: { index?: number; term?: number } = {};
    const rows = this.store.exportRows();
    const size = await writeStateImage(
      (async function* () {
        for await (const block of rows) {
          if (block.column === META_COLUMN)
            applied = { ...applied, ...appliedInMetaRows(block.keys, block.values) };
          yield block;
        }
      })(),
      path,
    );
    const { index, term } = applied;
    if (index === undefined || term === undefined) throw new Error("the state image has no applied index");
    const confState = this.raft.confStateAt(index);
    // Raft asks again (a later image, or once the replay has passed a pending ConfChange).
    if (confState === undefined) throw new Error(`the configuration at ${index} is not known here`);
    return { size, metadata: { index, term, confState } };
  }

  /** Replaces the state machine with the image the leader streamed for `snapshot`. */
  private async restoreStateMachine(snapshot: Snapshot): Promise<void> {
    const { index, term } = snapshot.metadata;
    const image = this.incomingImages.get(index);
    if (image === undefined) throw new Error(`no received image for snapshot at index ${index}`);
    this.incomingImages.delete(index);
    const location = this.layout.dbDir;
    const incoming = `${location}.incoming`;
    await rm(incoming, { recursive: true, force: true });
    let applied: { index?: number; term?: number } = {};
    await importStateImage(image, incoming, ["meta", ...EXTRA_COLUMNS], (block: RowBlock) => {
      if (block.column === META_COLUMN)
        applied = { ...applied, ...appliedInMetaRows(block.keys, block.values) };
    });
    // The leader stamps the message with its image's applied point: anything else would leave
    // this state machine out of step with the Raft log (ahead of it, or missing entries).
    if (applied.index !== index || applied.term !== term) {
      await rm(incoming, { recursive: true, force: true });
      throw new Error(
        `the snapshot at ${index} (term ${term}) came with an image applied to ${applied.index} (term ${applied.term})`,
      );
    }
    this.unsubscribeStore();
    await this.store.close();
    // The .old copy is only deleted once the new database is in place; bootstrap puts it back
    // if a crash comes between the two renames.
    await rename(location, `${location}.old`);
    await rename(incoming, location);
    await rm(`${location}.old`, { recursive: true, force: true });
    await rm(image, { force: true });
    this.store = await openStore(location, this.config, (id) => this.lessor.lookup(id) !== undefined, {
      backendCommit: (seconds) => this.metrics.backendCommit.observe(seconds),
    });
    const columns = this.store.extraColumnRows();
    this.membership.restore(columns.get(MEMBERS_COLUMN) ?? []);
    this.authStore.restore(columns.get(AUTH_COLUMN) ?? []);
    this.signingKeys.restore(columns.get(AUTH_COLUMN) ?? []);
    this.leaseMachine.recover(columns.get(LEASE_COLUMN) ?? []);
    this.subscribeStore();
    this.watchable.restored(this.store.revision);
    this.applier.restored(index);
    this.refreshPeers();
    this.logger.info({ index, revision: this.store.revision }, "installed snapshot from the leader");
  }

  private subscribeStore(): void {
    const store = this.store;
    this.unsubscribeStore = store.subscribe(
      (txn) => {
        this.leaseMachine.observe(txn);
        // mvcc's events always carry a kv; its generated-style type just cannot say so.
        const events = txn.events as Parameters<WatchableStore["notify"]>[1];
        const watchers = this.watchable.syncedCount;
        if (this.tracer === undefined || watchers === 0 || events.length === 0) {
          this.watchable.notify(txn.revision, events, txn.prevKvs);
        } else {
          this.tracer.watchDelivery(txn.revision, events.length, watchers, () =>
            this.watchable.notify(txn.revision, events, txn.prevKvs),
          );
        }
      },
      { prevKv: () => this.watchable.wantsPrevKv() },
    );
  }

  private refreshPeers(): void {
    const peers = new Map<bigint, string[]>();
    for (const m of this.seedMembers.values()) peers.set(m.id, m.peerUrls);
    for (const m of this.membership.list()) peers.set(m.id, m.peerUrls);
    for (const id of [...peers.keys()]) if (this.membership.isRemoved(id)) peers.delete(id);
    this.transport.setPeers(peers);
  }

  private transportHandler() {
    const member = this;
    return {
      get clusterId() {
        return member.clusterId;
      },
      get memberId() {
        return member.id;
      },
      get snapshotDir() {
        return member.layout.snapDir;
      },
      receive(messages: Message[]) {
        eventTrace?.add(
          `rx ${messages.map((m) => `${m.type}/${m.entries.length}/${m.index}/${m.commit}`).join(",")}`,
        );
        if (stageTimeline !== undefined) {
          for (const m of messages) {
            if (m.type === MessageType.MsgAppResp && !m.reject) stageTimeline.markAck("resp.recv", m.index);
            else if (m.type === MessageType.MsgApp && m.entries.length > 0) stageTimeline.begin("F.app.recv");
            else if (m.type === MessageType.MsgApp) stageTimeline.mark("F.commit.recv");
          }
        }
        member.heartbeatClock.receiving(messages);
        member.raft.step(messages);
      },
      bytesSent: (to: bigint, bytes: number) => member.metrics.peerBytesSent(to, bytes),
      bytesReceived: (from: bigint, bytes: number) => member.metrics.peerBytesReceived(from, bytes),
      dropped(messages: readonly Message[]) {
        if (messages.length > 0) member.metrics.peerSendFailed(messages[0]!.to, messages.length);
        for (const m of messages) {
          if (m.type !== MessageType.MsgHeartbeat) continue;
          member.metrics.heartbeatSendFailures.inc();
          member.heartbeatClock.forget(m.to);
        }
      },
      snapshotReceiveFailed: (from: bigint | undefined) => member.metrics.snapshotReceived(from, false),
      isRemoved: (id: bigint) => member.membership.isRemoved(id),
      clusterInfo: (): peer.ClusterInfoResponse => ({
        clusterId: member.clusterId,
        memberId: member.id,
        members: member.membership.list().map((m) => ({
          ID: m.id,
          name: m.name,
          peerURLs: m.peerUrls,
          clientURLs: m.clientUrls,
          isLearner: m.isLearner,
        })),
      }),
      hashKV: async (revision: number) => {
        const res = await member.hashKV(revision);
        return apiHashKV(res, member.header(res.header?.revision));
      },
      reportUnreachable(id: bigint) {
        member.raft.reportUnreachable(id);
      },
      reportSnapshot(id: bigint, ok: boolean) {
        member.metrics.snapshotSent(id, ok);
        member.raft.reportSnapshot(id, ok);
      },
      writeSnapshotImage: (path: string) => member.writeSnapshotImage(path),
      async snapshotReceived(message: Message, imagePath: string) {
        const index = message.snapshot?.metadata.index;
        if (message.type !== MessageType.MsgSnap || index === undefined) {
          throw new Error("a snapshot call without a MsgSnap");
        }
        const previous = member.incomingImages.get(index);
        if (previous !== undefined) await rm(previous, { force: true });
        member.incomingImages.set(index, imagePath);
        member.metrics.snapshotReceived(message.from, true);
        member.raft.step([message]);
      },
    };
  }

  // ---- shutdown ------------------------------------------------------------------------------------

  /** etcd's graceful stop: a leader first hands over to the most up-to-date voter. */
  async handOverLeadership(): Promise<void> {
    if (!this.isLeader || this.raft.isStopped) return;
    const target = this.raft.mostUpToDateVoter();
    if (target === undefined) return;
    this.logger.info({ transferee: formatId(target) }, "leader is stopping: transferring leadership");
    this.checkpointBeforeHandover();
    await this.raft.transferLeadership(target, this.config.electionMs * 2);
  }

  async stop(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.leasePoller.stop();
    this.watchable.stop();
    await this.raft.stop();
    this.proposals.rejectAll(() => new EtcdError("Stopped"));
    this.reads.rejectAll(() => new EtcdError("Stopped"));
    await this.transport.close();
    await this.raft.closeWal();
    this.unsubscribeStore();
    await this.store.close().catch(() => {});
  }
}

/** Snapshot files left by an earlier process (killed mid-stream) are garbage; ours carry our pid. */
async function removeStaleSnapshotFiles(dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    const pid = /^client-(\d+)-\d+\.(db|image)$/.exec(name)?.[1];
    if (pid !== undefined && Number(pid) !== process.pid) await rm(join(dir, name), { force: true });
  }
}

type Encoder = (message: Record<string, unknown>) => Uint8Array;
const encoder =
  <T>(codec: { encode(m: T): { finish(): Uint8Array } }): Encoder =>
  (m) =>
    codec.encode(m as T).finish();

/** Each auth call's entry kind and request codec. */
const AUTH_METHODS: Record<AuthMethod, [EntryKind, Encoder]> = {
  authEnable: [EntryKind.AuthEnable, encoder(etcdserverpb.AuthEnableRequest)],
  authDisable: [EntryKind.AuthDisable, encoder(etcdserverpb.AuthDisableRequest)],
  userAdd: [EntryKind.AuthUserAdd, encoder(etcdserverpb.AuthUserAddRequest)],
  userDelete: [EntryKind.AuthUserDelete, encoder(etcdserverpb.AuthUserDeleteRequest)],
  userChangePassword: [EntryKind.AuthUserChangePassword, encoder(etcdserverpb.AuthUserChangePasswordRequest)],
  userGrantRole: [EntryKind.AuthUserGrantRole, encoder(etcdserverpb.AuthUserGrantRoleRequest)],
  userRevokeRole: [EntryKind.AuthUserRevokeRole, encoder(etcdserverpb.AuthUserRevokeRoleRequest)],
  userGet: [EntryKind.AuthUserGet, encoder(etcdserverpb.AuthUserGetRequest)],
  userList: [EntryKind.AuthUserList, encoder(etcdserverpb.AuthUserListRequest)],
  roleAdd: [EntryKind.AuthRoleAdd, encoder(etcdserverpb.AuthRoleAddRequest)],
  roleDelete: [EntryKind.AuthRoleDelete, encoder(etcdserverpb.AuthRoleDeleteRequest)],
  roleGrantPermission: [
    EntryKind.AuthRoleGrantPermission,
    encoder(etcdserverpb.AuthRoleGrantPermissionRequest),
  ],
  roleRevokePermission: [
    EntryKind.AuthRoleRevokePermission,
    encoder(etcdserverpb.AuthRoleRevokePermissionRequest),
  ],
  roleGet: [EntryKind.AuthRoleGet, encoder(etcdserverpb.AuthRoleGetRequest)],
  roleList: [EntryKind.AuthRoleList, encoder(etcdserverpb.AuthRoleListRequest)],
};
