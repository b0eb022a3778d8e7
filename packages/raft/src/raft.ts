import { decodeConfChange } from "./codec.js";
import { entriesPayloadSize } from "./entry-size.js";
import {
  CompactedError,
  ProposalDroppedError,
  RaftError,
  SnapshotTemporarilyUnavailableError,
} from "./errors.js";
import { VoteResult } from "./quorum/majority.js";
import { RaftLog } from "./raft-log.js";
import { ReadOnlyQueue } from "./read-only.js";
import type { Storage } from "./storage.js";
import { Progress } from "./tracker/progress.js";
import { ProgressTracker } from "./tracker/progress-tracker.js";
import {
  type ConfChange,
  ConfChangeType,
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  MessageType,
  NONE,
  type NodeId,
  type ReadState,
  type Snapshot,
  type SoftState,
  StateRole,
} from "./types.js";

export interface RaftConfig {
  id: NodeId;
  storage: Storage;
  /** Followers campaign after a random timeout in [electionTick, 2*electionTick). */
  electionTick: number;
  heartbeatTick: number;
  /** Seeded PRNG in [0,1): the only source of randomness. */
  random: () => number;
  /** Last index applied by the application before a restart. */
  applied?: number;
  /** Bytes of entry data per MsgApp (default 1 MiB). */
  maxSizePerMsg?: number;
  /** Bytes of entry data handed out as committedEntries in one Ready (default maxSizePerMsg). */
  maxCommittedSizePerReady?: number;
  /** MsgApps in flight per follower in replicate state (default 256). */
  maxInflightMsgs?: number;
  /** Bytes of uncommitted entry data a leader accepts; 0 = unlimited. */
  maxUncommittedEntriesSize?: number;
  checkQuorum?: boolean;
  preVote?: boolean;
}

const DEFAULT_MAX_SIZE_PER_MSG = 1024 * 1024;
const DEFAULT_MAX_INFLIGHT = 256;

/** Marks a MsgVote sent because of MsgTimeoutNow: it must win even against a leader lease. */
export const CAMPAIGN_TRANSFER_CONTEXT: Uint8Array = new TextEncoder().encode("CampaignTransfer");

type CampaignType = "pre-election" | "election" | "transfer";

export function newMessage(type: MessageType, to: NodeId, from: NodeId, term: number): Message {
  return { type, to, from, term, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0 };
}

export function isLocalMessage(t: MessageType): boolean {
  return (
    t === MessageType.MsgHup ||
    t === MessageType.MsgBeat ||
    t === MessageType.MsgUnreachable ||
    t === MessageType.MsgSnapStatus ||
    t === MessageType.MsgCheckQuorum
  );
}

export function isResponseMessage(t: MessageType): boolean {
  return (
    t === MessageType.MsgAppResp ||
    t === MessageType.MsgVoteResp ||
    t === MessageType.MsgHeartbeatResp ||
    t === MessageType.MsgUnreachable ||
    t === MessageType.MsgPreVoteResp
  );
}

/**
 * Messages that say nothing about the sender's log or votes, so none waits for the sender's
 * persistence (Raft's rule covers acknowledgements of entries and votes: MsgAppResp,
 * MsgVoteResp): a leader's heartbeat (its commit is at most the follower's acknowledged match)
 * and its answer to a read; a follower's heartbeat response (an ack at its current term: a
 * vote it cast for a later term was persisted before its MsgVoteResp left, so no quorum that
 * elected a newer leader can have acked an older one's heartbeat after voting) and a
 * ReadIndex request it forwards (a context only).
 */
export function isReadTraffic(t: MessageType): boolean {
  return (
    t === MessageType.MsgHeartbeat ||
    t === MessageType.MsgHeartbeatResp ||
    t === MessageType.MsgReadIndex ||
    t === MessageType.MsgReadIndexResp
  );
}

function voteResponseType(t: MessageType): MessageType {
  return t === MessageType.MsgVote ? MessageType.MsgVoteResp : MessageType.MsgPreVoteResp;
}

function bytesEqual(a: Uint8Array | undefined, b: Uint8Array): boolean {
  if (!a || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The Raft state machine of one node (etcd-io/raft's `raft` struct). Driven by `step` and
 * `tick`; its outputs accumulate in `msgs`, `readStates` and the log, and RawNode hands
 * them out as Ready. Internal: applications use RawNode.
 */
export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId = NONE;
  readonly log: RaftLog;
  readonly trk: ProgressTracker;
  state: StateRole = StateRole.Follower;
  /** This node is a learner in the current configuration. */
  isLearner = false;
  msgs: Message[] = [];
  lead: NodeId = NONE;
  /** The voter leadership is being handed to, while a transfer is under way. */
  leadTransferee: NodeId = NONE;
  /**
   * A conf change may be proposed only once this index is applied: the last conf change
   * proposed, or the new leader's first entry, so a new leader commits an entry of its own
   * term before changing membership (the single-server change bug in Raft's dissertation).
   */
  pendingConfIndex = 0;
  /** Payload bytes of entries appended by this leader and not yet applied. */
  uncommittedSize = 0;
  /** Proposals were appended and not yet sent (see flushProposals). */
  appendsPending = false;
  /** The commit index advanced and followers have not been told yet. */
  commitPending = false;
  /** ReadIndex requests were queued and their heartbeat round is not yet sent. */
  readRoundPending = false;
  readonly readOnly = new ReadOnlyQueue();
  readStates: ReadState[] = [];
  /** ReadIndex requests held until this leader has committed an entry of its term. */
  pendingReadIndexMessages: Message[] = [];

  electionElapsed = 0;
  heartbeatElapsed = 0;
  readonly checkQuorum: boolean;
  readonly preVote: boolean;
  readonly heartbeatTimeout: number;
  readonly electionTimeout: number;
  randomizedElectionTimeout = 0;
  readonly maxMsgSize: number;
  readonly maxUncommittedSize: number;
  private readonly random: () => number;

  constructor(c: RaftConfig) {
    if (c.id <= 0n || c.id >= 1n << 64n) throw new RaftError("raft id must be a positive uint64");
    if (!(c.heartbeatTick > 0)) throw new RaftError("heartbeatTick must be greater than 0");
    if (!(c.electionTick > c.heartbeatTick))
      throw new RaftError("electionTick must be greater than heartbeatTick");
    const maxInflight = c.maxInflightMsgs ?? DEFAULT_MAX_INFLIGHT;
    if (!(maxInflight > 0)) throw new RaftError("maxInflightMsgs must be greater than 0");
    this.id = c.id;
    this.random = c.random;
    this.electionTimeout = c.electionTick;
    this.heartbeatTimeout = c.heartbeatTick;
    this.checkQuorum = c.checkQuorum ?? true;
    this.preVote = c.preVote ?? true;
    this.maxMsgSize = c.maxSizePerMsg ?? DEFAULT_MAX_SIZE_PER_MSG;
    this.maxUncommittedSize = c.maxUncommittedEntriesSize ?? 0;
    this.log = new RaftLog(c.storage, c.maxCommittedSizePerReady ?? this.maxMsgSize);
    this.trk = new ProgressTracker(maxInflight);

    const { hardState, confState } = c.storage.initialState();
    this.restoreConfState(confState);
    if (hardState.term !== 0 || hardState.vote !== NONE || hardState.commit !== 0) this.loadState(hardState);
    if (c.applied !== undefined && c.applied > 0) this.log.appliedTo(c.applied);
    this.becomeFollower(this.term, NONE);
  }

  private loadState(hs: HardState): void {
    if (hs.commit < this.log.committed || hs.commit > this.log.lastIndex()) {
      throw new RaftError(
        `hard state commit ${hs.commit} is out of range [${this.log.committed}, ${this.log.lastIndex()}]`,
      );
    }
    this.log.committed = hs.commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  softState(): SoftState {
    return { lead: this.lead, role: this.state };
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  // --- sending -------------------------------------------------------------------------

  private send(m: Message): void {
    if (m.from === NONE) m.from = this.id;
    if (
      m.type === MessageType.MsgVote ||
      m.type === MessageType.MsgVoteResp ||
      m.type === MessageType.MsgPreVote ||
      m.type === MessageType.MsgPreVoteResp
    ) {
      // Vote messages carry the term of the election they belong to, set by the caller.
      if (m.term === 0) throw new RaftError(`term should be set when sending ${MessageType[m.type]}`);
    } else if (m.type !== MessageType.MsgProp && m.type !== MessageType.MsgReadIndex) {
      // Forwarded proposals and reads are local to the receiving leader: no term.
      m.term = this.term;
    }
    this.msgs.push(m);
  }

  /** Sends a MsgApp (or MsgSnap) to `to` if its progress allows. */
  sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  /**
   * Sends the entries `to` is missing, as far as its flow control allows. With
   * sendIfEmpty false, sends nothing when there are no entries to send. A follower whose
   * needed entries are compacted gets the snapshot instead.
   */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.trk.progress.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    if (prevIndex + 1 < this.log.firstIndex()) return this.maybeSendSnapshot(to, pr);
    const prevTerm = this.log.maybeTerm(prevIndex);
    if (prevTerm === undefined) {
      throw new RaftError(
        `progress of ${to} is beyond the log: next ${pr.next}, last ${this.log.lastIndex()}`,
      );
    }
    let ents: Entry[] = [];
    // A full window sends only empty appends: if every message in it was lost, the answer
    // to an empty one (ack or reject) still unblocks the follower.
    if (pr.state !== "replicate" || !pr.inflights.full()) {
      try {
        ents = this.log.entries(pr.next, this.maxMsgSize);
      } catch (e) {
        if (e instanceof CompactedError) return this.maybeSendSnapshot(to, pr);
        throw e;
      }
    }
    if (ents.length === 0 && !sendIfEmpty) return false;
    const m = newMessage(MessageType.MsgApp, to, this.id, 0);
    m.index = prevIndex;
    m.logTerm = prevTerm;
    m.entries = ents;
    m.commit = this.log.committed;
    this.send(m);
    pr.sentEntries(ents.length, ents.length > 0 ? ents[ents.length - 1].index : 0);
    pr.sentCommit = m.commit;
    return true;
  }

  private maybeSendSnapshot(to: NodeId, pr: Progress): boolean {
    // A peer not heard from lately may be down: don't build and ship a snapshot for nothing.
    if (!pr.recentActive) return false;
    let snap: Snapshot;
    try {
      snap = this.log.snapshot();
    } catch (e) {
      if (e instanceof SnapshotTemporarilyUnavailableError) return false;
      throw e;
    }
    if (snap.metadata.index === 0) throw new RaftError("need non-empty snapshot");
    pr.becomeSnapshot(snap.metadata.index);
    const m = newMessage(MessageType.MsgSnap, to, this.id, 0);
    m.snapshot = snap;
    this.send(m);
    return true;
  }

  private sendHeartbeat(to: NodeId, context: Uint8Array | undefined): void {
    const pr = this.trk.progress.get(to);
    // A follower must not learn a commit index beyond what it is known to hold: it could
    // commit an entry of its log that differs from the leader's.
    const commit = Math.min(pr ? pr.match : 0, this.log.committed);
    const m = newMessage(MessageType.MsgHeartbeat, to, this.id, 0);
    m.commit = commit;
    if (context) m.context = context;
    this.send(m);
    if (pr) pr.sentCommit = commit;
  }

  bcastAppend(): void {
    for (const id of this.trk.progress.keys()) if (id !== this.id) this.sendAppend(id);
  }

  private bcastHeartbeat(context: Uint8Array | undefined): void {
    for (const id of this.trk.progress.keys()) if (id !== this.id) this.sendHeartbeat(id, context);
  }

  // --- roles ---------------------------------------------------------------------------

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.leadTransferee = NONE;
    this.trk.resetVotes();
    const next = this.log.lastIndex() + 1;
    for (const [id, pr] of this.trk.progress) {
      pr.becomeProbe();
      pr.match = id === this.id ? this.persistedLastIndex() : 0;
      pr.next = next;
      pr.recentActive = false;
      pr.msgAppFlowPaused = false;
      pr.sentCommit = 0;
    }
    this.pendingConfIndex = 0;
    this.uncommittedSize = 0;
    this.readOnly.clear();
    this.pendingReadIndexMessages = [];
    this.appendsPending = false;
    this.commitPending = false;
    this.readRoundPending = false;
  }

  /** The last index known to be in stable storage: a leader counts only that as its own ack. */
  private persistedLastIndex(): number {
    const u = this.log.unstable;
    if (u.snapshot) return 0;
    return u.entries.length > 0 ? u.offset - 1 : this.log.lastIndex();
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.electionTimeout + Math.floor(this.random() * this.electionTimeout);
  }

  becomeFollower(term: number, lead: NodeId): void {
    this.reset(term);
    this.lead = lead;
    this.state = StateRole.Follower;
  }

  private becomeCandidate(): void {
    if (this.state === StateRole.Leader) throw new RaftError("invalid transition [leader -> candidate]");
    this.reset(this.term + 1);
    this.vote = this.id;
    this.state = StateRole.Candidate;
  }

  private becomePreCandidate(): void {
    if (this.state === StateRole.Leader) throw new RaftError("invalid transition [leader -> pre-candidate]");
    // Neither the term nor the vote change: a pre-candidate that loses has disturbed nobody.
    this.trk.resetVotes();
    this.lead = NONE;
    this.state = StateRole.PreCandidate;
  }

  private becomeLeader(): void {
    if (this.state === StateRole.Follower) throw new RaftError("invalid transition [follower -> leader]");
    this.reset(this.term);
    this.lead = this.id;
    this.state = StateRole.Leader;
    const self = this.trk.progress.get(this.id);
    if (self) {
      // The leader trivially replicates to itself; its match moves as its own appends persist.
      const match = self.match;
      self.becomeReplicate();
      self.match = match;
      self.recentActive = true;
    }
    // The empty entry commits everything before it once a quorum holds it (entries of
    // earlier terms are never committed by counting replicas).
    const noop: Entry = { term: 0, index: 0, type: EntryType.Normal, data: new Uint8Array(0) };
    this.appendEntries([noop]);
    this.pendingConfIndex = this.log.lastIndex();
  }

  private promotable(): boolean {
    const pr = this.trk.progress.get(this.id);
    return pr !== undefined && !pr.isLearner && this.log.unstable.snapshot === undefined;
  }

  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false;
    let lo = this.log.applied + 1;
    const hi = this.log.committed + 1;
    while (lo < hi) {
      let ents: Entry[];
      try {
        ents = this.log.slice(lo, hi, this.maxMsgSize);
      } catch (e) {
        if (e instanceof CompactedError) return false;
        throw e;
      }
      for (const e of ents) if (e.type === EntryType.ConfChange) return true;
      lo += ents.length;
    }
    return false;
  }

  private hup(t: CampaignType): void {
    if (this.state === StateRole.Leader) return;
    if (!this.promotable()) return;
    // Campaigning with an unapplied conf change would use a configuration about to change.
    if (this.hasUnappliedConfChanges()) return;
    this.campaign(t);
  }

  private campaign(t: CampaignType): void {
    let term: number;
    let voteType: MessageType;
    if (t === "pre-election") {
      this.becomePreCandidate();
      voteType = MessageType.MsgPreVote;
      // Pre-votes ask about the term we would campaign for, without moving to it.
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteType = MessageType.MsgVote;
      term = this.term;
    }
    // The own vote counts at once: it is persisted with the hard state before any message
    // of this Ready leaves, and a leader commits nothing before advance().
    this.trk.recordVote(this.id, true);
    if (this.trk.tallyVotes().result === VoteResult.Won) {
      if (t === "pre-election") this.campaign("election");
      else this.becomeLeader();
      return;
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const id of this.trk.voters) {
      if (id === this.id) continue;
      const m = newMessage(voteType, id, this.id, term);
      m.index = lastIndex;
      m.logTerm = lastTerm;
      if (t === "transfer") m.context = CAMPAIGN_TRANSFER_CONTEXT;
      this.send(m);
    }
  }

  // --- ticks ---------------------------------------------------------------------------

  tick(): void {
    if (this.state === StateRole.Leader) this.tickHeartbeat();
    else this.tickElection();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.step(newMessage(MessageType.MsgHup, NONE, this.id, 0));
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum) this.step(newMessage(MessageType.MsgCheckQuorum, NONE, this.id, 0));
      // A transfer that did not finish within an election timeout is abandoned; a leader
      // that left the configuration starts another, perhaps to a better-placed voter.
      if (this.state === StateRole.Leader && this.leadTransferee !== NONE) this.abortLeaderTransfer();
      if (this.state === StateRole.Leader && (!this.trk.progress.has(this.id) || this.isLearner)) {
        this.stepDownAfterRemoval();
      }
    }
    if (this.state !== StateRole.Leader) return;
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      this.step(newMessage(MessageType.MsgBeat, NONE, this.id, 0));
    }
  }

  // --- step ----------------------------------------------------------------------------

  step(m: Message): void {
    if (m.term === 0) {
      // Local message (or a forwarded proposal/read).
    } else if (m.term > this.term) {
      if (m.type === MessageType.MsgVote || m.type === MessageType.MsgPreVote) {
        const force = bytesEqual(m.context, CAMPAIGN_TRANSFER_CONTEXT);
        const inLease = this.checkQuorum && this.lead !== NONE && this.electionElapsed < this.electionTimeout;
        // Heard from a leader within the minimum election timeout: this candidate is
        // disruptive (partitioned away and back, or removed), so don't let it bump the term.
        if (!force && inLease) return;
      }
      if (m.type === MessageType.MsgPreVote) {
        // Never change the term for a pre-vote.
      } else if (m.type === MessageType.MsgPreVoteResp && !m.reject) {
        // A pre-vote granted for our future term; the term moves once a quorum grants it.
      } else if (
        m.type === MessageType.MsgApp ||
        m.type === MessageType.MsgHeartbeat ||
        m.type === MessageType.MsgSnap
      ) {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if (
        (this.checkQuorum || this.preVote) &&
        (m.type === MessageType.MsgHeartbeat || m.type === MessageType.MsgApp)
      ) {
        // A stale leader (partitioned, or its term overtaken while we ignored a disruptive
        // candidate). With check-quorum or pre-vote its term would never be bumped by our
        // votes, so tell it about our term: it steps down.
        this.send(newMessage(MessageType.MsgAppResp, m.from, this.id, 0));
      } else if (m.type === MessageType.MsgPreVote) {
        // Reject at our term so a pre-candidate with a stale term learns it.
        const resp = newMessage(MessageType.MsgPreVoteResp, m.from, this.id, this.term);
        resp.reject = true;
        this.send(resp);
      }
      return;
    }

    switch (m.type) {
      case MessageType.MsgHup:
        this.hup(this.preVote ? "pre-election" : "election");
        return;
      case MessageType.MsgVote:
      case MessageType.MsgPreVote: {
        // We can vote if this is a repeat of a vote we cast, or we have not voted and know
        // of no leader in this term, or it is a pre-vote for a future term.
        const canVote =
          this.vote === m.from ||
          (this.vote === NONE && this.lead === NONE) ||
          (m.type === MessageType.MsgPreVote && m.term > this.term);
        if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
          // Grant at the message's term: a pre-candidate compares it with its future term.
          this.send(newMessage(voteResponseType(m.type), m.from, this.id, m.term));
          if (m.type === MessageType.MsgVote) {
            this.electionElapsed = 0;
            this.vote = m.from;
          }
        } else {
          const resp = newMessage(voteResponseType(m.type), m.from, this.id, this.term);
          resp.reject = true;
          this.send(resp);
        }
        return;
      }
    }
    switch (this.state) {
      case StateRole.Leader:
        this.stepLeader(m);
        return;
      case StateRole.Candidate:
      case StateRole.PreCandidate:
        this.stepCandidate(m);
        return;
      case StateRole.Follower:
        this.stepFollower(m);
        return;
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case MessageType.MsgBeat:
        this.bcastHeartbeat(this.readOnly.lastPendingContext());
        return;
      case MessageType.MsgCheckQuorum:
        if (!this.trk.quorumActive()) this.becomeFollower(this.term, NONE);
        // Activity is counted afresh over each election timeout.
        for (const [id, pr] of this.trk.progress) if (id !== this.id) pr.recentActive = false;
        return;
      case MessageType.MsgProp:
        this.leaderPropose(m);
        return;
      case MessageType.MsgReadIndex:
        // Until an entry of this term is committed, our commit index may lag what is
        // committed: the previous leader's, or, for a single voter restarted from disk, its
        // own (entries it persisted before crashing are committed, the commit index it had
        // not persisted yet is not). A read at it could miss committed writes.
        if (!this.committedEntryInCurrentTerm()) {
          this.pendingReadIndexMessages.push(m);
          return;
        }
        this.serveReadIndex(m);
        return;
    }

    const pr = this.trk.progress.get(m.from);
    if (!pr) return;
    switch (m.type) {
      case MessageType.MsgAppResp:
        this.handleAppendResponse(m, pr);
        return;
      case MessageType.MsgHeartbeatResp:
        this.handleHeartbeatResponse(m, pr);
        return;
      case MessageType.MsgSnapStatus:
        if (pr.state !== "snapshot") return;
        // On failure, forget the snapshot so that probing starts from the match, not past it.
        if (m.reject) pr.pendingSnapshot = 0;
        pr.becomeProbe();
        // Wait for the follower's answer (or a heartbeat response) before probing.
        pr.msgAppFlowPaused = true;
        return;
      case MessageType.MsgUnreachable:
        // The pipeline is probably broken: go back to one probe at a time.
        if (pr.state === "replicate") pr.becomeProbe();
        return;
      case MessageType.MsgTransferLeader: {
        if (pr.isLearner) return;
        const transferee = m.from;
        if (this.leadTransferee !== NONE) {
          if (this.leadTransferee === transferee) return;
          this.abortLeaderTransfer();
        }
        if (transferee === this.id) return;
        // The transfer must finish within an election timeout; count from now.
        this.electionElapsed = 0;
        this.leadTransferee = transferee;
        if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(transferee);
        else this.sendAppend(transferee);
        return;
      }
    }
  }

  private leaderPropose(m: Message): void {
    if (m.entries.length === 0) throw new RaftError("stepped empty MsgProp");
    if (!this.trk.progress.has(this.id)) throw new ProposalDroppedError("not a member");
    if (this.leadTransferee !== NONE) throw new ProposalDroppedError("leadership transfer in progress");
    let confChanges = 0;
    for (let i = 0; i < m.entries.length; i++) {
      const e = m.entries[i];
      if (e.type !== EntryType.ConfChange) continue;
      if (this.pendingConfIndex > this.log.applied || ++confChanges > 1) {
        throw new ProposalDroppedError("conf change pending");
      }
      this.validateConfChange(decodeConfChange(e.data));
    }
    if (!this.appendEntries(m.entries)) throw new ProposalDroppedError("too many uncommitted entries");
    for (let i = 0; i < m.entries.length; i++) {
      if (m.entries[i].type === EntryType.ConfChange) this.pendingConfIndex = m.entries[i].index;
    }
    // Sending waits for the next Ready, so that every proposal made until then leaves in
    // the same MsgApp (batching without any timer).
    this.appendsPending = true;
  }

  /**
   * Sends what was deferred to the next Ready: the entries proposed since the last one, to
   * every follower whose flow allows, and one heartbeat round for the reads queued.
   */
  flushPendingSends(): void {
    if (this.state !== StateRole.Leader) {
      this.appendsPending = false;
      this.commitPending = false;
      this.readRoundPending = false;
      return;
    }
    if (this.appendsPending || this.commitPending) {
      const commitPending = this.commitPending;
      this.appendsPending = false;
      this.commitPending = false;
      const committed = this.log.committed;
      for (const [id, pr] of this.trk.progress) {
        if (id === this.id) continue;
        while (this.maybeSendAppend(id, false)) {}
        if (commitPending && pr.canBumpCommit(committed)) this.maybeSendAppend(id, true);
      }
    }
    if (this.readRoundPending) {
      this.readRoundPending = false;
      this.bcastHeartbeat(this.readOnly.lastPendingContext());
    }
  }

  /**
   * Takes out of `msgs` what may leave before the Ready being handled is persisted, sending
   * first the heartbeat round of ReadIndex requests queued since that Ready: the read traffic
   * (see isReadTraffic). Entries and commit news stay for the next Ready, where they batch.
   */
  takeReadTraffic(): Message[] {
    if (this.readRoundPending && this.state === StateRole.Leader) {
      this.readRoundPending = false;
      this.bcastHeartbeat(this.readOnly.lastPendingContext());
    }
    if (this.msgs.length === 0) return [];
    const taken: Message[] = [];
    const kept: Message[] = [];
    for (const m of this.msgs) (isReadTraffic(m.type) ? taken : kept).push(m);
    this.msgs = kept;
    return taken;
  }

  /** Whether flushPendingSends() would send anything. */
  hasPendingSends(): boolean {
    return (
      this.state === StateRole.Leader && (this.appendsPending || this.commitPending || this.readRoundPending)
    );
  }

  /** Refuses a change that would leave no voter: nobody could ever commit again. */
  private validateConfChange(cc: ConfChange): void {
    const demotesOrRemoves =
      cc.type === ConfChangeType.RemoveNode || cc.type === ConfChangeType.AddLearnerNode;
    if (demotesOrRemoves && this.trk.voters.size === 1 && this.trk.voters.has(cc.nodeId)) {
      throw new RaftError(`conf change would leave no voters (removing or demoting ${cc.nodeId})`);
    }
  }

  private handleAppendResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    if (m.reject) {
      // The follower's hint is its last index at or below the probe whose term is <= the
      // probe's term (or its last index). Match its term against our log to skip every
      // entry that cannot match in one round trip.
      let nextProbeIndex = m.rejectHint;
      if (m.logTerm > 0) nextProbeIndex = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, nextProbeIndex)) {
        if (pr.state === "replicate") pr.becomeProbe();
        this.sendAppend(m.from);
      }
      return;
    }
    if (!(pr.maybeUpdate(m.index) || (pr.match === m.index && pr.state === "probe"))) return;
    if (pr.state === "probe") {
      pr.becomeReplicate();
    } else if (pr.state === "snapshot" && pr.match + 1 >= this.log.firstIndex()) {
      // The follower caught up past the snapshot (or got it): replicate from its match.
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === "replicate") {
      pr.inflights.freeLE(m.index);
    }
    if (this.maybeCommit()) {
      this.onCommitAdvanced();
    } else if (m.from !== this.id && pr.canBumpCommit(this.log.committed)) {
      this.commitPending = true;
    }
    if (m.from !== this.id) {
      // Acks may have opened the window for several messages.
      while (this.maybeSendAppend(m.from, false)) {}
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from);
  }

  private handleHeartbeatResponse(m: Message, pr: Progress): void {
    pr.recentActive = true;
    pr.msgAppFlowPaused = false;
    // Lagging (or probed, e.g. after reportUnreachable): this reply proves it is reachable.
    if (pr.match < this.log.lastIndex() || pr.state === "probe") this.sendAppend(m.from);
    if (!m.context || m.context.length === 0) return;
    const acks = this.readOnly.recvAck(m.from, m.context);
    if (!acks) return;
    let granted = 0;
    for (const id of acks) if (this.trk.voters.has(id)) granted++;
    if (granted < Math.floor(this.trk.voters.size / 2) + 1) return;
    for (const rs of this.readOnly.advance(m.context)) this.answerRead(rs.from, rs.context, rs.index);
  }

  private serveReadIndex(m: Message): void {
    if (this.trk.voters.size === 1 && this.trk.voters.has(this.id)) {
      // Nobody else can be leader and our commit index is current: no round needed.
      this.answerRead(m.from, m.context ?? new Uint8Array(0), this.log.committed);
      return;
    }
    this.startReadIndexRound(m);
  }

  private startReadIndexRound(m: Message): void {
    const context = m.context ?? new Uint8Array(0);
    this.readOnly.addRequest(this.log.committed, m.from, context);
    this.readOnly.recvAck(this.id, context);
    // The heartbeat round waits for the next Ready: it carries the newest request's
    // context, and a quorum acking it confirms every request queued before it.
    this.readRoundPending = true;
  }

  private answerRead(from: NodeId, context: Uint8Array, index: number): void {
    if (from === NONE || from === this.id) {
      this.readStates.push({ index, requestCtx: context });
      return;
    }
    const resp = newMessage(MessageType.MsgReadIndexResp, from, this.id, 0);
    resp.index = index;
    resp.context = context;
    this.send(resp);
  }

  private committedEntryInCurrentTerm(): boolean {
    return this.log.zeroTermOnOutOfBounds(this.log.committed) === this.term;
  }

  private releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0 || !this.committedEntryInCurrentTerm()) return;
    const pending = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (const m of pending) this.serveReadIndex(m);
  }

  private stepCandidate(m: Message): void {
    const myVoteResp =
      this.state === StateRole.PreCandidate ? MessageType.MsgPreVoteResp : MessageType.MsgVoteResp;
    switch (m.type) {
      case MessageType.MsgProp:
        throw new ProposalDroppedError("no leader");
      case MessageType.MsgReadIndex:
        throw new ProposalDroppedError("no leader");
      case MessageType.MsgApp:
        // A leader of our term exists.
        this.becomeFollower(m.term, m.from);
        this.handleAppendEntries(m);
        return;
      case MessageType.MsgHeartbeat:
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case MessageType.MsgSnap:
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      case myVoteResp: {
        this.trk.recordVote(m.from, !m.reject);
        const { result } = this.trk.tallyVotes();
        if (result === VoteResult.Won) {
          if (this.state === StateRole.PreCandidate) {
            this.campaign("election");
          } else {
            this.becomeLeader();
            this.bcastAppend();
          }
        } else if (result === VoteResult.Lost) {
          // A pre-candidate keeps its term; a candidate keeps the term it campaigned in.
          this.becomeFollower(this.term, NONE);
        }
        return;
      }
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.MsgProp: {
        if (this.lead === NONE) throw new ProposalDroppedError("no leader");
        const fwd = newMessage(MessageType.MsgProp, this.lead, this.id, 0);
        fwd.entries = m.entries;
        this.send(fwd);
        return;
      }
      case MessageType.MsgApp:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppendEntries(m);
        return;
      case MessageType.MsgHeartbeat:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return;
      case MessageType.MsgSnap:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return;
      case MessageType.MsgTransferLeader: {
        if (this.lead === NONE) return;
        // The leader reads the transferee from `from`: keep it.
        this.send(newMessage(MessageType.MsgTransferLeader, this.lead, m.from, 0));
        return;
      }
      case MessageType.MsgTimeoutNow:
        // The leader chose us and we are up to date: campaign at once, without pre-vote
        // (there is no partition to detect) and past any leader lease.
        this.hup("transfer");
        return;
      case MessageType.MsgReadIndex: {
        if (this.lead === NONE) throw new ProposalDroppedError("no leader");
        // Keep the requester: if the leader moved and this is forwarded again, the answer
        // still goes straight to the node that asked.
        const fwd = newMessage(MessageType.MsgReadIndex, this.lead, m.from, 0);
        fwd.context = m.context;
        this.send(fwd);
        return;
      }
      case MessageType.MsgReadIndexResp:
        this.readStates.push({ index: m.index, requestCtx: m.context ?? new Uint8Array(0) });
        return;
    }
  }

  private handleAppendEntries(m: Message): void {
    if (m.index < this.log.committed) {
      // Everything up to our commit index is already known to match the leader's log.
      const resp = newMessage(MessageType.MsgAppResp, m.from, this.id, 0);
      resp.index = this.log.committed;
      this.send(resp);
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      const resp = newMessage(MessageType.MsgAppResp, m.from, this.id, 0);
      resp.index = lastNew;
      this.send(resp);
      return;
    }
    // Our log lacks (m.index, m.logTerm). Hint the leader to the last index at or below
    // min(m.index, our last) whose term is <= m.logTerm: entries above it cannot match.
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    const resp = newMessage(MessageType.MsgAppResp, m.from, this.id, 0);
    resp.index = m.index;
    resp.reject = true;
    resp.rejectHint = hint.index;
    resp.logTerm = hint.term;
    this.send(resp);
  }

  private handleHeartbeat(m: Message): void {
    this.log.commitTo(m.commit);
    const resp = newMessage(MessageType.MsgHeartbeatResp, m.from, this.id, 0);
    if (m.context) resp.context = m.context;
    this.send(resp);
  }

  private handleSnapshot(m: Message): void {
    const snap = m.snapshot;
    if (!snap) throw new RaftError("MsgSnap without a snapshot");
    const resp = newMessage(MessageType.MsgAppResp, m.from, this.id, 0);
    resp.index = this.restore(snap) ? this.log.lastIndex() : this.log.committed;
    this.send(resp);
  }

  /** Installs a leader's snapshot unless the log already covers it. */
  private restore(s: Snapshot): boolean {
    if (s.metadata.index <= this.log.committed) return false;
    if (this.state !== StateRole.Follower) {
      // Defensive, as in etcd-io/raft: only followers get snapshots from a leader.
      this.becomeFollower(this.term + 1, NONE);
      return false;
    }
    if (this.log.matchTerm(s.metadata.index, s.metadata.term)) {
      // We hold the snapshot's last entry, hence (log matching) everything before it.
      this.log.commitTo(s.metadata.index);
      return false;
    }
    this.log.restore(s);
    this.restoreConfState(s.metadata.confState);
    return true;
  }

  // --- membership ----------------------------------------------------------------------

  private restoreConfState(cs: ConfState): void {
    this.trk.voters.clear();
    this.trk.learners.clear();
    this.trk.progress.clear();
    const next = this.log.lastIndex() + 1;
    for (const id of cs.voters) {
      this.trk.voters.add(id);
      this.trk.progress.set(id, new Progress(next, this.trk.maxInflight, false));
    }
    for (const id of cs.learners) {
      if (this.trk.voters.has(id)) throw new RaftError(`${id} is in voters and learners`);
      this.trk.learners.add(id);
      this.trk.progress.set(id, new Progress(next, this.trk.maxInflight, true));
    }
    this.isLearner = this.trk.learners.has(this.id);
  }

  private addProgress(id: NodeId, isLearner: boolean): void {
    const pr = new Progress(this.log.lastIndex() + 1, this.trk.maxInflight, isLearner);
    // Counts as active so that check-quorum does not step down at once, and so that a
    // snapshot may be sent to it straight away.
    pr.recentActive = true;
    this.trk.progress.set(id, pr);
  }

  applyConfChange(cc: ConfChange): ConfState {
    const { voters, learners, progress } = this.trk;
    switch (cc.type) {
      case ConfChangeType.AddNode:
        if (voters.has(cc.nodeId)) break;
        if (learners.has(cc.nodeId)) {
          learners.delete(cc.nodeId);
          const pr = progress.get(cc.nodeId);
          if (pr) pr.isLearner = false;
        } else {
          this.addProgress(cc.nodeId, false);
        }
        voters.add(cc.nodeId);
        break;
      case ConfChangeType.AddLearnerNode:
        if (learners.has(cc.nodeId)) break;
        if (voters.has(cc.nodeId)) {
          if (voters.size === 1) throw new RaftError(`demoting ${cc.nodeId} would leave no voters`);
          voters.delete(cc.nodeId);
          const pr = progress.get(cc.nodeId);
          if (pr) pr.isLearner = true;
        } else {
          this.addProgress(cc.nodeId, true);
        }
        learners.add(cc.nodeId);
        break;
      case ConfChangeType.RemoveNode:
        if (voters.has(cc.nodeId) && voters.size === 1) {
          throw new RaftError(`removing ${cc.nodeId} would leave no voters`);
        }
        voters.delete(cc.nodeId);
        learners.delete(cc.nodeId);
        progress.delete(cc.nodeId);
        break;
      default:
        throw new RaftError(`unknown conf change type ${cc.type}`);
    }
    this.isLearner = learners.has(this.id);
    const cs = this.trk.confState();

    if (this.state !== StateRole.Leader) return cs;
    if (!progress.has(this.id) || this.isLearner) {
      this.stepDownAfterRemoval();
      return cs;
    }
    // The quorum may have shrunk (commit may advance) or a new peer needs the log.
    if (this.maybeCommit()) this.onCommitAdvanced();
    for (const id of progress.keys()) if (id !== this.id) this.maybeSendAppend(id, false);
    if (this.leadTransferee !== NONE && !voters.has(this.leadTransferee)) this.abortLeaderTransfer();
    return cs;
  }

  /**
   * A leader that applied its own removal (or demotion) hands leadership over by a transfer
   * to the remaining voter with the longest log: it keeps leading (refusing proposals) until
   * that voter holds its whole log, then tells it to campaign, and steps down when the
   * transferee's higher term reaches it. Stepping down at once can strand the cluster: the
   * remaining voters may not know yet that the removal committed, so they may still need
   * this node's vote, which it refuses to a candidate whose log is shorter than its own
   * (entries it appended after the removal), and as a non-voter it never campaigns.
   */
  private stepDownAfterRemoval(): void {
    let best: NodeId = NONE;
    let bestMatch = -1;
    for (const id of this.trk.voters) {
      const pr = this.trk.progress.get(id);
      if (id !== this.id && pr && pr.match > bestMatch) {
        best = id;
        bestMatch = pr.match;
      }
    }
    if (best === NONE) {
      this.becomeFollower(this.term, NONE);
      return;
    }
    this.electionElapsed = 0;
    this.leadTransferee = best;
    if (bestMatch === this.log.lastIndex()) this.sendTimeoutNow(best);
    else this.sendAppend(best);
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send(newMessage(MessageType.MsgTimeoutNow, to, this.id, 0));
  }

  abortLeaderTransfer(): void {
    this.leadTransferee = NONE;
  }

  // --- log bookkeeping -----------------------------------------------------------------

  /** Appends as the leader; false if the uncommitted-size budget refuses the entries. */
  private appendEntries(ents: Entry[]): boolean {
    const size = entriesPayloadSize(ents);
    // An empty budget accepts any single batch so that one large entry can still pass.
    if (
      this.maxUncommittedSize > 0 &&
      this.uncommittedSize > 0 &&
      size + this.uncommittedSize > this.maxUncommittedSize
    ) {
      return false;
    }
    this.uncommittedSize += size;
    let index = this.log.lastIndex();
    for (let i = 0; i < ents.length; i++) {
      ents[i].term = this.term;
      ents[i].index = ++index;
    }
    this.log.append(ents);
    return true;
  }

  reduceUncommittedSize(size: number): void {
    this.uncommittedSize = size > this.uncommittedSize ? 0 : this.uncommittedSize - size;
  }

  maybeCommit(): boolean {
    return this.log.maybeCommit(this.trk.committed(), this.term);
  }

  /**
   * The application has persisted the log up to (index, term). For a leader this is its
   * own acknowledgement, which may commit entries.
   */
  onPersisted(index: number, term: number): void {
    this.log.stableTo(index, term);
    if (this.state !== StateRole.Leader || !this.log.matchTerm(index, term)) return;
    const self = this.trk.progress.get(this.id);
    if (self?.maybeUpdate(index) && this.maybeCommit()) this.onCommitAdvanced();
  }

  /**
   * Followers learn the new commit index at the next Ready, in the same MsgApp as the
   * entries proposed meanwhile when there are any: one message instead of two.
   */
  private onCommitAdvanced(): void {
    this.releasePendingReadIndexMessages();
    this.commitPending = true;
  }
}
