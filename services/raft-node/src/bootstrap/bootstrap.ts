// Start-up and recovery (etcd's etcdserver/bootstrap): find or make this member's identity,
// rebuild the Raft log from the newest snapshot and the WAL (restart), or write the initial
// configuration (new cluster), or ask a peer for the membership (joining an existing one);
// then open the state machine's database as of its last applied batch.
import { mkdir, rm } from "node:fs/promises";
import {
  BOOTSTRAP_TERM,
  bootstrapStorage,
  ConfChangeType,
  decodeConfChange,
  type Entry,
  EntryType,
  encodeConfChange,
  type HardState,
  MemoryStorage,
} from "@etcd-ts/raft";
import { EntryKind, encodeEnvelope } from "../apply/entry-envelope.js";
import { AUTH_COLUMN } from "../auth/mod.js";
import type { MemberConfig } from "../config/flags.js";
import { LEASE_COLUMN } from "../lease/mod.js";
import { memberCodec, urlString } from "../membership/member-codec.js";
import { clusterIdFor, formatId, memberIdFor } from "../membership/member-id.js";
import { MEMBERS_COLUMN, type MemberInfo, MembersTable } from "../membership/members-table.js";
import { MvccStore, recoverInterruptedDefrag } from "../mvcc/mod.js";
import { fetchClusterInfo } from "../transport/peer-transport.js";
import { dialTlsFrom } from "../transport/tls-credentials.js";
import { Snapshotter, Wal, type WalLogger, type WalOptions } from "../wal/mod.js";
import {
  EXTRA_COLUMNS,
  exists,
  type Identity,
  type Layout,
  layoutOf,
  readIdentity,
  recoverInterruptedInstall,
  writeIdentity,
} from "./data-dir.js";

/** What a member starts from. */
export interface Bootstrapped {
  identity: Identity;
  layout: Layout;
  wal: Wal;
  snapshotter: Snapshotter;
  /** The Raft log as recovered: snapshot metadata, hard state and entries after it. */
  storage: MemoryStorage;
  store: MvccStore;
  members: MembersTable;
  /** Members named by --initial-cluster or a peer, for ConfChanges committed without context. */
  seed: Map<bigint, MemberInfo>;
  leaseRows: { key: Buffer; value: Buffer }[];
  authRows: { key: Buffer; value: Buffer }[];
  /** The snapshot's index: Raft re-delivers committed entries after it. */
  applied: number;
}

/** Opens the state machine's database; `leaseExists` is the lessor's view (made later). */
export function openStore(
  location: string,
  config: MemberConfig,
  leaseExists: (id: bigint) => boolean,
  disk: DiskTimings = {},
): Promise<MvccStore> {
  return MvccStore.open(location, {
    quotaBytes: config.quotaBackendBytes,
    extraColumns: EXTRA_COLUMNS,
    leaseExists,
    onCommit: disk.backendCommit,
  });
}

/** Where the member's disk writes report their durations (its metrics). */
export interface DiskTimings {
  walFsync?: (seconds: number) => void;
  backendCommit?: (seconds: number) => void;
}

const samePeerUrls = (a: readonly string[], b: readonly string[]) =>
  [...a].sort().join(",") === [...b].sort().join(",");

export async function bootstrap(
  config: MemberConfig,
  logger: WalLogger,
  leaseExists: (id: bigint) => boolean,
  disk: DiskTimings = {},
): Promise<Bootstrapped> {
  const sync = !config.unsafeNoFsync;
  const walOptions: WalOptions & { logger: WalLogger } = {
    logger,
    onFsync: disk.walFsync,
    sync,
    maxSegments: config.maxWals,
  };
  const layout = layoutOf(config);
  await mkdir(layout.snapDir, { recursive: true });
  // A member that stopped while its store lived in a defragmented copy: the copy becomes snap/db
  // before anything looks at it (MvccStore.open would, but the columns are read first).
  await recoverInterruptedDefrag(layout.dbDir);
  await recoverInterruptedInstall(layout.dbDir);
  const snapshotter = new Snapshotter(layout.snapDir, { logger, sync });
  const seed = new Map<bigint, MemberInfo>();
  const dbExisted = await exists(layout.dbDir);
  const started = performance.now();
  const store = await openStore(layout.dbDir, config, leaseExists, disk);
  // The other state machines' rows come from the store just opened: opening the database a
  // second time for them cost a RocksDB open (and WAL replay) on every restart.
  const columns = store.extraColumnRows();
  const members = new MembersTable(memberCodec);
  members.restore(columns.get(MEMBERS_COLUMN) ?? []);
  const storeOpened = performance.now();
  const restarting = await Wal.exists(layout.walDir);
  const raft = restarting
    ? await restart(layout, snapshotter, walOptions, config.forceNewCluster ? store.appliedIndex : undefined)
    : config.initialClusterState === "new"
      ? { ...(await bootstrapNewCluster(config, layout, walOptions, seed)), applied: 0 }
      : await joinCluster(config, layout, seed, walOptions);
  if (restarting) {
    const replayed = contextlessBootstrapMembers(
      bootstrapEntriesToReplay(raft.storage, store.appliedIndex),
      new Map(initialClusterMembers(config).map(({ member }) => [member.id, member])),
    );
    for (const m of replayed.named) seed.set(m.id, m);
    for (const id of replayed.unnamed) {
      logger.warn(
        { member: formatId(id) },
        "a bootstrap entry to replay carries no member (data dir made before member contexts) and --initial-cluster names no member with this ID: it is added with no peer URLs, so this member cannot send it anything until a snapshot or member update gives them",
      );
    }
  }
  const ms = (n: number) => Math.round(n);
  logger.info(
    {
      // performance.now() counts from the process's start: what came before is loading modules.
      startedAtMs: ms(started),
      storeMs: ms(storeOpened - started),
      ...Object.fromEntries(Object.entries(store.openPhasesMs).map(([k, v]) => [`store.${k}Ms`, ms(v)])),
      // "checkpoint" or "scan" (and why not the checkpoint: none after a crash, stale, damaged).
      keyIndexFrom: store.indexSource.from,
      ...(store.indexSource.note === undefined ? {} : { keyIndexNote: store.indexSource.note }),
      raftLogMs: ms(performance.now() - storeOpened),
      revision: store.revision,
      appliedIndex: store.appliedIndex,
    },
    "opened the store and the Raft log",
  );
  const behind = storeBehindSnapshot(layout.dbDir, dbExisted, store.appliedIndex, raft.applied);
  if (behind !== undefined) {
    await store.close();
    await raft.wal.close();
    // Opening made an empty database; leave the data dir as it was found (etcd removes it too).
    if (!dbExisted) await rm(layout.dbDir, { recursive: true, force: true });
    throw new Error(behind);
  }

  return {
    ...raft,
    layout,
    snapshotter,
    store,
    members,
    seed,
    leaseRows: columns.get(LEASE_COLUMN) ?? [],
    authRows: columns.get(AUTH_COLUMN) ?? [],
  };
}

/**
 * etcd's start-up check of the backend against the newest snapshot (etcdserver's NewServer in
 * 3.4, bootstrap in 3.5; the same messages). Raft replays only the entries after the snapshot,
 * so a database that has not applied everything up to it (replaced by an older copy, rolled
 * back, removed) would serve a state machine missing entries the log no longer holds: the
 * member refuses to start instead. Our database is never legitimately behind: a snapshot is
 * taken only once the database is synced to it, and a received one is installed into the
 * database before its marker is written. etcd lets an index of 0 through with a warning, for
 * data dirs from before 3.0; there are none of those here.
 */
export function storeBehindSnapshot(
  dbDir: string,
  dbExisted: boolean,
  storeApplied: number,
  snapshotIndex: number,
): string | undefined {
  if (snapshotIndex === 0) return undefined;
  if (!dbExisted) return `database file (${dbDir}) of the backend is missing`;
  if (storeApplied < snapshotIndex)
    return `database file (${dbDir} index ${storeApplied}) does not match with snapshot (index ${snapshotIndex})`;
  return undefined;
}

/** The members --initial-cluster names, with the ID etcd derives from their peer URLs and the token. */
export function initialClusterMembers(
  config: Pick<MemberConfig, "initialCluster" | "initialClusterToken">,
): { flagName: string; member: MemberInfo }[] {
  return [...config.initialCluster].map(([flagName, urls]) => {
    const peerUrls = urls.map(urlString);
    const id = memberIdFor(peerUrls, config.initialClusterToken);
    // The name is the member's own to publish (MemberAttributes), as in a bootstrap entry.
    return { flagName, member: { id, name: "", peerUrls, clientUrls: [], isLearner: false } };
  });
}

/**
 * The bootstrap ConfChanges a restart will re-apply (those after the store's applied index):
 * the log's leading entries at the bootstrap term. Only a log that still starts at index 1 has
 * them; the term is read per index so the rest of the log is not copied.
 */
export function bootstrapEntriesToReplay(storage: MemoryStorage, storeApplied: number): Entry[] {
  if (storage.firstIndex() !== 1) return [];
  const first = storeApplied + 1;
  let end = first;
  while (end <= storage.lastIndex() && storage.term(end) === BOOTSTRAP_TERM) end++;
  return end === first ? [] : storage.entries(first, end, Infinity);
}

/**
 * Bootstrap AddNode entries written before 59e0f3b carry no member (no peer URLs). A member
 * replaying them into an empty store (power lost before its first snapshot) would add every
 * member with no peer URLs and never reach any. Their URLs come from --initial-cluster when
 * the ID etcd derives from a named member's URLs and the token is the entry's node ID (the
 * same derivation that chose the ID, so a match is that member); `unnamed` are those no flag
 * names (etcd takes peer URLs from its backend and has no such case; we only warn).
 */
export function contextlessBootstrapMembers(
  entries: readonly Entry[],
  named: ReadonlyMap<bigint, MemberInfo>,
): { named: MemberInfo[]; unnamed: bigint[] } {
  const found: MemberInfo[] = [];
  const unnamed: bigint[] = [];
  for (const e of entries) {
    if (e.type !== EntryType.ConfChange) continue;
    const cc = decodeConfChange(e.data);
    if (cc.type !== ConfChangeType.AddNode || cc.context.length > 0) continue;
    const member = named.get(cc.nodeId);
    if (member === undefined) unnamed.push(cc.nodeId);
    else found.push(member);
  }
  return { named: found, unnamed };
}

interface RaftStart {
  identity: Identity;
  wal: Wal;
  storage: MemoryStorage;
  applied: number;
}

async function restart(
  layout: Layout,
  snapshotter: Snapshotter,
  walOptions: WalOptions & { logger: WalLogger },
  /** With --force-new-cluster: the store's applied index (entries up to it are committed). */
  forceNewClusterApplied: number | undefined,
): Promise<RaftStart> {
  const logger = walOptions.logger;
  const identity = await readIdentity(layout.identityFile);
  if (identity === undefined)
    throw new Error(`${layout.identityFile} is missing: the data dir is incomplete`);
  const walStarted = performance.now();
  const { wal, recovered } = await Wal.open(layout.walDir, walOptions);
  const walMs = Math.round(performance.now() - walStarted);
  const storage = new MemoryStorage();
  let applied = 0;
  if (recovered.snapshot !== undefined) {
    const wanted = recovered.snapshot;
    const { loaded } = await snapshotter.loadNewest(
      (m) => m.index === wanted.index && m.term === wanted.term,
    );
    if (loaded === undefined) throw new Error(`snapshot file for index ${wanted.index} is missing`);
    storage.applySnapshot(loaded.snapshot);
    applied = loaded.snapshot.metadata.index;
  }
  let hardState = recovered.hardState;
  let entries = recovered.entries;
  if (forceNewClusterApplied !== undefined) {
    const voters = storage.initialState().confState;
    // The persisted commit index may lag what the store applied; applied entries were committed.
    const committed = Math.max(hardState?.commit ?? 0, forceNewClusterApplied);
    const known = hardState ?? { term: 0, vote: 0n, commit: 0 };
    ({ hardState, entries } = standaloneLog(
      identity.memberId,
      [...voters.voters, ...voters.learners],
      { ...known, term: Math.max(known.term, entries.at(-1)?.term ?? 0), commit: committed },
      entries,
    ));
    const added = entries.filter((e) => e.index > committed);
    await wal.save(hardState, added);
    logger.info(
      { member: formatId(identity.memberId), removed: added.length, commit: hardState.commit },
      "forcing restart of member as a single-member cluster (--force-new-cluster)",
    );
  }
  if (hardState) storage.setHardState(hardState);
  storage.append(entries);
  logger.info(
    {
      member: formatId(identity.memberId),
      cluster: formatId(identity.clusterId),
      snapshotIndex: applied,
      entries: recovered.entries.length,
      walMs,
    },
    "restarting member",
  );
  return { identity, wal, storage, applied };
}

/**
 * etcd's restartAsStandaloneNode: the log without its uncommitted tail, then ConfChanges that
 * remove every other member (and add this one if it is not a member), appended at the last
 * term and committed at once, so that applying them leaves a one-member cluster that elects
 * itself. `members` is the configuration at the snapshot; the log's ConfChanges update it.
 */
export function standaloneLog(
  self: bigint,
  members: readonly bigint[],
  hardState: HardState | undefined,
  entries: readonly Entry[],
): { hardState: HardState; entries: Entry[] } {
  const commit = hardState?.commit ?? 0;
  const term = hardState?.term ?? 0;
  const kept = entries.filter((e) => e.index <= commit);
  const ids = new Set(members);
  for (const e of kept) {
    if (e.type !== EntryType.ConfChange) continue;
    const cc = decodeConfChange(e.data);
    if (cc.type === ConfChangeType.RemoveNode) ids.delete(cc.nodeId);
    else if (cc.type === ConfChangeType.AddNode || cc.type === ConfChangeType.AddLearnerNode)
      ids.add(cc.nodeId);
  }
  let index = kept.length > 0 ? kept[kept.length - 1]!.index : commit;
  const change = (type: ConfChangeType, nodeId: bigint): Entry => ({
    term,
    index: ++index,
    type: EntryType.ConfChange,
    data: encodeConfChange({ type, nodeId, context: new Uint8Array(0) }),
  });
  const forced: Entry[] = [];
  for (const id of [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (id !== self) forced.push(change(ConfChangeType.RemoveNode, id));
  }
  if (!ids.has(self)) forced.push(change(ConfChangeType.AddNode, self));
  return {
    hardState: { term, vote: hardState?.vote ?? 0n, commit: index },
    entries: [...kept, ...forced],
  };
}

/**
 * A new cluster's first state on disk: this member's identity and a WAL holding the bootstrap
 * ConfChanges for every --initial-cluster member (added to `seed`).
 */
export async function bootstrapNewCluster(
  config: MemberConfig,
  layout: Layout,
  walOptions: WalOptions & { logger: WalLogger },
  seed = new Map<bigint, MemberInfo>(),
): Promise<{ identity: Identity; storage: MemoryStorage; wal: Wal }> {
  const logger = walOptions.logger;
  const ownPeerUrls = config.initialAdvertisePeerUrls.map(urlString);
  const ids: bigint[] = [];
  let own: bigint | undefined;
  for (const { flagName: name, member } of initialClusterMembers(config)) {
    const { id, peerUrls } = member;
    ids.push(id);
    seed.set(id, member);
    if (name === config.name) {
      if (!samePeerUrls(peerUrls, ownPeerUrls)) {
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
  // Each AddNode carries its member (etcd's bootstrap ConfChanges carry it too): a member that
  // replays them without --initial-cluster (a restart whose store lost them, the power-loss
  // test) learned no peer URLs from them and could send its peers nothing, ever. Proposer 0
  // (no member's proposal) and the same bytes on every founding member, as an entry must be.
  const storage = bootstrapStorage(ids, (id) =>
    encodeEnvelope(EntryKind.MemberConfChange, 0n, 0, memberCodec.encode(seed.get(id)!)),
  );
  const wal = await Wal.create(layout.walDir, walOptions);
  const initial = storage.initialState();
  await wal.save(initial.hardState, storage.entries(storage.firstIndex(), storage.lastIndex() + 1, Infinity));
  await writeIdentity(layout.identityFile, identity);
  logger.info(
    { member: formatId(identity.memberId), cluster: formatId(identity.clusterId), voters: ids.map(formatId) },
    "starting a new cluster",
  );
  return { identity, storage, wal };
}

async function joinCluster(
  config: MemberConfig,
  layout: Layout,
  seed: Map<bigint, MemberInfo>,
  walOptions: WalOptions & { logger: WalLogger },
): Promise<RaftStart> {
  const logger = walOptions.logger;
  const ownPeerUrls = config.initialAdvertisePeerUrls.map(urlString);
  const peerUrls = [...config.initialCluster.entries()]
    .filter(([name]) => name !== config.name)
    .flatMap(([, urls]) => urls.map(urlString));
  const info = await fetchClusterInfo(peerUrls, dialTlsFrom(config.peerTls));
  const mine = info.members.find((m) => samePeerUrls(m.peerURLs, ownPeerUrls));
  if (mine === undefined) {
    throw new Error(
      `no member of cluster ${formatId(info.clusterId)} has peer URLs ${ownPeerUrls.join(",")}`,
    );
  }
  const identity = { memberId: mine.ID, clusterId: info.clusterId };
  for (const m of info.members) {
    seed.set(m.ID, {
      id: m.ID,
      name: m.name,
      peerUrls: m.peerURLs,
      clientUrls: m.clientURLs,
      isLearner: m.isLearner,
    });
  }
  const wal = await Wal.create(layout.walDir, walOptions);
  await writeIdentity(layout.identityFile, identity);
  logger.info(
    { member: formatId(identity.memberId), cluster: formatId(identity.clusterId) },
    "joining an existing cluster",
  );
  return { identity, wal, storage: new MemoryStorage(), applied: 0 };
}
