// A data dir as a new cluster's bootstrap wrote it before 59e0f3b: a WAL whose bootstrap AddNode
// entries carry no member (no peer URLs), the identity file, and no database (a store that
// lost everything before its first sync). Its restart has only --initial-cluster to go by.
import { bootstrapStorage } from "@etcd-ts/raft";
import { layoutOf, writeIdentity } from "../bootstrap/data-dir.js";
import type { MemberConfig } from "../config/flags.js";
import { clusterIdFor } from "../membership/member-id.js";
import { Wal } from "../wal/mod.js";

export async function writePreContextDataDir(
  config: MemberConfig,
  voters: bigint[],
  self: bigint,
): Promise<void> {
  const layout = layoutOf(config);
  const storage = bootstrapStorage(voters); // no context per voter: the old bootstrap
  const wal = await Wal.create(layout.walDir);
  await wal.save(storage.initialState().hardState, storage.entries(1, storage.lastIndex() + 1, Infinity));
  await wal.close();
  await writeIdentity(layout.identityFile, { memberId: self, clusterId: clusterIdFor(voters) });
}
