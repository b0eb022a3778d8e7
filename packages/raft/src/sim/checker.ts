// The safety checker: pure bookkeeping over what the simulator observes, with no knowledge
// of how the nodes are driven. Each observe/check method throws an InvariantViolation the
// moment the history it has seen breaks a Raft property, so the simulator stops at the first
// bad step and its trace ends exactly there.
//
// The checks are incremental (each new fact is compared against a summary of the history)
// because they run after every step of thousands of schedules; the summaries are chosen so
// that the incremental check is as strong as re-checking the whole history.

import { type Entry, EntryType, type NodeId, StateRole } from "../types.js";

export type Invariant =
  | "election safety"
  | "log matching"
  | "leader completeness"
  | "state machine safety"
  | "applied once"
  | "no forged entry"
  | "monotonic commit"
  | "linearizable read"
  | "durability"
  | "liveness";

export class InvariantViolation extends Error {
  constructor(
    readonly invariant: Invariant,
    detail: string,
  ) {
    super(`${invariant} violated: ${detail}`);
    this.name = "InvariantViolation";
  }
}

/** The part of a node's log the checker needs: what it holds past its snapshot. */
export interface LogView {
  /** Entries up to and including this index are folded into the snapshot. */
  snapshotIndex: number;
  lastIndex: number;
  /** Term of the entry at `index`, for snapshotIndex < index <= lastIndex. */
  termAt(index: number): number;
}

/** Identity of an entry's content: two entries are "the same" iff their fingerprints match. */
export function fingerprint(e: Pick<Entry, "term" | "type" | "data">): string {
  return `${e.term}|${e.type}|${dataKey(e.data)}`;
}

export function dataKey(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("latin1");
}

function describeData(data: Uint8Array): string {
  if (data.length === 0) return "<empty>";
  const s = dataKey(data);
  return /^[\x20-\x7e]*$/.test(s) ? JSON.stringify(s) : `<${data.length} bytes>`;
}

export function describeEntry(e: Pick<Entry, "term" | "index" | "type" | "data">): string {
  const kind = e.type === EntryType.ConfChange ? "confchange" : "normal";
  return `${e.index}@t${e.term} ${kind} ${describeData(e.data)}`;
}

interface PersistedEntry {
  fingerprint: string;
  prevTerm: number;
  node: NodeId;
  description: string;
}

interface CommittedEntry {
  term: number;
  fingerprint: string;
  description: string;
  /** The state machine's digest once this entry is applied. */
  digest: string;
  node: NodeId;
}

export class SafetyChecker {
  /** term -> the one node seen leading it. */
  private readonly leaders = new Map<number, NodeId>();
  /** "index/term" -> the entry first seen there, and the term of the entry before it. */
  private readonly persisted = new Map<string, PersistedEntry>();
  /** index -> the entry first applied there by any node (a prefix of the log, possibly sparse). */
  private readonly committed: (CommittedEntry | undefined)[] = [];
  /** index -> digest of a state machine image whose entries were never applied one by one. */
  private readonly restoredDigests = new Map<number, { digest: string; node: NodeId }>();
  private readonly applied = new Map<NodeId, number>();
  private readonly liveCommit = new Map<NodeId, number>();
  /**
   * index -> the term in which it became committed (an upper bound: the term of the first node
   * seen with a commit index covering it, which is the deciding leader's, or a later one).
   */
  private readonly commitTerms: number[] = [0];
  private readonly durableCommit = new Map<NodeId, number>();
  /** A leader's log was checked against committed[1..upTo] for this term. */
  private readonly completenessChecked = new Map<NodeId, { term: number; upTo: number }>();
  /** Proposal content -> index it was applied at, or 0 when not applied yet. */
  private readonly proposals = new Map<string, number>();
  private readonly reads = new Map<string, number>();

  /** The highest index any node has been seen applying (a lower bound on what is committed). */
  get highestApplied(): number {
    return this.committed.length - 1;
  }

  // --- election safety -------------------------------------------------------------------

  /** Called for every node whenever its role or term may have changed. */
  observeRole(node: NodeId, term: number, role: StateRole): void {
    if (role !== StateRole.Leader) return;
    const known = this.leaders.get(term);
    if (known === undefined) {
      this.leaders.set(term, node);
    } else if (known !== node) {
      throw new InvariantViolation(
        "election safety",
        `term ${term} has two leaders: node ${known} and node ${node}`,
      );
    }
  }

  leaderOf(term: number): NodeId | undefined {
    return this.leaders.get(term);
  }

  // --- log matching ----------------------------------------------------------------------

  /**
   * Called for every entry a node persists, with the term of the entry just before it in that
   * node's log. Two logs that share an entry (index, term) must agree on its content and on the
   * term of its predecessor; by induction from index 1 that is exactly "logs agree on every
   * entry up to any (index, term) they share", checked in O(1) per entry.
   */
  observePersistedEntry(node: NodeId, entry: Entry, prevTerm: number): void {
    const key = `${entry.index}/${entry.term}`;
    const fp = fingerprint(entry);
    const known = this.persisted.get(key);
    if (known === undefined) {
      if (prevTerm > entry.term) {
        throw new InvariantViolation(
          "log matching",
          `node ${node} persisted ${describeEntry(entry)} after an entry of a later term ${prevTerm}`,
        );
      }
      this.persisted.set(key, { fingerprint: fp, prevTerm, node, description: describeEntry(entry) });
      return;
    }
    if (known.fingerprint !== fp) {
      throw new InvariantViolation(
        "log matching",
        `logs diverge at index ${entry.index} term ${entry.term}: node ${known.node} holds ` +
          `${known.description}, node ${node} holds ${describeEntry(entry)}`,
      );
    }
    if (known.prevTerm !== prevTerm) {
      throw new InvariantViolation(
        "log matching",
        `logs share entry ${entry.index}@t${entry.term} but diverge before it: the entry at ` +
          `index ${entry.index - 1} has term ${known.prevTerm} on node ${known.node} and term ` +
          `${prevTerm} on node ${node}`,
      );
    }
  }

  // --- state machine safety, applied once, no forged entries -----------------------------

  /** A proposal as the client submitted it; only these may ever be applied. */
  observeProposal(data: Uint8Array): void {
    const key = dataKey(data);
    if (!this.proposals.has(key)) this.proposals.set(key, 0);
  }

  /**
   * A node's state machine was (re)built from a snapshot image at `index` (at start, restart or
   * snapshot install). Its next applied entry must be index + 1.
   */
  observeRestore(node: NodeId, index: number, digest: string): void {
    const before = this.applied.get(node);
    if (before !== undefined && index < before) {
      throw new InvariantViolation(
        "applied once",
        `node ${node} installed a snapshot at index ${index} over a state machine already at ${before}: ` +
          `entries ${index + 1}..${before} would be applied twice`,
      );
    }
    this.applied.set(node, index);
    if (index === 0) return;
    const known = this.committed[index];
    if (known !== undefined) {
      if (known.digest !== digest) {
        throw new InvariantViolation(
          "state machine safety",
          `node ${node} restored a snapshot at index ${index} whose state differs from the ` +
            `state node ${known.node} reached by applying up to ${known.description}`,
        );
      }
      return;
    }
    const image = this.restoredDigests.get(index);
    if (image === undefined) this.restoredDigests.set(index, { digest, node });
    else if (image.digest !== digest) {
      throw new InvariantViolation(
        "state machine safety",
        `nodes ${image.node} and ${node} restored different snapshot images at index ${index}`,
      );
    }
  }

  /** A node applied a committed entry; `digest` is its state machine's digest afterwards. */
  observeApply(node: NodeId, entry: Entry, digest: string): void {
    const last = this.applied.get(node) ?? 0;
    if (entry.index !== last + 1) {
      throw new InvariantViolation(
        "applied once",
        entry.index <= last
          ? `node ${node} applied index ${entry.index} again (it had applied up to ${last})`
          : `node ${node} skipped from applied index ${last} to ${entry.index}`,
      );
    }
    this.applied.set(node, entry.index);

    const fp = fingerprint(entry);
    const known = this.committed[entry.index];
    if (known !== undefined) {
      if (known.fingerprint !== fp) {
        throw new InvariantViolation(
          "state machine safety",
          `at index ${entry.index} node ${known.node} applied ${known.description} but node ${node} ` +
            `applied ${describeEntry(entry)}`,
        );
      }
      if (known.digest !== digest) {
        throw new InvariantViolation(
          "state machine safety",
          `after applying index ${entry.index} the state of node ${node} differs from node ${known.node}'s`,
        );
      }
      return;
    }

    const image = this.restoredDigests.get(entry.index);
    if (image !== undefined && image.digest !== digest) {
      throw new InvariantViolation(
        "state machine safety",
        `node ${node} reached index ${entry.index} in a state that differs from the snapshot image ` +
          `node ${image.node} restored there`,
      );
    }
    if (entry.data.length > 0) {
      const key = dataKey(entry.data);
      const appliedAt = this.proposals.get(key);
      if (appliedAt === undefined) {
        throw new InvariantViolation(
          "no forged entry",
          `node ${node} applied ${describeEntry(entry)}, which nobody proposed`,
        );
      }
      if (appliedAt !== 0) {
        throw new InvariantViolation(
          "applied once",
          `proposal ${describeData(entry.data)} was committed twice, at index ${appliedAt} and ${entry.index}`,
        );
      }
      this.proposals.set(key, entry.index);
    }
    this.committed[entry.index] = {
      term: entry.term,
      fingerprint: fp,
      description: describeEntry(entry),
      digest,
      node,
    };
  }

  /** Index a proposal was committed at (0 when it is not, as far as any node applied). */
  committedIndexOf(data: Uint8Array): number {
    return this.proposals.get(dataKey(data)) ?? 0;
  }

  // --- leader completeness ---------------------------------------------------------------

  /**
   * A node that is leader in `term` must hold every entry committed in an earlier term. That is
   * the term in which the entry became committed, not the entry's own term: an entry of term 10
   * that a term-12 leader commits need not be in the log of a term-11 leader elected before.
   * Call it with the leader's durable log, once that log holds everything the node has (after a
   * Ready is persisted). A leader's log below its commit point never changes, so each committed
   * entry is checked once per leadership term.
   */
  checkLeaderCompleteness(node: NodeId, term: number, log: LogView): void {
    let checked = this.completenessChecked.get(node);
    if (checked === undefined || checked.term !== term) {
      checked = { term, upTo: 0 };
      this.completenessChecked.set(node, checked);
    }
    const upTo = Math.min(this.committed.length, this.commitTerms.length) - 1;
    for (let i = checked.upTo + 1; i <= upTo; i++) {
      const c = this.committed[i];
      const committedInTerm = this.commitTerms[i];
      if (c === undefined || committedInTerm >= term || i <= log.snapshotIndex) continue;
      const have = i <= log.lastIndex ? log.termAt(i) : undefined;
      if (have !== c.term) {
        throw new InvariantViolation(
          "leader completeness",
          `node ${node} leads term ${term} but its log ${
            have === undefined ? `ends at index ${log.lastIndex}` : `has term ${have} at index ${i}`
          }, missing entry ${c.description} committed in term ${committedInTerm}`,
        );
      }
    }
    checked.upTo = upTo;
  }

  // --- monotonic commit ------------------------------------------------------------------

  /** The commit index a running node in `term` reports; it may only grow until the node crashes. */
  observeLiveCommit(node: NodeId, commit: number, term: number): void {
    const before = this.liveCommit.get(node) ?? 0;
    if (commit < before) {
      throw new InvariantViolation(
        "monotonic commit",
        `node ${node}'s commit index went back from ${before} to ${commit} while it was up`,
      );
    }
    this.liveCommit.set(node, commit);
    for (let i = this.commitTerms.length; i <= commit; i++) this.commitTerms.push(term);
  }

  /** The commit index in a hard state a node persisted; it may never go back, crashes or not. */
  observeDurableCommit(node: NodeId, commit: number): void {
    const before = this.durableCommit.get(node) ?? 0;
    if (commit < before) {
      throw new InvariantViolation(
        "monotonic commit",
        `node ${node} persisted commit index ${commit} after having persisted ${before}`,
      );
    }
    this.durableCommit.set(node, commit);
  }

  /** The node lost its memory: its commit index and state machine may restart lower. */
  observeCrash(node: NodeId): void {
    this.liveCommit.delete(node);
    this.applied.delete(node);
    this.completenessChecked.delete(node);
  }

  // --- durability ------------------------------------------------------------------------

  /**
   * A Ready that carries entries, a snapshot, or a new term or vote must say mustSync: the
   * member fsyncs only then, and a vote or an acknowledged entry lost in a power failure lets
   * a node vote twice in a term or forget an entry a quorum counted on.
   */
  observeReadySync(
    node: NodeId,
    ready: { entries: number; snapshot: boolean; termOrVoteChanged: boolean; mustSync: boolean },
  ): void {
    const why = ready.snapshot
      ? "a snapshot"
      : ready.entries > 0
        ? `${ready.entries} ${ready.entries === 1 ? "entry" : "entries"}`
        : ready.termOrVoteChanged
          ? "a new term or vote"
          : undefined;
    if (why !== undefined && !ready.mustSync) {
      throw new InvariantViolation(
        "durability",
        `node ${node}'s Ready carries ${why} to persist but does not ask for a sync`,
      );
    }
  }

  // --- linearizable reads ----------------------------------------------------------------

  /**
   * A read was requested with `ctx` when `committedBound` was the highest index known to be
   * committed anywhere: the read must observe at least that much.
   */
  observeReadStarted(ctx: string, committedBound: number): void {
    this.reads.set(ctx, committedBound);
  }

  observeReadAnswered(node: NodeId, ctx: string, index: number): void {
    const bound = this.reads.get(ctx);
    if (bound === undefined) {
      throw new InvariantViolation(
        "linearizable read",
        `node ${node} answered read ${ctx} that nobody issued`,
      );
    }
    if (index < bound) {
      throw new InvariantViolation(
        "linearizable read",
        `read ${ctx} began when index ${bound} was already committed, but node ${node} answered it ` +
          `with read index ${index}: the read would miss committed writes`,
      );
    }
  }
}

// --- liveness ------------------------------------------------------------------------------

/** After faults stop, a leader must emerge within `boundTicks`. */
export function checkLeaderElected(
  leader: NodeId | undefined,
  ticksWaited: number,
  boundTicks: number,
): void {
  if (leader === undefined && ticksWaited >= boundTicks) {
    throw new InvariantViolation(
      "liveness",
      `no leader ${ticksWaited} ticks after the network healed and faults stopped (bound ${boundTicks})`,
    );
  }
}

export interface QuietProposal {
  label: string;
  /** Index it was committed at, 0 if never. */
  committedAt: number;
}

/**
 * Every proposal a leader accepted once the network was quiet must be committed within the
 * bound the simulator waited; anything refused must have been refused with an error.
 */
export function checkQuietProposalsCommitted(accepted: readonly QuietProposal[], ticksWaited: number): void {
  const lost = accepted.filter((p) => p.committedAt === 0);
  if (lost.length > 0) {
    const names = lost
      .slice(0, 5)
      .map((p) => p.label)
      .join(", ");
    throw new InvariantViolation(
      "liveness",
      `${lost.length} proposal(s) accepted in the quiet phase were not committed ${ticksWaited} ticks ` +
        `later: ${names}${lost.length > 5 ? ", ..." : ""}`,
    );
  }
}

/** Every ReadIndex request issued once the network was quiet must be answered within the bound. */
export function checkQuietReadsAnswered(
  reads: readonly { label: string; answered: boolean }[],
  ticksWaited: number,
): void {
  const unanswered = reads.filter((r) => !r.answered).map((r) => r.label);
  if (unanswered.length > 0) {
    throw new InvariantViolation(
      "liveness",
      `read(s) issued in the quiet phase unanswered ${ticksWaited} ticks later: ${unanswered.join(", ")}`,
    );
  }
}
