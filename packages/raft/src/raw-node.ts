import { encodeConfChange } from "./codec.js";
import { entriesPayloadSize } from "./entry-size.js";
import { ProposalDroppedError } from "./errors.js";
import { isLocalMessage, isResponseMessage, newMessage, Raft, type RaftConfig } from "./raft.js";
import {
  type ConfChange,
  type ConfState,
  EntryType,
  type HardState,
  type Message,
  MessageType,
  NONE,
  type NodeId,
  type ReadState,
  type Ready,
  type SoftState,
  StateRole,
} from "./types.js";

export type { RaftConfig } from "./raft.js";

export interface ProgressStatus {
  match: number;
  next: number;
  state: "probe" | "replicate" | "snapshot";
  recentActive: boolean;
  isLearner: boolean;
  pendingSnapshot: number;
  inflight: number;
}

export interface Status {
  id: NodeId;
  term: number;
  vote: NodeId;
  commit: number;
  applied: number;
  lead: NodeId;
  role: StateRole;
  leadTransferee: NodeId;
  confState: ConfState;
  /** Empty unless this node is the leader. */
  progress: Map<NodeId, ProgressStatus>;
}

/**
 * The application's handle on one Raft node (etcd-io/raft's RawNode), in the synchronous
 * storage-write mode: every Ready must be fully handled (persist, send, apply) before
 * advance(), and the next ready() comes after advance().
 */
export class RawNode {
  private readonly raft: Raft;
  private prevSoftState: SoftState;
  private prevHardState: HardState;

  constructor(config: RaftConfig) {
    this.raft = new Raft(config);
    this.prevSoftState = this.raft.softState();
    this.prevHardState = this.raft.hardState();
  }

  tick(): void {
    this.raft.tick();
  }

  /** Starts an election now (with a pre-vote round when pre-vote is on). */
  campaign(): void {
    this.raft.step(newMessage(MessageType.MsgHup, NONE, this.raft.id, 0));
  }

  /** Appends `data` on the leader, or forwards it from a follower. Throws ProposalDroppedError. */
  propose(data: Uint8Array): void {
    const m = newMessage(MessageType.MsgProp, NONE, this.raft.id, 0);
    m.entries = [{ term: 0, index: 0, type: EntryType.Normal, data }];
    this.raft.step(m);
  }

  /** Proposes one membership change; refused while another is pending (not yet applied). */
  proposeConfChange(cc: ConfChange): void {
    const m = newMessage(MessageType.MsgProp, NONE, this.raft.id, 0);
    m.entries = [{ term: 0, index: 0, type: EntryType.ConfChange, data: encodeConfChange(cc) }];
    this.raft.step(m);
  }

  /** Called by the application as it applies a committed ConfChange entry. */
  applyConfChange(cc: ConfChange): ConfState {
    return this.raft.applyConfChange(cc);
  }

  /**
   * A message from a peer. Local-only types are ignored, as are responses from peers not in
   * the configuration and termless messages other than forwarded proposals and reads. A forwarded proposal or read the leader cannot take is dropped (the
   * remote proposer learns nothing; it must time out and retry, as with a lost message).
   */
  step(m: Message): void {
    if (isLocalMessage(m.type)) return;
    // Only forwarded proposals and reads travel without a term; anything else at term 0
    // would be taken for a local message.
    if (m.term === 0 && m.type !== MessageType.MsgProp && m.type !== MessageType.MsgReadIndex) return;
    if (isResponseMessage(m.type) && !this.raft.trk.progress.has(m.from)) return;
    try {
      this.raft.step(m);
    } catch (e) {
      if (
        e instanceof ProposalDroppedError &&
        (m.type === MessageType.MsgProp || m.type === MessageType.MsgReadIndex)
      ) {
        return;
      }
      throw e;
    }
  }

  /**
   * Requests a linearizable read point. Answered in a later Ready as a ReadState carrying
   * `ctx`, which must be unique among pending requests. Throws ProposalDroppedError when
   * there is no leader. A request in flight when leadership changes is dropped silently:
   * callers time out and retry.
   */
  readIndex(ctx: Uint8Array): void {
    const m = newMessage(MessageType.MsgReadIndex, NONE, this.raft.id, 0);
    m.context = ctx;
    this.raft.step(m);
  }

  /** Asks the leader (this node, or forwarded to it) to hand leadership to `to`. */
  transferLeader(to: NodeId): void {
    this.raft.step(newMessage(MessageType.MsgTransferLeader, NONE, to, 0));
  }

  reportUnreachable(id: NodeId): void {
    this.raft.step(newMessage(MessageType.MsgUnreachable, NONE, id, 0));
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    const m = newMessage(MessageType.MsgSnapStatus, NONE, id, 0);
    m.reject = !ok;
    this.raft.step(m);
  }

  /**
   * Read traffic that may be handled now, while the application is still handling a Ready (its
   * WAL write in flight), instead of in the next Ready: the heartbeat round of ReadIndex requests
   * made since, heartbeats and their responses, forwarded ReadIndex requests and their answers
   * (`messages`, to send at once, even before the Ready in progress is persisted: none of them
   * says anything about this node's log or votes), and the read states answered (`readStates`:
   * served once the applied index reaches theirs, as from a Ready). Everything else waits for
   * the next Ready. Linearizability is unchanged: a read state is still confirmed by a quorum's
   * heartbeat acks at this leader's term, sent after the request arrived.
   */
  takeReadTraffic(): { messages: Message[]; readStates: ReadState[] } {
    const r = this.raft;
    const messages = r.takeReadTraffic();
    const readStates = r.readStates;
    if (readStates.length > 0) r.readStates = [];
    return { messages, readStates };
  }

  hasReady(): boolean {
    const r = this.raft;
    if (r.lead !== this.prevSoftState.lead || r.state !== this.prevSoftState.role) return true;
    const hs = this.prevHardState;
    if (r.term !== hs.term || r.vote !== hs.vote || r.log.committed !== hs.commit) return true;
    if (r.log.unstable.nextSnapshot()) return true;
    if (r.msgs.length > 0 || r.readStates.length > 0 || r.hasPendingSends()) return true;
    return r.log.unstable.hasNextEntries() || r.log.hasNextCommittedEntries();
  }

  /**
   * What to persist, send and apply now. The caller must persist `hardState`, `entries` and
   * `snapshot` (durably when `mustSync`), then send `messages`, then apply `snapshot` and
   * `committedEntries`, then call advance(rd).
   */
  ready(): Ready {
    const r = this.raft;
    r.flushPendingSends();
    const entries = r.log.unstable.nextEntries();
    const committedEntries = r.log.nextCommittedEntries();
    const rd: Ready = {
      readStates: r.readStates,
      entries,
      committedEntries,
      messages: r.msgs,
      mustSync: false,
    };
    if (r.lead !== this.prevSoftState.lead || r.state !== this.prevSoftState.role) {
      rd.softState = r.softState();
      this.prevSoftState = rd.softState;
    }
    const prev = this.prevHardState;
    if (r.term !== prev.term || r.vote !== prev.vote || r.log.committed !== prev.commit) {
      rd.hardState = r.hardState();
      // Only a new term or vote must be durable before messages go out; a commit index can
      // be recovered from a quorum.
      rd.mustSync = r.term !== prev.term || r.vote !== prev.vote;
      this.prevHardState = rd.hardState;
    }
    const snap = r.log.unstable.nextSnapshot();
    if (snap) rd.snapshot = snap;
    if (entries.length > 0 || snap) rd.mustSync = true;

    r.msgs = [];
    r.readStates = [];
    r.log.unstable.acceptInProgress();
    if (committedEntries.length > 0)
      r.log.acceptApplying(committedEntries[committedEntries.length - 1].index);
    return rd;
  }

  /** Acknowledges that `rd` (the last Ready returned) has been fully handled. */
  advance(rd: Ready): void {
    const r = this.raft;
    if (rd.snapshot) {
      r.log.stableSnapTo(rd.snapshot.metadata.index);
      r.log.appliedTo(rd.snapshot.metadata.index);
    }
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1];
      r.onPersisted(last.index, last.term);
    }
    if (rd.committedEntries.length > 0) {
      r.log.appliedTo(rd.committedEntries[rd.committedEntries.length - 1].index);
      r.reduceUncommittedSize(entriesPayloadSize(rd.committedEntries));
    }
  }

  status(): Status {
    const r = this.raft;
    const progress = new Map<NodeId, ProgressStatus>();
    if (r.state === StateRole.Leader) {
      for (const [id, pr] of r.trk.progress) {
        progress.set(id, {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          recentActive: pr.recentActive,
          isLearner: pr.isLearner,
          pendingSnapshot: pr.pendingSnapshot,
          inflight: pr.inflights.size,
        });
      }
    }
    return {
      id: r.id,
      term: r.term,
      vote: r.vote,
      commit: r.log.committed,
      applied: r.log.applied,
      lead: r.lead,
      role: r.state,
      leadTransferee: r.leadTransferee,
      confState: r.trk.confState(),
      progress,
    };
  }
}
