// --experimental-initial-corrupt-check (etcd 3.4's CheckInitialHashKV): before a restarted
// member joins Raft, its HashKV at its own revision is compared with every peer's at that
// revision; a different hash at the same compacted revision means this member's data differs
// from the cluster's, and it refuses to start. Peers that cannot answer (down, behind, or
// compacted further) are skipped with a warning, as in etcd.
//
// Peers are asked on their peer URLs (RaftPeer.HashKV, where etcd serves /members/hashkv), not
// on their client URLs: a client's Maintenance.HashKV is root's once auth is on, and the check
// must work then too.

import { type etcdserverpb, peer as peerApi } from "@etcd-ts/api";
import { Metadata } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { formatId } from "../membership/member-id.js";
import type { MemberInfo } from "../membership/members-table.js";
import { grpcTarget } from "../transport/message-batching.js";
import { CLUSTER_ID_HEADER, SERVER_FROM_HEADER } from "../transport/peer-transport.js";
import { channelCredentialsFor, type DialTls } from "../transport/tls-credentials.js";

export interface LocalHash {
  hash: number;
  revision: number;
  compactRevision: number;
}

export type PeerHash =
  | { id: bigint; hash: number; compactRevision: number; revision: number }
  | { id: bigint; error: string };

/** The peers whose data differs from ours (etcd counts only hashes at the same compaction). */
export function mismatchedPeers(local: LocalHash, peers: readonly PeerHash[], logger: Logger): bigint[] {
  const mismatched: bigint[] = [];
  for (const peer of peers) {
    if ("error" in peer) {
      logger.warn(
        { peer: formatId(peer.id), revision: local.revision, error: peer.error },
        "cannot fetch hash from remote peer",
      );
      continue;
    }
    if (peer.hash === local.hash) continue;
    if (peer.compactRevision === local.compactRevision) {
      logger.error(
        {
          peer: formatId(peer.id),
          localHash: local.hash,
          peerHash: peer.hash,
          revision: local.revision,
          compactRevision: local.compactRevision,
        },
        "found different hash values from remote peer",
      );
      mismatched.push(peer.id);
    } else {
      logger.warn(
        {
          peer: formatId(peer.id),
          localCompactRevision: local.compactRevision,
          peerCompactRevision: peer.compactRevision,
        },
        "found different compact revision values from remote peer",
      );
    }
  }
  return mismatched;
}

/** The member asking: a peer of another cluster refuses (its hash compares with nothing). */
export interface HashAsker {
  readonly clusterId: bigint;
  readonly id: bigint;
}

/**
 * Each peer's HashKV at `revision`, asked on its first peer URL within `timeoutMs` (https
 * dialled as `dial` says: the peer side's certificate files, or auto-TLS).
 */
export async function peerHashes(
  asker: HashAsker,
  peers: readonly MemberInfo[],
  revision: number,
  timeoutMs: number,
  dial: DialTls = undefined,
): Promise<PeerHash[]> {
  return Promise.all(
    peers.map(async (peer): Promise<PeerHash> => {
      const url = peer.peerUrls[0];
      if (url === undefined) return { id: peer.id, error: "the peer has no peer URL" };
      const client = new peerApi.RaftPeerClient(grpcTarget(url), channelCredentialsFor(url, dial));
      const headers = new Metadata();
      headers.set(SERVER_FROM_HEADER, formatId(asker.id));
      headers.set(CLUSTER_ID_HEADER, formatId(asker.clusterId));
      try {
        const res = await new Promise<etcdserverpb.HashKVResponse>((resolve, reject) =>
          client.hashKv(
            { revision: BigInt(revision) },
            headers,
            { deadline: Date.now() + timeoutMs },
            (err, r) => (err ? reject(err) : resolve(r)),
          ),
        );
        return {
          id: peer.id,
          hash: res.hash,
          compactRevision: Number(res.compactRevision),
          revision: Number(res.header?.revision ?? 0n),
        };
      } catch (err) {
        return { id: peer.id, error: (err as { details?: string }).details ?? String(err) };
      } finally {
        client.close();
      }
    }),
  );
}
