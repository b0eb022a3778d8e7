// Member and cluster IDs derived exactly as etcd 3.4 derives them (etcdserver/api/membership:
// newMember, RaftCluster.genID), so the same flags give the same IDs as etcd, every member
// computes them from --initial-cluster without talking to the others, and etcdctl's `%16x`
// output and `member remove <hex>` work unchanged. IDs are full 64-bit values (bigint).
import { createHash } from "node:crypto";

export type MemberId = bigint;

/**
 * etcd's newMember: the first 8 bytes (big-endian) of sha1(sorted peer URLs joined with "",
 * then the cluster token, then, for a member added at runtime, the decimal unix seconds).
 * etcd's MemberAdd passes an empty token and the time of the request.
 */
export function memberIdFor(
  peerUrls: readonly string[],
  clusterToken: string,
  addedAtSeconds?: number,
): MemberId {
  let material = [...peerUrls].sort().join("") + clusterToken;
  // Re-adding the same URLs later gives a new ID, as in etcd.
  if (addedAtSeconds !== undefined) material += String(addedAtSeconds);
  return createHash("sha1").update(material).digest().readBigUInt64BE(0);
}

/** etcd's genID: the first 8 bytes of sha1 of the sorted member IDs, each 8 bytes big-endian. */
export function clusterIdFor(memberIds: readonly MemberId[]): bigint {
  const sorted = [...memberIds].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const buf = Buffer.alloc(8 * sorted.length);
  sorted.forEach((id, i) => {
    buf.writeBigUInt64BE(id, 8 * i);
  });
  return createHash("sha1").update(buf).digest().readBigUInt64BE(0);
}

/** etcd prints member and cluster IDs as lowercase hex without padding (types.ID.String). */
export function formatId(id: bigint): string {
  return id.toString(16);
}

/** Parses an ID as etcd's types.IDFromString does: hex, up to 64 bits. */
export function parseId(text: string): MemberId | undefined {
  if (!/^[0-9a-fA-F]{1,16}$/.test(text)) return undefined;
  return BigInt(`0x${text}`);
}
