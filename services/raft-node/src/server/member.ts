// One etcd member: Raft core + WAL + MVCC state machine + leases + watches + membership, wired
// in etcd's order (server.go / raft.go): a tick timer drives Raft; each Ready is persisted to the
// WAL (fsynced, group-committed), appended to the in-memory log, sent to peers, and its committed
// entries are applied to RocksDB in one batch together with the applied index; then advance().
// Client calls wait in a registry for their entry to be applied here; linearizable reads wait
// for a batched ReadIndex round.
import { mkdir, open, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { EtcdError, etcdserverpb, type peer } from "@etcd-ts/api";
import {
  bootstrapStorage,
  type ConfChange,
  ConfChangeType,
  type ConfState,
  decodeConfChange,
  type Entry,
  EntryType,
  MemoryStorage,
  type Message,
  MessageType,
  ProposalDroppedError,
  RawNode,
  type Ready,
  type Snapshot,
  StateRole,
} from "@etcd-ts/raft";
import type { Server } from "@grpc/grpc-js";
import type { MemberConfig } from "../config/flags.js";
import {
  LEASE_COLUMN,
  type LeaseCheckpoint,
  LeaseIdGenerator,
  LeasePoller,
  LeaseStateMachine,
  Lessor,
  minLeaseTtlSeconds,
  NO_LEASE,
} from "../lease/mod.js";
import { clusterIdFor, formatId, memberIdFor } from "../membership/member-id.js";
import {
  MEMBERS_COLUMN,
  type MemberInfo,
  type MemberRow,
  MembersTable,
} from "../membership/members-table.js";
import {
  type ApplyEntry,
  type ApplyResult,
  type ExternalApply,
  type MvccRequest,
  MvccStore,
} from "../mvcc/mod.js";
import { RocksBackend } from "../mvcc/rocks-backend.js";
import type { KeyPair } from "../transport/auto-tls.js";
import { fetchClusterInfo, PeerTransport, type TransportLogger } from "../transport/peer-transport.js";
import { Snapshotter, Wal } from "../wal/mod.js";
import { MvccEventHistory, WatchableStore } from "../watch/mod.js";
import { decodeEnvelope, type EntryEnvelope, EntryKind, encodeEnvelope } from "./entry-envelope.js";
import { ReadIndexBatcher } from "./read-index-batcher.js";
import { compactionIndex, shouldSnapshot } from "./snapshot-policy.js";
import { importStateImage, writeStateImage } from "./state-image.js";
import { WaitRegistry } from "./wait-registry.js";

export interface MemberLogger extends TransportLogger {
  error(details: Record<string, unknown>, message: string): void;
  debug?(details: Record<string, unknown>, message: string): void;
}

/** What a proposer already holds for its request: the decoded form, reused at apply. */
type ProposalContext = MvccRequest | undefined;

export const SERVER_VERSION = "3.4.23";
export const CLUSTER_VERSION = "3.4.0";
const EXTRA_COLUMNS = [LEASE_COLUMN, MEMBERS_COLUMN] as const;
const READ_INDEX_RETRY_MS = 500;
const PUBLISH_RETRY_MS = 500;

export const memberCodec = {
  encode(m: MemberInfo): Buffer {
    return Buffer.from(
      etcdserverpb.Member.encode({
        ID: m.id,
        name: m.name,
        peerURLs: m.peerUrls,
        clientURLs: m.clientUrls,
        isLearner: m.isLearner,
      }).finish(),
    );
  },
  decode(bytes: Uint8Array): MemberInfo {
    const m = etcdserverpb.Member.decode(bytes);
    return { id: m.ID, name: m.name, peerUrls: m.peerURLs, clientUrls: m.clientURLs, isLearner: m.isLearner };
  },
};

/** "http://127.0.0.1:2380/" -> "http://127.0.0.1:2380", the form etcd keeps and prints. */
export function urlString(url: URL): string {
  if (url.protocol === "unix:") return url.href;
  return `${url.protocol}//${url.host}`;
}

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

export interface Identity {
  memberId: number;
  clusterId: number;
}

export interface Layout {
  memberDir: string;
  walDir: string;
  snapDir: string;
  dbDir: string;
  identityFile: string;
}

export function layoutOf(config: MemberConfig): Layout {
  const memberDir = join(config.dataDir, "member");
  const snapDir = join(memberDir, "snap");
  return {
    memberDir,
    walDir: config.walDir !== "" ? config.walDir : join(memberDir, "wal"),
    snapDir,
    dbDir: join(snapDir, "db"),
    identityFile: join(memberDir, "identity"),
  };
}

async function readIdentity(path: string): Promise<Identity | undefined> {
  try {
    const bytes = await readFile(path);
    if (bytes.length !== 16) throw new Error(`${path} is ${bytes.length} bytes, expected 16`);
    return { memberId: Number(bytes.readBigUInt64BE(0)), clusterId: Number(bytes.readBigUInt64BE(8)) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

async function writeIdentity(path: string, identity: Identity): Promise<void> {
  const bytes = Buffer.alloc(16);
  bytes.writeBigUInt64BE(BigInt(identity.memberId), 0);
  bytes.writeBigUInt64BE(BigInt(identity.clusterId), 8);
  const tmp = `${path}.tmp`;
  const handle = await open(tmp, "w");
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, path);
}

/**
 * A new cluster's first state on disk: this member's identity and a WAL holding the bootstrap
 * ConfChanges for every --initial-cluster member (added to `seed`). Used at a member's first
 * start and by `snapshot restore`, which also leaves a database whose applied index covers them.
 */
export async function bootstrapNewCluster(
  config: MemberConfig,
  layout: Layout,
  logger: MemberLogger,
  seed = new Map<number, MemberInfo>(),
): Promise<{ identity: Identity; storage: MemoryStorage; wal: Wal }> {
  const ownPeerUrls = config.initialAdvertisePeerUrls.map(urlString);
  const ids: number[] = [];
  let own: number | undefined;
  for (const [name, urls] of config.initialCluster) {
    const peerUrls = urls.map(urlString);
    const id = memberIdFor(peerUrls, config.initialClusterToken);
    ids.push(id);
    seed.set(id, { id, name: "", peerUrls, clientUrls: [], isLearner: false });
    if (name === config.name) {
      if ([...peerUrls].sort().join(",") !== [...ownPeerUrls].sort().join(",")) {
        throw new Error(
          `--initial-cluster has ${name}=${peerUrls.join(",")} but --initial-advertise-peer-urls is ${ownPeerUrls.join(",")}`,
        );
      }
      own = id;
    }
  }
  if (own === undefined)
    throw new Error(`couldn't find local name "${config.name}" in the initial cluster configuration`);
  const identity = { memberId: own, clusterId: clusterIdFor(ids) };
  const storage = bootstrapStorage(ids);
  const wal = await Wal.create(layout.walDir, { logger });
  const initial = storage.initialState();
  await wal.save(initial.hardState, storage.entries(storage.firstIndex(), storage.lastIndex() + 1, Infinity));
  await writeIdentity(layout.identityFile, identity);
  logger.info(
    {
      member: formatId(identity.memberId),
      cluster: formatId(identity.clusterId),
      voters: ids.map(formatId),
    },
    "starting a new cluster",
  );
  return { identity, storage, wal };
}

async function readColumns(location: string): Promise<Map<string, { key: Buffer; value: Buffer }[]>> {
  const db = await RocksBackend.open(location, ["meta", ...EXTRA_COLUMNS]);
  const out = new Map<string, { key: Buffer; value: Buffer }[]>();
  try {
    for (const column of EXTRA_COLUMNS) {
      const rows: { key: Buffer; value: Buffer }[] = [];
      const it = db.iterator({ column: db.columns[column]! });
      try {
        for (;;) {
          const chunk = it.nextSync(1000);
          for (let i = 0; i < chunk.keys.length; i++)
            rows.push({ key: chunk.keys[i]!, value: chunk.values[i]! });
          if (chunk.finished) break;
        }
      } finally {
        it.close();
      }
      out.set(column, rows);
    }
  } finally {
    await db.close();
  }
  return out;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

export interface MemberEvents {
  /** This member was removed from the cluster and has stopped taking part. */
  onRemoved?(): void;
  /** An unrecoverable local failure (disk): the process should exit. */
  onFatal?(error: unknown): void;
}

export class Member {
  readonly id: number;
  readonly clusterId: number;
  readonly name: string;
  readonly config: MemberConfig;
  readonly members: MembersTable;
  readonly lessor: Lessor;
  readonly watchable: WatchableStore;
  readonly transport: PeerTransport;
  readonly startedAt = Date.now();

  store: MvccStore;
  term = 0;
  leaderId = 0;
  role: StateRole = StateRole.Follower;
  /** When leadership last changed, on the monotonic clock; for etcd's timeout wording. */
  leaderChangedAt = 0;

  private readonly raw: RawNode;
  private readonly storage: MemoryStorage;
  private readonly wal: Wal;
  private readonly snapshotter: Snapshotter;
  private readonly layout: Layout;
  private readonly leaseMachine: LeaseStateMachine;
  private readonly leaseIds: LeaseIdGenerator;
  private readonly leasePoller: LeasePoller;
  private readonly proposals: WaitRegistry<ProposalContext>;
  private readonly reads: ReadIndexBatcher;
  /** Members known from --initial-cluster or a peer, for bootstrap ConfChanges without context. */
  private readonly seedMembers: Map<number, MemberInfo>;
  private unsubscribeStore: () => void = () => {};
  private confState: ConfState;
  private snapshotIndex: number;
  private appliedIndex = 0;
  private readyScheduled = false;
  private inReady = false;
  private readyIdle: (() => void)[] = [];
  private tickTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private publishedResolve!: () => void;
  readonly published: Promise<void>;
  /** Snapshot images received from the leader, by snapshot index, waiting for Raft's Ready. */
  private readonly incomingImages = new Map<number, string>();
  private leaderWatchers: (() => void)[] = [];

  private constructor(
    config: MemberConfig,
    private readonly logger: MemberLogger,
    private readonly events: MemberEvents,
    parts: {
      identity: Identity;
      layout: Layout;
      wal: Wal;
      snapshotter: Snapshotter;
      storage: MemoryStorage;
      store: MvccStore;
      members: MembersTable;
      seed: Map<number, MemberInfo>;
      leaseRows: { key: Buffer; value: Buffer }[];
      applied: number;
    },
  ) {
    const member = this;
    this.config = config;
    this.name = config.name;
    this.id = parts.identity.memberId;
    this.clusterId = parts.identity.clusterId;
    this.layout = parts.layout;
    this.wal = parts.wal;
    this.snapshotter = parts.snapshotter;
    this.storage = parts.storage;
    this.store = parts.store;
    this.members = parts.members;
    this.seedMembers = parts.seed;
    this.published = new Promise((resolve) => {
      this.publishedResolve = resolve;
    });

    const initial = this.storage.initialState();
    this.confState = initial.confState;
    this.snapshotIndex = this.storage.snapshot().metadata.index;
    this.term = initial.hardState.term;

    this.lessor = new Lessor({
      clock: () => performance.now(),
      minTtlSeconds: minLeaseTtlSeconds(config.heartbeatMs, config.electionMs),
      checkpointing: config.leaseCheckpoint,
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
    this.leaseIds = new LeaseIdGenerator(this.id, Date.now());
    this.leasePoller = new LeasePoller(this.lessor, {
      proposeRevoke: (id) => {
        const payload = etcdserverpb.LeaseRevokeRequest.encode({ ID: id }).finish();
        this.proposeInternal(EntryKind.LeaseRevoke, payload);
      },
      proposeCheckpoints: (checkpoints: LeaseCheckpoint[]) => {
        const payload = etcdserverpb.LeaseCheckpointRequest.encode({
          checkpoints: checkpoints.map((c) => ({ ID: c.id, remainingTTL: c.remainingTtl })),
        }).finish();
        this.proposeInternal(EntryKind.LeaseCheckpoint, payload);
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
      requestIndex: (ctx) => {
        this.raw.readIndex(ctx);
        this.kick();
      },
      appliedIndex: () => this.appliedIndex,
      now: () => performance.now(),
      timeoutMs: requestTimeoutMs,
      retryMs: READ_INDEX_RETRY_MS,
      timeoutError: () => this.timeoutError(),
    });

    this.appliedIndex = parts.applied;
    this.raw = new RawNode({
      id: this.id,
      storage: this.storage,
      electionTick: Math.max(2, Math.round(config.electionMs / config.heartbeatMs)),
      heartbeatTick: 1,
      random: Math.random,
      applied: parts.applied,
      checkQuorum: true,
      preVote: config.preVote,
      maxSizePerMsg: 1024 * 1024,
      maxInflightMsgs: 512,
    });
    this.transport = new PeerTransport(this.transportHandler(), logger);
  }

  // ---- start-up -------------------------------------------------------------------------------

  static async open(config: MemberConfig, logger: MemberLogger, events: MemberEvents = {}): Promise<Member> {
    const layout = layoutOf(config);
    await mkdir(layout.snapDir, { recursive: true });
    await recoverInterruptedInstall(layout.dbDir);
    const walExists = await Wal.exists(layout.walDir);
    const snapshotter = new Snapshotter(layout.snapDir, { logger });
    const ownPeerUrls = config.initialAdvertisePeerUrls.map(urlString);
    const members = new MembersTable(memberCodec);
    const seed = new Map<number, MemberInfo>();
    let identity: Identity;
    let storage: MemoryStorage;
    let wal: Wal;
    let applied = 0;

    if (walExists) {
      const known = await readIdentity(layout.identityFile);
      if (known === undefined)
        throw new Error(`${layout.identityFile} is missing: the data dir is incomplete`);
      identity = known;
      const opened = await Wal.open(layout.walDir, { logger });
      wal = opened.wal;
      const recovered = opened.recovered;
      storage = new MemoryStorage();
      if (recovered.snapshot !== undefined) {
        const wanted = recovered.snapshot;
        const { loaded } = await snapshotter.loadNewest(
          (m) => m.index === wanted.index && m.term === wanted.term,
        );
        if (loaded === undefined) throw new Error(`snapshot file for index ${wanted.index} is missing`);
        storage.applySnapshot(loaded.snapshot);
        applied = loaded.snapshot.metadata.index;
      }
      if (recovered.hardState) storage.setHardState(recovered.hardState);
      storage.append(recovered.entries);
      logger.info(
        {
          member: formatId(identity.memberId),
          cluster: formatId(identity.clusterId),
          snapshotIndex: applied,
          entries: recovered.entries.length,
        },
        "restarting member",
      );
    } else if (config.initialClusterState === "new") {
      ({ identity, storage, wal } = await bootstrapNewCluster(config, layout, logger, seed));
    } else {
      const peerUrls = [...config.initialCluster.entries()]
        .filter(([name]) => name !== config.name)
        .flatMap(([, urls]) => urls.map(urlString));
      const info = await fetchClusterInfo(peerUrls);
      const mine = info.members.find(
        (m) => [...m.peerURLs].sort().join(",") === [...ownPeerUrls].sort().join(","),
      );
      if (mine === undefined) {
        throw new Error(
          `no member of cluster ${formatId(info.clusterId)} has peer URLs ${ownPeerUrls.join(",")}`,
        );
      }
      identity = { memberId: mine.ID, clusterId: info.clusterId };
      for (const m of info.members) {
        seed.set(m.ID, {
          id: m.ID,
          name: m.name,
          peerUrls: m.peerURLs,
          clientUrls: m.clientURLs,
          isLearner: m.isLearner,
        });
      }
      storage = new MemoryStorage();
      wal = await Wal.create(layout.walDir, { logger });
      await writeIdentity(layout.identityFile, identity);
      logger.info(
        { member: formatId(identity.memberId), cluster: formatId(identity.clusterId) },
        "joining an existing cluster",
      );
    }

    const columns = (await exists(layout.dbDir)) ? await readColumns(layout.dbDir) : new Map();
    members.restore(columns.get(MEMBERS_COLUMN) ?? []);
    let lessorRef: Lessor | undefined;
    const store = await MvccStore.open(layout.dbDir, {
      quotaBytes: config.quotaBackendBytes,
      maxTxnOps: config.maxTxnOps,
      extraColumns: EXTRA_COLUMNS,
      leaseExists: (id) => lessorRef?.lookup(id) !== undefined,
    });
    const member = new Member(config, logger, events, {
      identity,
      layout,
      wal,
      snapshotter,
      storage,
      store,
      members,
      seed,
      leaseRows: columns.get(LEASE_COLUMN) ?? [],
      applied,
    });
    lessorRef = member.lessor;
    member.refreshPeers();
    return member;
  }

  /** Serves the peer service, starts Raft and publishes this member's attributes. */
  async start(peerServer: Server, peerTls?: KeyPair): Promise<void> {
    await this.transport.listen(peerServer, this.config.listenPeerUrls, peerTls);
    this.tickTimer = setInterval(() => this.tick(), this.config.heartbeatMs);
    this.leasePoller.start();
    // A member alone in its configuration needs no election timeout to lead.
    if (this.confState.voters.length === 1 && this.confState.voters[0] === this.id) this.raw.campaign();
    this.kick();
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
    while (!this.stopped) {
      try {
        await this.propose(EntryKind.MemberAttributes, attributes, undefined);
        this.publishedResolve();
        return;
      } catch (err) {
        this.logger.debug?.({ error: String(err) }, "publish not applied yet; retrying");
        await new Promise((r) => setTimeout(r, PUBLISH_RETRY_MS));
      }
    }
  }

  // ---- the Raft loop ----------------------------------------------------------------------------

  private tick(): void {
    if (this.stopped) return;
    this.raw.tick();
    const now = performance.now();
    this.reads.tick();
    this.proposals.expire(now, () => this.timeoutError());
    this.kick();
  }

  /** Schedules Ready processing after the current turn, so work from this turn is batched. */
  kick(): void {
    if (this.readyScheduled || this.inReady || this.stopped) return;
    this.readyScheduled = true;
    setImmediate(() => {
      this.readyScheduled = false;
      void this.runReady();
    });
  }

  private async runReady(): Promise<void> {
    if (this.inReady || this.stopped) return;
    this.inReady = true;
    try {
      while (!this.stopped && this.raw.hasReady()) {
        const rd = this.raw.ready();
        await this.handleReady(rd);
        this.raw.advance(rd);
      }
    } catch (err) {
      this.logger.error({ error: err instanceof Error ? err.stack : String(err) }, "raft loop failed");
      this.stopped = true;
      this.events.onFatal?.(err);
    } finally {
      this.inReady = false;
      for (const wake of this.readyIdle.splice(0)) wake();
    }
  }

  private async handleReady(rd: Ready): Promise<void> {
    if (rd.softState) this.onSoftState(rd.softState.lead, rd.softState.role);
    if (rd.hardState) this.term = rd.hardState.term;
    // The leader may send before its own fsync (Raft thesis 10.2.1): it counts itself in the
    // quorum only after advance(). Everyone else must persist first.
    const sendFirst = this.role === StateRole.Leader;
    if (sendFirst) this.transport.send(rd.messages);
    if (rd.snapshot) await this.installSnapshot(rd.snapshot);
    // A hard state whose only change is the commit index need not be durable (Raft learns
    // the commit index again from the leader), so it costs no fsync, as in etcd (MustSync).
    // A snapshot's hard state is saved, so that the log's commit never trails its snapshot.
    if (rd.entries.length > 0 || (rd.hardState !== undefined && (rd.mustSync || rd.snapshot !== undefined))) {
      await this.wal.save(rd.hardState, rd.entries);
    }
    if (rd.hardState) this.storage.setHardState(rd.hardState);
    if (rd.entries.length > 0) this.storage.append(rd.entries);
    if (!sendFirst) this.transport.send(rd.messages);
    for (const rs of rd.readStates) this.reads.onReadState(rs.requestCtx, rs.index);
    if (rd.committedEntries.length > 0) await this.applyCommitted(rd.committedEntries);
    if (shouldSnapshot(this.appliedIndex, this.snapshotIndex, this.config.snapshotCount))
      await this.snapshot();
  }

  private onSoftState(lead: number, role: StateRole): void {
    const wasLeader = this.role === StateRole.Leader;
    if (lead !== this.leaderId) {
      this.leaderChangedAt = performance.now();
      if (lead !== 0) this.logger.info({ leader: formatId(lead), term: this.term }, "raft leader changed");
      else this.logger.info({ term: this.term }, "raft lost its leader");
    }
    this.leaderId = lead;
    this.role = role;
    const isLeader = role === StateRole.Leader;
    if (isLeader && !wasLeader) this.lessor.promote(this.config.electionMs);
    if (!isLeader && wasLeader) this.lessor.demote();
    for (const wake of this.leaderWatchers.splice(0)) wake();
  }

  // ---- apply -------------------------------------------------------------------------------------

  private async applyCommitted(entries: Entry[]): Promise<void> {
    let batch: ApplyEntry[] = [];
    let decoded: DecodedEntry[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      const results = await this.store.applyBatch(batch);
      this.afterApply(decoded, results);
      batch = [];
      decoded = [];
    };
    for (const entry of entries) {
      const item = this.decodeEntry(entry);
      batch.push({ index: entry.index, term: entry.term, request: item.request });
      decoded.push(item);
    }
    await flush();
  }

  private decodeEntry(entry: Entry): DecodedEntry {
    if (entry.type === EntryType.ConfChange) {
      const cc = decodeConfChange(entry.data);
      const envelope = cc.context.length > 0 ? decodeEnvelope(cc.context) : undefined;
      return { entry, envelope, confChange: cc, request: this.confChangeRequest(cc, envelope) };
    }
    if (entry.data.length === 0) return { entry, request: undefined };
    const envelope = decodeEnvelope(entry.data);
    const own = envelope.proposer === this.id ? this.proposals.get(envelope.seq)?.context : undefined;
    return { entry, envelope, request: own ?? this.requestOf(envelope) };
  }

  private requestOf(envelope: EntryEnvelope): MvccRequest {
    const p = envelope.payload;
    switch (envelope.kind) {
      case EntryKind.Put:
        return { put: etcdserverpb.PutRequest.decode(p) };
      case EntryKind.DeleteRange:
        return { deleteRange: etcdserverpb.DeleteRangeRequest.decode(p) };
      case EntryKind.Txn:
        return { txn: etcdserverpb.TxnRequest.decode(p) };
      case EntryKind.Compaction:
        return { compaction: etcdserverpb.CompactionRequest.decode(p) };
      case EntryKind.Alarm:
        return { alarm: etcdserverpb.AlarmRequest.decode(p) };
      case EntryKind.LeaseGrant: {
        const r = etcdserverpb.LeaseGrantRequest.decode(p);
        return this.leaseMachine.grantRequest(r.ID, r.TTL);
      }
      case EntryKind.LeaseRevoke:
        return this.leaseMachine.revokeRequest(etcdserverpb.LeaseRevokeRequest.decode(p).ID);
      case EntryKind.LeaseCheckpoint: {
        const r = etcdserverpb.LeaseCheckpointRequest.decode(p);
        return this.leaseMachine.checkpointRequest(
          r.checkpoints.map((c) => ({ id: c.ID, remainingTtl: c.remainingTTL })),
        );
      }
      case EntryKind.MemberAttributes: {
        const m = memberCodec.decode(p);
        return this.membersRequest(() => this.members.setAttributes(m.id, m.name, m.clientUrls));
      }
      case EntryKind.MemberUpdate: {
        const m = memberCodec.decode(p);
        return this.membersRequest(() => {
          this.members.checkUpdate(m.id, m.peerUrls);
          return this.members.updatePeerUrls(m.id, m.peerUrls);
        });
      }
      case EntryKind.MemberConfChange:
        throw new Error("a member conf change envelope in a normal entry");
    }
  }

  private confChangeRequest(cc: ConfChange, envelope: EntryEnvelope | undefined): MvccRequest {
    const member =
      envelope !== undefined ? memberCodec.decode(envelope.payload) : this.seedMembers.get(cc.nodeId);
    return this.membersRequest(() => {
      switch (cc.type) {
        case ConfChangeType.AddNode:
        case ConfChangeType.AddLearnerNode:
          return this.members.add({
            id: cc.nodeId,
            name: member?.name ?? "",
            peerUrls: member?.peerUrls ?? [],
            clientUrls: member?.clientUrls ?? [],
            isLearner: cc.type === ConfChangeType.AddLearnerNode,
          });
        case ConfChangeType.RemoveNode:
          return this.members.remove(cc.nodeId);
      }
    });
  }

  /** A membership change as part of the apply batch: the table rows go in the same RocksDB write. */
  private membersRequest(change: () => MemberRow[]): MvccRequest {
    return {
      external: (context: ExternalApply) => {
        for (const row of change()) {
          if (row.value === undefined) context.del(MEMBERS_COLUMN, row.key);
          else context.put(MEMBERS_COLUMN, row.key, row.value);
        }
        return this.members.list();
      },
    };
  }

  private afterApply(decoded: DecodedEntry[], results: ApplyResult[]): void {
    let membershipChanged = false;
    for (let i = 0; i < decoded.length; i++) {
      const { entry, envelope, confChange } = decoded[i]!;
      const result = results[i]!;
      this.appliedIndex = entry.index;
      if (confChange !== undefined) {
        // Raft's configuration is rebuilt from the log on every start, so every committed
        // ConfChange goes to Raft, also those the store had applied before (skipped).
        this.confState = this.raw.applyConfChange(confChange);
        membershipChanged = true;
        if (confChange.type === ConfChangeType.RemoveNode && confChange.nodeId === this.id) {
          this.logger.warn({ member: formatId(this.id) }, "this member was removed from the cluster");
          setImmediate(() => this.events.onRemoved?.());
        }
      } else if (envelope !== undefined && envelope.kind >= EntryKind.MemberAttributes) {
        membershipChanged = true;
      }
      if (envelope === undefined || envelope.proposer !== this.id) continue;
      if (result.status === "failed") this.proposals.reject(envelope.seq, result.error);
      else if (result.status === "applied") this.proposals.resolve(envelope.seq, result.response);
    }
    if (membershipChanged) this.refreshPeers();
    this.reads.onApplied(this.appliedIndex);
  }

  // ---- proposals --------------------------------------------------------------------------------

  /**
   * Proposes a request and resolves with its apply result on this member. `payload` is the
   * request's protobuf bytes as received; `context`, its decoded form, skips decoding at apply.
   */
  propose(kind: EntryKind, payload: Uint8Array, context: ProposalContext): Promise<unknown> {
    if (this.stopped) return Promise.reject(new EtcdError("Stopped"));
    if (payload.length > this.config.maxRequestBytes) return Promise.reject(new EtcdError("RequestTooLarge"));
    const { seq, done } = this.proposals.register<unknown>(context, performance.now());
    try {
      this.raw.propose(encodeEnvelope(kind, this.id, seq, payload));
    } catch (err) {
      this.proposals.reject(
        seq,
        err instanceof ProposalDroppedError ? proposalDroppedError(err) : (err as Error),
      );
      return done;
    }
    this.kick();
    return done;
  }

  /** Proposals nobody waits for (lease expiry, checkpoints, alarms); failures are retried by their owners. */
  private proposeInternal(kind: EntryKind, payload: Uint8Array): void {
    if (this.stopped) return;
    try {
      this.raw.propose(encodeEnvelope(kind, this.id, 0, payload));
      this.kick();
    } catch (err) {
      if (!(err instanceof ProposalDroppedError)) throw err;
    }
  }

  /** Proposes a membership change and resolves with the membership once applied here. */
  proposeConfChange(type: ConfChangeType, member: MemberInfo): Promise<MemberInfo[]> {
    if (this.stopped) return Promise.reject(new EtcdError("Stopped"));
    const { seq, done } = this.proposals.register<MemberInfo[]>(undefined, performance.now());
    const context = encodeEnvelope(EntryKind.MemberConfChange, this.id, seq, memberCodec.encode(member));
    try {
      this.raw.proposeConfChange({ type, nodeId: member.id, context });
    } catch (err) {
      this.proposals.reject(
        seq,
        err instanceof ProposalDroppedError ? proposalDroppedError(err) : (err as Error),
      );
      return done;
    }
    this.kick();
    return done;
  }

  proposeAlarm(request: etcdserverpb.AlarmRequest): Promise<unknown> {
    return this.propose(EntryKind.Alarm, etcdserverpb.AlarmRequest.encode(request).finish(), {
      alarm: request,
    });
  }

  /** Raises the NOSPACE alarm (etcd's quota check before proposing a write). */
  raiseNoSpace(): void {
    const request = { action: 1, memberID: this.id, alarm: 1 };
    if (this.store.alarms(1).some((a) => a.memberID === this.id)) return;
    this.proposeInternal(EntryKind.Alarm, etcdserverpb.AlarmRequest.encode(request).finish());
  }

  nextLeaseId(): number {
    return this.leaseIds.next();
  }

  /** Waits until a read at this member is linearizable (ReadIndex, batched). */
  linearizableRead(): Promise<void> {
    if (this.stopped) return Promise.reject(new EtcdError("Stopped"));
    return this.reads.wait();
  }

  private timeoutError(): EtcdError {
    // etcd words a timeout shortly after a leader change differently (parseProposeCtxErr).
    const sinceChange = performance.now() - this.leaderChangedAt;
    if (this.leaderChangedAt > 0 && sinceChange < 3 * this.config.electionMs) {
      return new EtcdError("TimeoutDueToLeaderFail");
    }
    return new EtcdError("Timeout");
  }

  // ---- queries ----------------------------------------------------------------------------------

  header(revision = this.store.revision): etcdserverpb.ResponseHeader {
    return { clusterId: this.clusterId, memberId: this.id, revision, raftTerm: this.term };
  }

  isLearner(): boolean {
    return this.members.get(this.id)?.isLearner ?? this.confState.learners.includes(this.id);
  }

  get isLeader(): boolean {
    return this.role === StateRole.Leader;
  }

  get applied(): number {
    return this.appliedIndex;
  }

  raftStatus() {
    return this.raw.status();
  }

  /** The leader's client URLs, to forward leader-only calls (lease keep-alive...). */
  leaderClientUrls(): string[] {
    return this.members.get(this.leaderId)?.clientUrls ?? [];
  }

  /** Resolves at the next leadership change, or after `timeoutMs`. */
  waitLeaderChange(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.leaderWatchers.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Hands leadership to `target` and waits (up to `timeoutMs`) until it leads. */
  async transferLeadership(target: number, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    this.raw.transferLeader(target);
    this.kick();
    while (this.leaderId !== target && performance.now() < deadline) {
      await this.waitLeaderChange(Math.max(1, deadline - performance.now()));
    }
    return this.leaderId === target;
  }

  /** The voter whose log matches the leader's most (for a leader stepping down). */
  mostUpToDateVoter(): number | undefined {
    const status = this.raw.status();
    let best: number | undefined;
    let bestMatch = -1;
    for (const [id, pr] of status.progress) {
      if (id === this.id || pr.isLearner) continue;
      if (pr.match > bestMatch) {
        best = id;
        bestMatch = pr.match;
      }
    }
    return best;
  }

  // ---- snapshots ----------------------------------------------------------------------------------

  private async snapshot(): Promise<void> {
    const index = this.appliedIndex;
    // The Raft log up to `index` may be released only once the state it produced is durable.
    this.store.syncToDisk();
    const snap = this.storage.createSnapshot(index, this.confState, new Uint8Array(0));
    // Commit-only hard states are not saved (see handleReady); replay after this snapshot needs
    // a commit index at least as high as the snapshot's.
    await this.wal.save(this.storage.initialState().hardState, []);
    await this.snapshotter.save(snap);
    await this.wal.saveSnapshotMarker(snap.metadata);
    const to = compactionIndex(index, this.storage.firstIndex(), this.config.snapshotCatchUpEntries);
    if (to !== undefined) this.storage.compact(to);
    this.snapshotIndex = index;
    await this.wal.releaseTo(index);
    await this.snapshotter.purge(5);
    this.logger.info({ index, compactedTo: to ?? 0 }, "saved snapshot");
  }

  /** Installs a snapshot the leader sent: the received image replaces the state machine. */
  private async installSnapshot(snapshot: Snapshot): Promise<void> {
    const index = snapshot.metadata.index;
    const image = this.incomingImages.get(index);
    if (image === undefined) throw new Error(`no received image for snapshot at index ${index}`);
    this.incomingImages.delete(index);
    const location = this.layout.dbDir;
    const incoming = `${location}.incoming`;
    await rm(incoming, { recursive: true, force: true });
    await importStateImage(image, incoming, ["meta", ...EXTRA_COLUMNS]);
    this.unsubscribeStore();
    await this.store.close();
    // The .old copy is only deleted once the new database is in place; open() puts it back if
    // a crash comes between the two renames.
    await rename(location, `${location}.old`);
    await rename(incoming, location);
    await rm(`${location}.old`, { recursive: true, force: true });
    await rm(image, { force: true });
    const columns = await readColumns(location);
    this.members.restore(columns.get(MEMBERS_COLUMN) ?? []);
    this.store = await MvccStore.open(location, {
      quotaBytes: this.config.quotaBackendBytes,
      maxTxnOps: this.config.maxTxnOps,
      extraColumns: EXTRA_COLUMNS,
      leaseExists: (id) => this.lessor.lookup(id) !== undefined,
    });
    this.leaseMachine.recover(columns.get(LEASE_COLUMN) ?? []);
    this.subscribeStore();
    this.watchable.restored(this.store.revision);
    await this.snapshotter.save({ metadata: snapshot.metadata, data: new Uint8Array(0) });
    await this.wal.saveSnapshotMarker(snapshot.metadata);
    this.storage.applySnapshot({ metadata: snapshot.metadata, data: new Uint8Array(0) });
    this.confState = snapshot.metadata.confState;
    this.snapshotIndex = index;
    this.appliedIndex = Math.max(index, this.store.appliedIndex);
    this.refreshPeers();
    this.logger.info({ index, revision: this.store.revision }, "installed snapshot from the leader");
  }

  private subscribeStore(): void {
    const store = this.store;
    this.unsubscribeStore = store.subscribe(
      (txn) => {
        this.leaseMachine.observe(txn);
        // mvcc's events always carry a kv; its generated-style type just cannot say so.
        this.watchable.notify(
          txn.revision,
          txn.events as Parameters<WatchableStore["notify"]>[1],
          txn.prevKvs,
        );
      },
      { prevKv: () => this.watchable.wantsPrevKv() },
    );
  }

  private refreshPeers(): void {
    const peers = new Map<number, string[]>();
    for (const m of this.seedMembers.values()) peers.set(m.id, m.peerUrls);
    for (const m of this.members.list()) peers.set(m.id, m.peerUrls);
    for (const id of [...peers.keys()]) if (this.members.isRemoved(id)) peers.delete(id);
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
        if (member.stopped) return;
        for (const m of messages) member.raw.step(m);
        member.kick();
      },
      isRemoved: (id: number) => member.members.isRemoved(id),
      clusterInfo: (): peer.ClusterInfoResponse => ({
        clusterId: member.clusterId,
        memberId: member.id,
        members: member.members.list().map((m) => ({
          ID: m.id,
          name: m.name,
          peerURLs: m.peerUrls,
          clientURLs: m.clientUrls,
          isLearner: m.isLearner,
        })),
      }),
      reportUnreachable(id: number) {
        member.raw.reportUnreachable(id);
      },
      reportSnapshot(id: number, ok: boolean) {
        member.raw.reportSnapshot(id, ok);
        member.kick();
      },
      writeSnapshotImage: (path: string) => writeStateImage(member.store.exportRows(), path),
      async snapshotReceived(message: Message, imagePath: string) {
        const index = message.snapshot?.metadata.index;
        if (message.type !== MessageType.MsgSnap || index === undefined) {
          throw new Error("a snapshot call without a MsgSnap");
        }
        const previous = member.incomingImages.get(index);
        if (previous !== undefined) await rm(previous, { force: true });
        member.incomingImages.set(index, imagePath);
        member.raw.step(message);
        member.kick();
      },
    };
  }

  // ---- shutdown ------------------------------------------------------------------------------------

  /** etcd's graceful stop: a leader first hands over to the most up-to-date voter. */
  async handOverLeadership(): Promise<void> {
    if (!this.isLeader || this.stopped) return;
    const target = this.mostUpToDateVoter();
    if (target === undefined) return;
    this.logger.info({ transferee: formatId(target) }, "leader is stopping: transferring leadership");
    await this.transferLeadership(target, this.config.electionMs * 2);
  }

  async stop(): Promise<void> {
    if (this.stopped && this.tickTimer === undefined) return;
    this.stopped = true;
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.tickTimer = undefined;
    this.leasePoller.stop();
    this.watchable.stop();
    if (this.inReady) await new Promise<void>((resolve) => this.readyIdle.push(resolve));
    this.proposals.rejectAll(() => new EtcdError("Stopped"));
    this.reads.rejectAll(() => new EtcdError("Stopped"));
    await this.transport.close();
    await this.wal.close().catch(() => {});
    this.unsubscribeStore();
    await this.store.close().catch(() => {});
  }
}

interface DecodedEntry {
  entry: Entry;
  envelope?: EntryEnvelope | undefined;
  confChange?: ConfChange;
  request: MvccRequest | undefined;
}

/** A crash between the two renames of a snapshot install leaves the previous database as .old. */
async function recoverInterruptedInstall(location: string): Promise<void> {
  if (!(await exists(location)) && (await exists(`${location}.old`)))
    await rename(`${location}.old`, location);
  await rm(`${location}.incoming`, { recursive: true, force: true });
}
