// Start-up and recovery (etcd's etcdserver/bootstrap): find or make this member's identity,
// rebuild the Raft log from the newest snapshot and the WAL (restart), or write the initial
// configuration (new cluster), or ask a peer for the membership (joining an existing one);
// then open the state machine's database as of its last applied batch.
import { mkdir } from "node:fs/promises";
import { bootstrapStorage, MemoryStorage } from "@etcd-ts/raft";
import { AUTH_COLUMN } from "../auth/mod.js";
import type { MemberConfig } from "../config/flags.js";
import { LEASE_COLUMN } from "../lease/mod.js";
import { memberCodec, urlString } from "../membership/member-codec.js";
import { clusterIdFor, formatId, memberIdFor } from "../membership/member-id.js";
import { MEMBERS_COLUMN, type MemberInfo, MembersTable } from "../membership/members-table.js";
import { MvccStore } from "../mvcc/mod.js";
import { fetchClusterInfo } from "../transport/peer-transport.js";
import { dialTlsFrom } from "../transport/tls-credentials.js";
import { Snapshotter, Wal, type WalLogger, type WalOptions } from "../wal/mod.js";
import {
  EXTRA_COLUMNS,
  exists,
  type Identity,
  type Layout,
  layoutOf,
  readColumns,
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
  const walOptions: WalOptions & { logger: WalLogger } = { logger, onFsync: disk.walFsync };
  const layout = layoutOf(config);
  await mkdir(layout.snapDir, { recursive: true });
  await recoverInterruptedInstall(layout.dbDir);
  const snapshotter = new Snapshotter(layout.snapDir, { logger });
  const seed = new Map<bigint, MemberInfo>();
  const raft = (await Wal.exists(layout.walDir))
    ? await restart(layout, snapshotter, walOptions)
    : config.initialClusterState === "new"
      ? { ...(await bootstrapNewCluster(config, layout, walOptions, seed)), applied: 0 }
      : await joinCluster(config, layout, seed, walOptions);

  const columns = (await exists(layout.dbDir)) ? await readColumns(layout.dbDir) : new Map();
  const members = new MembersTable(memberCodec);
  members.restore(columns.get(MEMBERS_COLUMN) ?? []);
  const store = await openStore(layout.dbDir, config, leaseExists, disk);
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
): Promise<RaftStart> {
  const logger = walOptions.logger;
  const identity = await readIdentity(layout.identityFile);
  if (identity === undefined)
    throw new Error(`${layout.identityFile} is missing: the data dir is incomplete`);
  const { wal, recovered } = await Wal.open(layout.walDir, walOptions);
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
  return { identity, wal, storage, applied };
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
  for (const [name, urls] of config.initialCluster) {
    const peerUrls = urls.map(urlString);
    const id = memberIdFor(peerUrls, config.initialClusterToken);
    ids.push(id);
    seed.set(id, { id, name: "", peerUrls, clientUrls: [], isLearner: false });
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
  const storage = bootstrapStorage(ids);
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
