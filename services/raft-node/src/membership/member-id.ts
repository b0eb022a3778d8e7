// Member and cluster IDs derived as etcd derives them (sha1 of the sorted peer URLs and the
// cluster token; the cluster ID from the sorted member IDs), so every member computes the same
// IDs from the same --initial-cluster without talking to the others.
// etcd keeps all 64 bits; we keep the top 53 so an ID is exact as a JS number everywhere
// (Raft core, JSON, logs). Clients only ever echo IDs back, so the narrower range is invisible.
import { createHash } from "node:crypto";

const ID_BITS_DROPPED = 11n;

function idFromDigest(digest: Buffer): number {
  const id = Number(digest.readBigUInt64BE(0) >> ID_BITS_DROPPED);
  // 0 means "nobody" in Raft; a zero hash prefix is astronomically unlikely but must not alias it.
  return id === 0 ? 1 : id;
}

export function memberIdFor(peerUrls: readonly string[], clusterToken: string, addedAtMs?: number): number {
  const sorted = [...peerUrls].sort();
  let material = sorted.join("") + clusterToken;
  // etcd mixes the time in for members added at runtime, so re-adding the same URLs gives a new ID.
  if (addedAtMs !== undefined) material += String(addedAtMs);
  return idFromDigest(createHash("sha1").update(material).digest());
}

export function clusterIdFor(memberIds: readonly number[]): number {
  const sorted = [...memberIds].sort((a, b) => a - b);
  const buf = Buffer.alloc(8 * sorted.length);
  sorted.forEach((id, i) => {
    buf.writeBigUInt64BE(BigInt(id), 8 * i);
  });
  return idFromDigest(createHash("sha1").update(buf).digest());
}

/** etcd prints member and cluster IDs as lowercase hex without padding. */
export function formatId(id: number): string {
  return id.toString(16);
}
