// Committed Raft entries -> state machine requests -> the applier chain -> answers. What etcd's
// applyAll/applyEntries (server.go) and applyEntryNormal/applyConfChange do: decode each entry,
// apply the batch in order, give Raft every ConfChange, and settle the calls this member is
// waiting on (only the proposer answers a client; the others apply silently).
import { decodePutRequest, etcdserverpb } from "@etcd-ts/api";
import { type ConfChange, ConfChangeType, decodeConfChange, type Entry, EntryType } from "@etcd-ts/raft";
import type { LeaseStateMachine } from "../lease/mod.js";
import { memberCodec } from "../membership/member-codec.js";
import {
  MEMBERS_COLUMN,
  type MemberInfo,
  type MemberRow,
  type MembersTable,
} from "../membership/members-table.js";
import {
  alarmRequestFromApi,
  compactionRequestFromApi,
  deleteRangeRequestFromApi,
  type ExternalApply,
  type MvccRequest,
  putRequestFromApi,
  txnRequestFromApi,
} from "../mvcc/mod.js";
import { stageTimeline } from "../server/stage-timeline.js";
import type { Applier, ChainEntry } from "./applier-chain.js";
import { type AuthApplyParts, authRequest, authSubject, isAuthKind } from "./auth-requests.js";
import { decodeEnvelope, type EntryEnvelope, EntryKind } from "./entry-envelope.js";

/** What a proposer already holds for its request: the decoded form, reused at apply. */
export type ProposalContext = MvccRequest | undefined;
/** The applied requests other services hear of (control-plane events). */
export type ControlRequest = Extract<MvccRequest, { alarm: unknown } | { compaction: unknown }>;

/** The proposals this member waits on, by the sequence number their envelope carries. */
export interface ProposalWaiters {
  get(seq: number): { context: ProposalContext } | undefined;
  resolve(seq: number, value: unknown): boolean;
  reject(seq: number, error: Error): boolean;
}

export interface EntryApplierParts {
  memberId: bigint;
  chain: Applier;
  proposals: ProposalWaiters;
  leaseMachine: LeaseStateMachine;
  members: MembersTable;
  auth: AuthApplyParts;
  /** Members known from --initial-cluster or a peer, for bootstrap ConfChanges without context. */
  seedMembers: ReadonlyMap<bigint, MemberInfo>;
  /** Raft's side of a committed ConfChange (its configuration is rebuilt from the log). */
  /** A committed ConfChange, the entry at `index`, reached in order. */
  applyConfChange(cc: ConfChange, index: number): void;
  /** After a batch that changed membership: peers to dial may have changed. */
  membershipChanged(): void;
  /** This member's own removal was applied. */
  removed(): void;
  /** The applied index moved (linearizable reads wait for it). */
  applied(index: number): void;
  /** An Alarm or Compaction request was applied (control-plane events). */
  controlApplied?(request: ControlRequest): void;
  /** An auth entry was applied (control-plane events; most change nothing). */
  authApplied?(): void;
}

/** A decoded entry is its own chain entry (one object per entry on the apply path). */
interface DecodedEntry extends ChainEntry {
  envelope?: EntryEnvelope | undefined;
  confChange?: ConfChange;
}

export class EntryApplier {
  private appliedIdx: number;

  constructor(
    private readonly parts: EntryApplierParts,
    applied: number,
  ) {
    this.appliedIdx = applied;
  }

  get appliedIndex(): number {
    return this.appliedIdx;
  }

  /**
   * After a snapshot install replaced the state machine with an image applied up to `index`
   * (the snapshot's own index: a leader stamps what it sends with its image's applied index).
   */
  restored(index: number): void {
    // Raft installs only snapshots past its commit index, hence past anything applied.
    if (index < this.appliedIdx)
      throw new Error(`snapshot at ${index} installed after applying ${this.appliedIdx}`);
    this.appliedIdx = index;
    this.parts.applied(this.appliedIdx);
  }

  /**
   * Applies committed entries, in order, as one batch through the chain. The applied index only
   * grows: Raft hands over each committed entry once, after the applied index it started from
   * or the snapshot installed; an entry at or below it would mean the state machine and the log
   * disagree, and stops the member rather than step the applied index back.
   */
  async apply(entries: readonly Entry[]): Promise<void> {
    const first = entries[0];
    if (first !== undefined && first.index <= this.appliedIdx) {
      throw new Error(`entry ${first.index} handed to apply after applying ${this.appliedIdx}`);
    }
    const decoded = entries.map((e) => this.decode(e));
    stageTimeline?.mark("apply.decoded");
    const results = await this.parts.chain.applyBatch(decoded);
    stageTimeline?.mark("apply.chained");
    let membershipChanged = false;
    for (let i = 0; i < decoded.length; i++) {
      const { index, envelope, confChange } = decoded[i]!;
      const result = results[i]!;
      this.appliedIdx = index;
      if (confChange !== undefined) {
        // Raft's configuration is rebuilt from the log on every start, so every committed
        // ConfChange goes to Raft, also those the store had applied before (skipped).
        this.parts.applyConfChange(confChange, index);
        membershipChanged = true;
        if (confChange.type === ConfChangeType.RemoveNode && confChange.nodeId === this.parts.memberId) {
          this.parts.removed();
        }
      } else if (
        envelope !== undefined &&
        envelope.kind >= EntryKind.MemberAttributes &&
        envelope.kind <= EntryKind.MemberConfChange
      ) {
        membershipChanged = true;
      }
      if (
        (envelope?.kind === EntryKind.Alarm || envelope?.kind === EntryKind.Compaction) &&
        result.status === "applied" &&
        this.parts.controlApplied !== undefined
      ) {
        this.parts.controlApplied(decoded[i]!.request as ControlRequest);
      }
      if (envelope !== undefined && isAuthKind(envelope.kind) && result.status === "applied")
        this.parts.authApplied?.();
      if (envelope === undefined || envelope.proposer !== this.parts.memberId) continue;
      if (result.status === "failed") this.parts.proposals.reject(envelope.seq, result.error);
      else if (result.status === "applied") this.parts.proposals.resolve(envelope.seq, result.response);
    }
    if (membershipChanged) this.parts.membershipChanged();
    this.parts.applied(this.appliedIdx);
  }

  private decode(entry: Entry): DecodedEntry {
    const { index, term } = entry;
    if (entry.type === EntryType.ConfChange) {
      const cc = decodeConfChange(entry.data);
      const envelope = cc.context.length > 0 ? decodeEnvelope(cc.context) : undefined;
      return {
        index,
        term,
        envelope,
        kind: envelope?.kind,
        caller: envelope?.caller,
        confChange: cc,
        request: this.confChangeRequest(cc, envelope),
      };
    }
    if (entry.data.length === 0) return { index, term, request: undefined };
    const envelope = decodeEnvelope(entry.data);
    const { kind, caller } = envelope;
    const own =
      envelope.proposer === this.parts.memberId ? this.parts.proposals.get(envelope.seq)?.context : undefined;
    if (isAuthKind(kind)) {
      return {
        index,
        term,
        envelope,
        kind,
        caller,
        request: authRequest(kind, envelope.payload, index, this.parts.auth),
        subject: authSubject(kind, envelope.payload),
      };
    }
    const request = own ?? this.requestOf(envelope);
    const subject =
      kind === EntryKind.LeaseRevoke
        ? etcdserverpb.LeaseRevokeRequest.decode(envelope.payload).ID
        : undefined;
    return { index, term, envelope, kind, caller, request, quota: quotaOf(kind, request), subject };
  }

  private requestOf(envelope: EntryEnvelope): MvccRequest {
    const p = envelope.payload;
    const lease = this.parts.leaseMachine;
    const members = this.parts.members;
    switch (envelope.kind) {
      case EntryKind.Put:
        return { put: putRequestFromApi(decodePutRequest(p)) };
      case EntryKind.DeleteRange:
        return { deleteRange: deleteRangeRequestFromApi(etcdserverpb.DeleteRangeRequest.decode(p)) };
      case EntryKind.Txn:
        return { txn: txnRequestFromApi(etcdserverpb.TxnRequest.decode(p)) };
      case EntryKind.Compaction:
        return { compaction: compactionRequestFromApi(etcdserverpb.CompactionRequest.decode(p)) };
      case EntryKind.Alarm:
        return { alarm: alarmRequestFromApi(etcdserverpb.AlarmRequest.decode(p)) };
      case EntryKind.LeaseGrant: {
        const r = etcdserverpb.LeaseGrantRequest.decode(p);
        return lease.grantRequest(r.ID, Number(r.TTL));
      }
      case EntryKind.LeaseRevoke:
        return lease.revokeRequest(etcdserverpb.LeaseRevokeRequest.decode(p).ID);
      case EntryKind.LeaseCheckpoint: {
        const r = etcdserverpb.LeaseCheckpointRequest.decode(p);
        return lease.checkpointRequest(
          r.checkpoints.map((c) => ({ id: c.ID, remainingTtl: Number(c.remainingTTL) })),
        );
      }
      case EntryKind.MemberAttributes: {
        const m = memberCodec.decode(p);
        return membersRequest(members, () => members.setAttributes(m.id, m.name, m.clientUrls));
      }
      case EntryKind.MemberUpdate: {
        const m = memberCodec.decode(p);
        return membersRequest(members, () => {
          members.checkUpdate(m.id, m.peerUrls);
          return members.updatePeerUrls(m.id, m.peerUrls);
        });
      }
      case EntryKind.MemberConfChange:
        throw new Error("a member conf change envelope in a normal entry");
      default:
        throw new Error(`entry kind ${envelope.kind} is not a state machine request here`);
    }
  }

  private confChangeRequest(cc: ConfChange, envelope: EntryEnvelope | undefined): MvccRequest {
    const members = this.parts.members;
    const member =
      envelope !== undefined ? memberCodec.decode(envelope.payload) : this.parts.seedMembers.get(cc.nodeId);
    return membersRequest(members, () => {
      switch (cc.type) {
        case ConfChangeType.AddNode:
        case ConfChangeType.AddLearnerNode:
          return members.add({
            id: cc.nodeId,
            name: member?.name ?? "",
            peerUrls: member?.peerUrls ?? [],
            clientUrls: member?.clientUrls ?? [],
            isLearner: cc.type === ConfChangeType.AddLearnerNode,
          });
        case ConfChangeType.RemoveNode:
          return members.remove(cc.nodeId);
      }
    });
  }
}

/** A membership change as part of the apply batch: the table rows go in the same RocksDB write. */
function membersRequest(members: MembersTable, change: () => MemberRow[]): MvccRequest {
  return {
    external: (context: ExternalApply) => {
      for (const row of change()) {
        if (row.value === undefined) context.del(MEMBERS_COLUMN, row.key);
        else context.put(MEMBERS_COLUMN, row.key, row.value);
      }
      return members.list();
    },
  };
}

/** What etcd's quota counts: puts, txns (their bigger branch) and lease grants. */
function quotaOf(kind: EntryKind, request: MvccRequest): ChainEntry["quota"] {
  if (kind === EntryKind.LeaseGrant) return { leaseGrant: true };
  if (kind === EntryKind.Put || kind === EntryKind.Txn) return request;
  return undefined;
}
