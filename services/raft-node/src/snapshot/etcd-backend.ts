// etcd 3.4's backend (mvcc/backend on bbolt) as buckets, mapped to and from this store's
// RocksDB columns. Facts from etcd v3.4 (mvcc/kvstore.go, lease/lessor.go, auth/store.go,
// etcdserver/api/membership/store.go, etcdserver/apply alarms) and from real 3.4.23 snapshots:
//
//   key              17-byte revision keys (8-byte BE main, '_', 8-byte BE sub; an 18th byte 't'
//                    marks a tombstone, whose value is a KeyValue holding only the key) -> the
//                    mvccpb.KeyValue bytes. Identical to our "default" column.
//   meta             consistent_index (u64 BE), scheduledCompactRev and finishedCompactRev
//                    (17-byte revision keys with sub 0). Our "meta" column has the same entries
//                    plus the applied term and the alarms, which etcd 3.4 does not keep there.
//   lease            8-byte BE lease ID -> leasepb.Lease. Identical to our "lease" column.
//   alarm            etcdserverpb.AlarmMember bytes -> empty.
//   auth             authRevision (u64 BE; 1 on a cluster that never changed auth), and
//                    authEnabled ({1} or {0}) once auth was ever switched on or off.
//   authUsers/Roles  user/role name -> authpb.User/Role (from the auth column's "u/" and "r/" rows).
//   members          member ID in lowercase hex -> JSON {"id","peerURLs","isLearner"?,"name"?,
//                    "clientURLs"?} (Go's encoding of membership.Member; the ID as a decimal).
//   members_removed  member ID in hex -> "removed".
//   cluster          clusterVersion -> "3.4.0".
import { etcdserverpb } from "@etcd-ts/api";
import { AUTH_COLUMN, AUTH_ROLE_PREFIX, AUTH_USER_PREFIX, SIGNING_KEY_PREFIX } from "../auth/mod.js";
import {
  MEMBERS_COLUMN,
  type MemberCodec,
  type MemberInfo,
  MembersTable,
} from "../membership/members-table.js";
import { alarmOfMetaKey, META_COLUMN, META_KEYS, type StoreView } from "../mvcc/mod.js";
import { BUCKETS, type Row, writeBackendBuckets } from "./backend-buckets.js";
import type { WrittenPage } from "./bbolt-writer.js";
import { BboltWriter } from "./bbolt-writer.js";

export { BUCKETS, type Row } from "./backend-buckets.js";

export const AUTH_REVISION_KEY = Buffer.from("authRevision");
export const AUTH_ENABLED_KEY = Buffer.from("authEnabled");
export const CLUSTER_VERSION_KEY = Buffer.from("clusterVersion");

export interface BackendContext {
  /** Decodes the rows of the members column. */
  memberCodec: MemberCodec;
  /** What the cluster bucket says (etcd's cluster version, "3.4.0"). */
  clusterVersion: string;
}

/** Writes the pages of an etcd 3.4 backend holding the view's state, in file order. */
export async function writeEtcdBackend(
  view: StoreView,
  context: BackendContext,
  writePages: (pages: WrittenPage[]) => Promise<void>,
  writer = new BboltWriter(),
): Promise<{ metaPages: Buffer; pageCount: number }> {
  const small = await smallBuckets(view, context);
  return writeBackendBuckets(small, (column, chunkRows) => view.rows(column, chunkRows), writePages, writer);
}

/**
 * The rows of every bucket but the streamed ones (STREAMED_COLUMNS), from the view's small
 * columns, read whole (their size is bounded by the member, alarm and auth counts).
 */
export async function smallBuckets(view: StoreView, context: BackendContext): Promise<Record<string, Row[]>> {
  const meta = await collect(view.rows(META_COLUMN));
  const members = await collect(view.rows(MEMBERS_COLUMN));
  const auth = authBuckets(await collect(view.rows(AUTH_COLUMN)));
  return {
    [BUCKETS.alarm]: alarmRows(meta),
    [BUCKETS.auth]: auth.auth,
    [BUCKETS.authRoles]: auth.authRoles,
    [BUCKETS.authUsers]: auth.authUsers,
    [BUCKETS.cluster]: [{ key: CLUSTER_VERSION_KEY, value: Buffer.from(context.clusterVersion) }],
    ...memberRows(members, context.memberCodec),
    [BUCKETS.meta]: etcdMetaRows(meta),
  };
}

async function collect(chunks: AsyncIterable<{ keys: Buffer[]; values: Buffer[] }>): Promise<Row[]> {
  const rows: Row[] = [];
  for await (const chunk of chunks) {
    for (let i = 0; i < chunk.keys.length; i++) rows.push({ key: chunk.keys[i]!, value: chunk.values[i]! });
  }
  return rows;
}

function sortRows(rows: Row[]): Row[] {
  return rows.sort((a, b) => Buffer.compare(a.key, b.key));
}

export function uint64Be(n: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(n));
  return out;
}

/**
 * etcd's three auth buckets from the auth column (auth/auth-store.ts keeps etcd's layout: the
 * `auth` bucket's keys as they are, users under "u/<name>", roles under "r/<name>"). A store
 * that never touched auth has etcd's initial authRevision, 1.
 */
export function authBuckets(authColumn: Row[]): { auth: Row[]; authUsers: Row[]; authRoles: Row[] } {
  const auth: Row[] = [];
  const authUsers: Row[] = [];
  const authRoles: Row[] = [];
  for (const row of authColumn) {
    const prefix = row.key.subarray(0, 2).toString("latin1");
    if (prefix === AUTH_USER_PREFIX) authUsers.push({ key: row.key.subarray(2), value: row.value });
    else if (prefix === AUTH_ROLE_PREFIX) authRoles.push({ key: row.key.subarray(2), value: row.value });
    // services/auth's published keys are this project's own: etcd's buckets do not carry them.
    else if (prefix !== SIGNING_KEY_PREFIX) auth.push(row);
  }
  if (!auth.some((row) => row.key.equals(AUTH_REVISION_KEY))) {
    auth.push({ key: AUTH_REVISION_KEY, value: uint64Be(1) });
  }
  return { auth: sortRows(auth), authUsers: sortRows(authUsers), authRoles: sortRows(authRoles) };
}

/** etcd's meta bucket: the applied index and the compaction marks, nothing member-specific. */
export function etcdMetaRows(metaColumn: Row[]): Row[] {
  const kept = [META_KEYS.consistentIndex, META_KEYS.scheduledCompactRev, META_KEYS.finishedCompactRev];
  return sortRows(metaColumn.filter((row) => kept.some((k) => k.equals(row.key))));
}

export function alarmRows(metaColumn: Row[]): Row[] {
  const rows: Row[] = [];
  for (const row of metaColumn) {
    const alarm = alarmOfMetaKey(row.key);
    if (alarm === undefined) continue;
    const key = Buffer.from(etcdserverpb.AlarmMember.encode(alarm).finish());
    rows.push({ key, value: Buffer.alloc(0) });
  }
  return sortRows(rows);
}

/** The members and members_removed buckets from the members column. */
export function memberRows(membersColumn: Row[], codec: MemberCodec): Record<string, Row[]> {
  const table = new MembersTable(codec);
  table.restore(membersColumn);
  const members = table.list().map((m) => ({
    key: Buffer.from(m.id.toString(16)),
    value: Buffer.from(memberJson(m)),
  }));
  const removed = table
    .removed()
    .map((id) => ({ key: Buffer.from(id.toString(16)), value: Buffer.from("removed") }));
  return { [BUCKETS.members]: sortRows(members), [BUCKETS.membersRemoved]: sortRows(removed) };
}

/** Go's json.Marshal of etcd's membership.Member (field order and omitempty as etcd's). */
export function memberJson(m: MemberInfo): string {
  let out = `{"id":${m.id},"peerURLs":${JSON.stringify(m.peerUrls)}`;
  if (m.isLearner) out += `,"isLearner":true`;
  if (m.name !== "") out += `,"name":${JSON.stringify(m.name)}`;
  if (m.clientUrls.length > 0) out += `,"clientURLs":${JSON.stringify(m.clientUrls)}`;
  return `${out}}`;
}
