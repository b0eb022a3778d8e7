// Proves the checker bites: each invariant is broken by a small synthetic history and must be
// reported with a message that names what went wrong; legal histories that look similar pass.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Entry, EntryType, StateRole } from "../types.js";
import {
  checkLeaderElected,
  checkQuietProposalsCommitted,
  checkQuietReadsAnswered,
  InvariantViolation,
  type LogView,
  SafetyChecker,
} from "./checker.js";

const enc = new TextEncoder();

function entry(index: number, term: number, text = "", type = EntryType.Normal): Entry {
  return { index, term, type, data: enc.encode(text) };
}

function logOf(terms: number[], snapshotIndex = 0): LogView {
  // terms[i] is the term at index snapshotIndex + 1 + i
  return {
    snapshotIndex,
    lastIndex: snapshotIndex + terms.length,
    termAt: (i) => terms[i - snapshotIndex - 1],
  };
}

function violates(fn: () => void, invariant: string, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvariantViolation, `expected an InvariantViolation, got ${String(err)}`);
    assert.equal(err.invariant, invariant);
    assert.match(err.message, message);
    return true;
  });
}

/** Applies `entries` in order on `node`, proposing their data first as a client would. */
function applyAll(c: SafetyChecker, node: bigint, entries: Entry[], digestOf = (i: number) => `d${i}`): void {
  for (const e of entries) {
    if (e.data.length > 0) c.observeProposal(e.data);
    c.observeApply(node, e, digestOf(e.index));
  }
}

describe("election safety", () => {
  it("reports two leaders in one term", () => {
    const c = new SafetyChecker();
    c.observeRole(1n, 3, StateRole.Leader);
    c.observeRole(2n, 3, StateRole.Follower);
    violates(
      () => c.observeRole(2n, 3, StateRole.Leader),
      "election safety",
      /term 3 has two leaders: node 1 and node 2/,
    );
  });

  it("accepts one leader per term, the same node leading again, and candidates", () => {
    const c = new SafetyChecker();
    c.observeRole(1n, 3, StateRole.Leader);
    c.observeRole(1n, 3, StateRole.Leader);
    c.observeRole(2n, 4, StateRole.Candidate);
    c.observeRole(3n, 4, StateRole.Candidate);
    c.observeRole(2n, 4, StateRole.Leader);
    c.observeRole(1n, 5, StateRole.Leader);
    assert.equal(c.leaderOf(4), 2n);
  });
});

describe("log matching", () => {
  it("reports two different entries at the same index and term", () => {
    const c = new SafetyChecker();
    c.observePersistedEntry(1n, entry(1, 1, "a"), 0);
    c.observePersistedEntry(1n, entry(2, 1, "b"), 1);
    c.observePersistedEntry(2n, entry(1, 1, "a"), 0);
    violates(
      () => c.observePersistedEntry(2n, entry(2, 1, "x"), 1),
      "log matching",
      /diverge at index 2 term 1: node 1 holds 2@t1 normal "b", node 2 holds 2@t1 normal "x"/,
    );
  });

  it("reports a shared entry whose predecessors differ", () => {
    const c = new SafetyChecker();
    c.observePersistedEntry(1n, entry(3, 4, "c"), 2);
    violates(
      () => c.observePersistedEntry(2n, entry(3, 4, "c"), 3),
      "log matching",
      /share entry 3@t4 but diverge before it: the entry at index 2 has term 2 on node 1 and term 3 on node 2/,
    );
  });

  it("reports terms going down along a log", () => {
    const c = new SafetyChecker();
    violates(() => c.observePersistedEntry(1n, entry(5, 2, "e"), 3), "log matching", /later term 3/);
  });

  it("accepts a follower overwriting an uncommitted suffix with a later leader's entries", () => {
    const c = new SafetyChecker();
    c.observePersistedEntry(1n, entry(1, 1, "a"), 0);
    c.observePersistedEntry(1n, entry(2, 1, "old"), 1);
    c.observePersistedEntry(2n, entry(1, 1, "a"), 0);
    c.observePersistedEntry(2n, entry(2, 2, "new"), 1);
    c.observePersistedEntry(1n, entry(2, 2, "new"), 1);
  });
});

describe("leader completeness", () => {
  /** `entries` become committed in `term` (a leader of `term` advanced its commit index). */
  function commitIn(c: SafetyChecker, term: number, entries: Entry[]): void {
    c.observeLiveCommit(1n, entries[entries.length - 1].index, term);
    applyAll(c, 1n, entries);
  }

  it("reports a leader whose log lacks an entry committed in an earlier term", () => {
    const c = new SafetyChecker();
    commitIn(c, 2, [entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 2, "c")]);
    // node 3 leads term 3 with a log that stops at index 2
    violates(
      () => c.checkLeaderCompleteness(3n, 3, logOf([1, 1])),
      "leader completeness",
      /node 3 leads term 3 but its log ends at index 2, missing entry 3@t2 normal "c" committed in term 2/,
    );
  });

  it("reports a leader holding a different term at a committed index", () => {
    const c = new SafetyChecker();
    commitIn(c, 1, [entry(1, 1, "a"), entry(2, 1, "b")]);
    violates(
      () => c.checkLeaderCompleteness(2n, 4, logOf([1, 3, 4])),
      "leader completeness",
      /has term 3 at index 2, missing entry 2@t1/,
    );
  });

  it("checks entries committed after the leader was first checked", () => {
    const c = new SafetyChecker();
    commitIn(c, 2, [entry(1, 1, "a")]);
    c.checkLeaderCompleteness(2n, 3, logOf([1]));
    commitIn(c, 2, [entry(2, 2, "b")]);
    violates(() => c.checkLeaderCompleteness(2n, 3, logOf([1])), "leader completeness", /2@t2/);
  });

  it("accepts entries folded into the leader's snapshot and entries committed in its own term", () => {
    const c = new SafetyChecker();
    commitIn(c, 1, [entry(1, 1, "a"), entry(2, 1, "b")]);
    commitIn(c, 3, [entry(3, 3, "c")]);
    c.checkLeaderCompleteness(2n, 3, logOf([1], 1));
  });

  it("goes by the term an entry was committed in, not the entry's own term", () => {
    // Entry 2 of term 1 is committed only in term 3, by the leader of term 3. The leader of
    // term 2, elected before with a different entry 2, broke nothing; a leader of term 4 would.
    const c = new SafetyChecker();
    commitIn(c, 1, [entry(1, 1, "a")]);
    commitIn(c, 3, [entry(2, 1, "b"), entry(3, 3)]);
    c.checkLeaderCompleteness(5n, 2, logOf([1, 2]));
    violates(
      () => c.checkLeaderCompleteness(5n, 4, logOf([1, 2])),
      "leader completeness",
      /committed in term 3/,
    );
  });
});

describe("state machine safety", () => {
  it("reports two nodes applying different entries at one index", () => {
    const c = new SafetyChecker();
    applyAll(c, 1n, [entry(1, 1, "a"), entry(2, 1, "b")]);
    applyAll(c, 2n, [entry(1, 1, "a")]);
    c.observeProposal(enc.encode("z"));
    violates(
      () => c.observeApply(2n, entry(2, 2, "z"), "d2"),
      "state machine safety",
      /at index 2 node 1 applied 2@t1 normal "b" but node 2 applied 2@t2 normal "z"/,
    );
  });

  it("catches a node that applied an entry it had lost in a crash, against one applied before", () => {
    const c = new SafetyChecker();
    applyAll(c, 1n, [entry(1, 1, "a"), entry(2, 1, "b")]);
    c.observeCrash(1n);
    c.observeRestore(1n, 0, "d0");
    applyAll(c, 1n, [entry(1, 1, "a")]);
    c.observeProposal(enc.encode("y"));
    violates(() => c.observeApply(1n, entry(2, 3, "y"), "d2"), "state machine safety", /at index 2/);
  });

  it("reports a snapshot image that differs from the state reached by applying entries", () => {
    const c = new SafetyChecker();
    applyAll(c, 1n, [entry(1, 1, "a"), entry(2, 1, "b")]);
    violates(
      () => c.observeRestore(2n, 2, "other"),
      "state machine safety",
      /restored a snapshot at index 2/,
    );
  });

  it("reports two snapshot images at one index", () => {
    const c = new SafetyChecker();
    c.observeRestore(1n, 7, "x");
    violates(() => c.observeRestore(2n, 7, "y"), "state machine safety", /nodes 1 and 2 restored different/);
  });

  it("reports entries applied on top of a snapshot that lead to a different state", () => {
    const c = new SafetyChecker();
    applyAll(c, 1n, [entry(1, 1, "a"), entry(2, 1, "b")]);
    c.observeRestore(2n, 2, "d2");
    c.observeProposal(enc.encode("c"));
    c.observeApply(2n, entry(3, 1, "c"), "d3");
    violates(
      () => c.observeApply(1n, entry(3, 1, "c"), "not-d3"),
      "state machine safety",
      /state of node 1 differs/,
    );
  });
});

describe("applied once and no forged entries", () => {
  it("reports an index applied twice by one node", () => {
    const c = new SafetyChecker();
    applyAll(c, 1n, [entry(1, 1, "a"), entry(2, 1, "b")]);
    violates(
      () => c.observeApply(1n, entry(2, 1, "b"), "d2"),
      "applied once",
      /node 1 applied index 2 again/,
    );
  });

  it("reports a snapshot that rolls a running state machine back", () => {
    const c = new SafetyChecker();
    applyAll(c, 1n, [entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 1, "c")]);
    violates(
      () => c.observeRestore(1n, 2, "d2"),
      "applied once",
      /snapshot at index 2 over a state machine already at 3/,
    );
    c.observeCrash(1n);
    c.observeRestore(1n, 2, "d2"); // after a crash the state machine is rebuilt from older state
  });

  it("reports a gap in what a node applies", () => {
    const c = new SafetyChecker();
    applyAll(c, 1n, [entry(1, 1, "a")]);
    c.observeProposal(enc.encode("c"));
    violates(
      () => c.observeApply(1n, entry(3, 1, "c"), "d3"),
      "applied once",
      /skipped from applied index 1 to 3/,
    );
  });

  it("reports one proposal committed at two indexes", () => {
    const c = new SafetyChecker();
    applyAll(c, 1n, [entry(1, 1, "p1")]);
    violates(
      () => c.observeApply(1n, entry(2, 1, "p1"), "d2"),
      "applied once",
      /"p1" was committed twice, at index 1 and 2/,
    );
  });

  it("reports an applied entry that nobody proposed", () => {
    const c = new SafetyChecker();
    violates(
      () => c.observeApply(1n, entry(1, 1, "forged"), "d1"),
      "no forged entry",
      /"forged", which nobody proposed/,
    );
  });

  it("lets a leader's empty entries through without a proposal", () => {
    const c = new SafetyChecker();
    c.observeApply(1n, entry(1, 2), "d1");
    assert.equal(c.highestApplied, 1);
  });
});

describe("monotonic commit", () => {
  it("reports a running node's commit index going back", () => {
    const c = new SafetyChecker();
    c.observeLiveCommit(1n, 5, 2);
    violates(
      () => c.observeLiveCommit(1n, 4, 2),
      "monotonic commit",
      /node 1's commit index went back from 5 to 4/,
    );
  });

  it("lets the in-memory commit restart lower after a crash, but never the durable one", () => {
    const c = new SafetyChecker();
    c.observeLiveCommit(1n, 9, 2);
    c.observeDurableCommit(1n, 6);
    c.observeCrash(1n);
    c.observeLiveCommit(1n, 6, 3);
    violates(
      () => c.observeDurableCommit(1n, 5),
      "monotonic commit",
      /persisted commit index 5 after having persisted 6/,
    );
  });
});

describe("durability", () => {
  it("reports a Ready that must be synced but does not say so", () => {
    const c = new SafetyChecker();
    c.observeReadySync(1n, { entries: 0, snapshot: false, termOrVoteChanged: false, mustSync: false });
    c.observeReadySync(1n, { entries: 2, snapshot: false, termOrVoteChanged: false, mustSync: true });
    violates(
      () => c.observeReadySync(2n, { entries: 0, snapshot: false, termOrVoteChanged: true, mustSync: false }),
      "durability",
      /node 2's Ready carries a new term or vote to persist but does not ask for a sync/,
    );
    violates(
      () =>
        c.observeReadySync(3n, { entries: 1, snapshot: false, termOrVoteChanged: false, mustSync: false }),
      "durability",
      /carries 1 entry to persist/,
    );
  });
});

describe("linearizable reads", () => {
  it("reports a read index below what was committed when the read began", () => {
    const c = new SafetyChecker();
    c.observeReadStarted("r1", 12);
    c.observeReadAnswered(2n, "r1", 12);
    violates(
      () => c.observeReadAnswered(3n, "r1", 9),
      "linearizable read",
      /read r1 began when index 12 was already committed, but node 3 answered it with read index 9/,
    );
  });

  it("reports an answer to a read nobody issued", () => {
    const c = new SafetyChecker();
    violates(
      () => c.observeReadAnswered(1n, "r9", 3),
      "linearizable read",
      /answered read r9 that nobody issued/,
    );
  });
});

describe("liveness", () => {
  it("reports no leader once the bound is reached", () => {
    checkLeaderElected(undefined, 99, 100);
    checkLeaderElected(2n, 100, 100);
    violates(() => checkLeaderElected(undefined, 100, 100), "liveness", /no leader 100 ticks after/);
  });

  it("reports an accepted quiet-phase proposal that never committed", () => {
    checkQuietProposalsCommitted([{ label: "q1", committedAt: 4 }], 50);
    violates(
      () =>
        checkQuietProposalsCommitted(
          [
            { label: "q1", committedAt: 4 },
            { label: "q2", committedAt: 0 },
          ],
          50,
        ),
      "liveness",
      /1 proposal\(s\) accepted in the quiet phase were not committed 50 ticks later: q2/,
    );
  });

  it("reports a quiet-phase read that was never answered", () => {
    checkQuietReadsAnswered([{ label: "r1", answered: true }], 20);
    violates(
      () =>
        checkQuietReadsAnswered(
          [
            { label: "r1", answered: true },
            { label: "r2", answered: false },
          ],
          20,
        ),
      "liveness",
      /read\(s\) issued in the quiet phase unanswered 20 ticks later: r2/,
    );
  });
});
