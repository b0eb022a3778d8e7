// The cluster's membership as the state machine knows it (etcd's membership.RaftCluster):
// who is a member, with which peer URLs, whether a learner, and the name and client URLs each
// member published after it started. Changed only by applied entries, so every member holds
// the same table; persisted in the "members" column in the same RocksDB batch as the apply.
//
// Pure: the member wiring turns changes into column writes (rowsFor*) and validates requests
// (check*) before proposing them, and again at apply time where the answer is deterministic.
import { EtcdError } from "@etcd-ts/api";
import type { MemberId } from "./member-id.js";

export const MEMBERS_COLUMN = "members";

export interface MemberInfo {
  id: MemberId;
  /** Empty until the member published itself (etcd lists such a member as "unstarted"). */
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

export interface MemberRow {
  key: Buffer;
  /** undefined deletes the row. */
  value: Buffer | undefined;
}

const MEMBER_PREFIX = "m:";
const REMOVED_PREFIX = "r:";

export function memberRowKey(id: MemberId): Buffer {
  return Buffer.from(`${MEMBER_PREFIX}${id.toString(16)}`);
}

export function removedRowKey(id: MemberId): Buffer {
  return Buffer.from(`${REMOVED_PREFIX}${id.toString(16)}`);
}

export type MemberCodec = {
  encode(member: MemberInfo): Buffer;
  decode(bytes: Uint8Array): MemberInfo;
};

export class MembersTable {
  private readonly byId = new Map<MemberId, MemberInfo>();
  private readonly removedIds = new Set<MemberId>();

  constructor(private readonly codec: MemberCodec) {}

  /** Members sorted by ID, as etcd lists them. */
  list(): MemberInfo[] {
    return [...this.byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  get(id: MemberId): MemberInfo | undefined {
    return this.byId.get(id);
  }

  has(id: MemberId): boolean {
    return this.byId.has(id);
  }

  /** IDs of removed members, ascending. */
  removed(): MemberId[] {
    return [...this.removedIds].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  isRemoved(id: MemberId): boolean {
    return this.removedIds.has(id);
  }

  get size(): number {
    return this.byId.size;
  }

  voters(): MemberInfo[] {
    return this.list().filter((m) => !m.isLearner);
  }

  learners(): MemberInfo[] {
    return this.list().filter((m) => m.isLearner);
  }

  // ---- checks made before proposing and again when applying ----

  checkAdd(member: MemberInfo, maxLearners: number): void {
    if (this.byId.has(member.id) || this.removedIds.has(member.id)) throw new EtcdError("MemberExist");
    const taken = new Set(this.list().flatMap((m) => m.peerUrls));
    if (member.peerUrls.some((u) => taken.has(u))) throw new EtcdError("PeerURLExist");
    if (member.isLearner && this.learners().length >= maxLearners) throw new EtcdError("TooManyLearners");
  }

  /**
   * etcd's --strict-reconfig-check for adding a voter (IsReadyToAddVotingMember): the members
   * that have started (published a name) must still be a quorum of the larger cluster. Adding a
   * second member to a one-member cluster is allowed (restoring a cluster from a backup).
   */
  checkEnoughStartedToAdd(): void {
    const voters = this.voters();
    const members = voters.length + 1;
    const started = voters.filter((m) => m.name !== "").length;
    if (started === 1 && members === 2) return;
    if (started < Math.floor(members / 2) + 1) throw new EtcdError("MemberNotEnoughStarted");
  }

  /** The same for removing a voter (IsReadyToRemoveVotingMember): quorum of those who remain. */
  checkEnoughStartedToRemove(id: MemberId): void {
    const remaining = this.voters().filter((m) => m.id !== id);
    const started = remaining.filter((m) => m.name !== "").length;
    if (started < Math.floor(remaining.length / 2) + 1) throw new EtcdError("MemberNotEnoughStarted");
  }

  checkRemove(id: MemberId): void {
    if (this.removedIds.has(id)) throw new EtcdError("MemberNotFound");
    if (!this.byId.has(id)) throw new EtcdError("MemberNotFound");
  }

  checkPromote(id: MemberId): void {
    const member = this.byId.get(id);
    if (member === undefined) throw new EtcdError("MemberNotFound");
    if (!member.isLearner) throw new EtcdError("MemberNotLearner");
  }

  checkUpdate(id: MemberId, peerUrls: string[]): void {
    if (!this.byId.has(id)) throw new EtcdError("MemberNotFound");
    const taken = new Set(
      this.list()
        .filter((m) => m.id !== id)
        .flatMap((m) => m.peerUrls),
    );
    if (peerUrls.some((u) => taken.has(u))) throw new EtcdError("PeerURLExist");
  }

  // ---- changes (apply path); each returns the rows to write in the apply's batch ----

  /** Adds a member, or (re-adding an existing one, as bootstrap replay does) keeps what is known. */
  add(member: MemberInfo): MemberRow[] {
    const existing = this.byId.get(member.id);
    if (existing !== undefined) {
      // A learner being added again as a voter is a promotion (Raft's AddNode on a learner).
      if (existing.isLearner && !member.isLearner) return this.promote(member.id);
      return [];
    }
    if (this.removedIds.has(member.id)) return [];
    const copy = cloneMember(member);
    this.byId.set(copy.id, copy);
    return [this.row(copy)];
  }

  remove(id: MemberId): MemberRow[] {
    const rows: MemberRow[] = [{ key: removedRowKey(id), value: Buffer.alloc(0) }];
    this.removedIds.add(id);
    if (this.byId.delete(id)) rows.push({ key: memberRowKey(id), value: undefined });
    return rows;
  }

  promote(id: MemberId): MemberRow[] {
    const member = this.byId.get(id);
    if (member === undefined || !member.isLearner) return [];
    member.isLearner = false;
    return [this.row(member)];
  }

  updatePeerUrls(id: MemberId, peerUrls: string[]): MemberRow[] {
    const member = this.byId.get(id);
    if (member === undefined) return [];
    member.peerUrls = [...peerUrls];
    return [this.row(member)];
  }

  setAttributes(id: MemberId, name: string, clientUrls: string[]): MemberRow[] {
    const member = this.byId.get(id);
    if (member === undefined) return [];
    member.name = name;
    member.clientUrls = [...clientUrls];
    return [this.row(member)];
  }

  /** Rebuilds the table from its persisted rows. */
  restore(rows: Iterable<{ key: Buffer; value: Buffer }>): void {
    this.byId.clear();
    this.removedIds.clear();
    for (const { key, value } of rows) {
      const text = key.toString();
      if (text.startsWith(MEMBER_PREFIX)) {
        const member = this.codec.decode(value);
        this.byId.set(member.id, member);
      } else if (text.startsWith(REMOVED_PREFIX)) {
        this.removedIds.add(BigInt(`0x${text.slice(REMOVED_PREFIX.length)}`));
      }
    }
  }

  private row(member: MemberInfo): MemberRow {
    return { key: memberRowKey(member.id), value: this.codec.encode(member) };
  }
}

export function cloneMember(m: MemberInfo): MemberInfo {
  return { ...m, peerUrls: [...m.peerUrls], clientUrls: [...m.clientUrls] };
}

/**
 * etcd's isLearnerReady: a learner may be promoted once its log has reached 90% of the
 * leader's (server.go readyPercentThreshold).
 */
export function learnerInSync(learnerMatch: number, leaderMatch: number): boolean {
  return learnerMatch >= 0.9 * leaderMatch;
}
