import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  bootstrapStorage,
  ConfChangeType,
  decodeConfChange,
  type Entry,
  EntryType,
  encodeConfChange,
  type MemoryStorage,
  type Message,
  MessageType,
} from "@etcd-ts/raft";
import { memberConfig, parseFlags } from "../config/flags.js";
import { Snapshotter, Wal } from "../wal/mod.js";
import { RaftLoop, type RaftLoopHost } from "./raft-loop.js";

const quiet = { info() {}, warn() {}, error() {} };

/** Polls `done` every 5 ms, at most `timeoutMs`. */
async function until(what: string, done: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A temp dir with the WAL and storage a founding member of `voters` starts from (the bootstrap saved). */
async function bootstrapped(voters: bigint[]): Promise<{ dir: string; storage: MemoryStorage; wal: Wal }> {
  const dir = await mkdtemp(join(tmpdir(), "raft-loop-"));
  const storage = bootstrapStorage(voters);
  const wal = await Wal.create(join(dir, "wal"), { logger: quiet });
  await wal.save(storage.initialState().hardState, storage.entries(1, storage.lastIndex() + 1, Infinity));
  return { dir, storage, wal };
}

/** A message with every field not given empty. */
function message(fields: Pick<Message, "type" | "to" | "from" | "term"> & Partial<Message>): Message {
  return { logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, ...fields };
}

/** Member 2's answer to what leader 1 sends it (votes, heartbeats, MsgApps), enough for a quorum of 3. */
function member2Reply(m: Message): Message | undefined {
  const reply = message({ type: MessageType.MsgAppResp, to: 1n, from: 2n, term: m.term });
  if (m.type === MessageType.MsgVote) reply.type = MessageType.MsgVoteResp;
  else if (m.type === MessageType.MsgPreVote) reply.type = MessageType.MsgPreVoteResp;
  else if (m.type === MessageType.MsgHeartbeat) reply.type = MessageType.MsgHeartbeatResp;
  else if (m.type === MessageType.MsgApp) reply.index = m.index + m.entries.length;
  else return undefined;
  return reply;
}

/** A host for a loop that installs no snapshot and ignores leadership, reads and ticks. */
function testHost(
  parts: Pick<RaftLoopHost, "send" | "appliedIndex" | "applyCommitted" | "fatal">,
): RaftLoopHost {
  return {
    ...parts,
    restoreStateMachine: async () => {
      throw new Error("no snapshot expected");
    },
    syncStateMachine: async () => {},
    prepareStateMachineSync: () => {},
    leadershipChanged: () => {},
    readState: () => {},
    ticked: () => {},
  };
}

describe("raft loop", () => {
  it("persists and commits the next entries while a batch is still being applied, applying in order", async () => {
    const { dir, storage, wal } = await bootstrapped([1n]);
    const config = memberConfig(parseFlags(["--heartbeat-interval", "10", "--election-timeout", "100"], {}));

    let applied = 0;
    let inFlight = 0;
    let maxInFlight = 0;
    const order: number[] = [];
    const started: Entry[] = [];
    let failure: unknown;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const loop: RaftLoop = new RaftLoop(
      config,
      { id: 1n, storage, wal, snapshotter: new Snapshotter(join(dir, "snap")), applied: 0 },
      testHost({
        send: () => {},
        appliedIndex: () => applied,
        async applyCommitted(entries) {
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          for (const e of entries) {
            if (e.type === EntryType.ConfChange) loop.applyConfChange(decodeConfChange(e.data), e.index);
            else if (e.data.length > 0) {
              started.push(e);
              // The first proposal's apply is held until the test lets it go.
              if (started.length === 1) await gate;
            }
            order.push(e.index);
            applied = e.index;
          }
          inFlight--;
        },
        fatal: (err) => {
          failure = err;
        },
      }),
      quiet,
    );
    try {
      loop.start();
      await until("leadership", () => loop.leaderId === 1n);
      loop.propose(Buffer.from("a"));
      await until("the first entry's apply", () => started.length === 1);
      const a = started[0]!.index;
      loop.propose(Buffer.from("b"));
      // Before apply was pipelined, the loop waited for a's apply and never persisted b.
      await until("b committed while a is being applied", () => loop.status().commit >= a + 1);
      assert.equal(applied, a - 1, "a's apply is still held, so nothing after it was applied");
      release();
      await until("b applied", () => applied >= a + 1);
      assert.deepEqual(
        order,
        Array.from({ length: order.length }, (_, i) => i + 1),
        "every index once, in order",
      );
      assert.equal(maxInFlight, 1, "one batch in flight at a time");
      assert.equal(failure, undefined);
    } finally {
      release();
      await loop.stop();
      await loop.closeWal();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("releases none of the log before the snapshot's state is durable", async () => {
    const { dir, storage, wal } = await bootstrapped([1n]);
    const config = memberConfig(
      parseFlags(
        [
          "--heartbeat-interval",
          "10",
          "--election-timeout",
          "100",
          "--snapshot-count",
          "5",
          "--experimental-snapshot-catchup-entries",
          "1",
        ],
        {},
      ),
    );
    let applied = 0;
    let failure: unknown;
    const syncs: { at: number; release: () => void }[] = [];
    const loop: RaftLoop = new RaftLoop(
      config,
      { id: 1n, storage, wal, snapshotter: new Snapshotter(join(dir, "snap")), applied: 0 },
      {
        ...testHost({
          send: () => {},
          appliedIndex: () => applied,
          async applyCommitted(entries) {
            for (const e of entries) {
              if (e.type === EntryType.ConfChange) loop.applyConfChange(decodeConfChange(e.data), e.index);
              applied = e.index;
            }
          },
          fatal: (err) => {
            failure = err;
          },
        }),
        // Durable only when the test says so.
        syncStateMachine: () =>
          new Promise<void>((release) => {
            syncs.push({ at: applied, release });
          }),
      },
      quiet,
    );
    try {
      loop.start();
      await until("leadership", () => loop.leaderId === 1n);
      for (let i = 0; i < 8; i++) loop.propose(Buffer.from(`a${i}`));
      await until("the puts applied", () => applied >= 8);
      // A snapshot is due at the end of a Ready once the applied index is far enough along.
      loop.propose(Buffer.from("a8"));
      await until("a snapshot's sync asked", () => syncs.length === 1);
      const firstIndex = storage.firstIndex();
      const at = syncs[0]!.at;
      await new Promise((r) => setTimeout(r, 50));
      // Before, the sync was not awaited: the snapshot was taken and the log compacted at once.
      assert.equal(storage.firstIndex(), firstIndex, "nothing compacted before the state is durable");
      assert.equal(storage.snapshot().metadata.index < at, true, "no snapshot taken before it is durable");
      syncs[0]!.release();
      await until("the log before the snapshot released", () => storage.firstIndex() > firstIndex);
      assert.equal(storage.snapshot().metadata.index, at, "the snapshot is at the synced index");
      assert.equal(failure, undefined);
    } finally {
      for (const s of syncs) s.release();
      await loop.stop();
      await loop.closeWal();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("gets each snapshot's state machine sync ready once, ahead of that sync", async () => {
    const { dir, storage, wal } = await bootstrapped([1n]);
    // A count under the 1,000-entry lead: each sync is got ready right after the last snapshot.
    const config = memberConfig(
      parseFlags(["--heartbeat-interval", "10", "--election-timeout", "100", "--snapshot-count", "5"], {}),
    );
    let applied = 0;
    let failure: unknown;
    const events: string[] = [];
    const loop: RaftLoop = new RaftLoop(
      config,
      { id: 1n, storage, wal, snapshotter: new Snapshotter(join(dir, "snap")), applied: 0 },
      {
        ...testHost({
          send: () => {},
          appliedIndex: () => applied,
          async applyCommitted(entries) {
            for (const e of entries) {
              if (e.type === EntryType.ConfChange) loop.applyConfChange(decodeConfChange(e.data), e.index);
              applied = e.index;
            }
          },
          fatal: (err) => {
            failure = err;
          },
        }),
        syncStateMachine: async () => {
          events.push("sync");
        },
        prepareStateMachineSync: () => {
          events.push("prepare");
        },
      },
      quiet,
    );
    try {
      loop.start();
      await until("leadership", () => loop.leaderId === 1n);
      for (let i = 0; i < 20; i++) {
        const before = applied;
        loop.propose(Buffer.from(`a${i}`));
        await until(`put ${i} applied`, () => applied > before);
      }
      await until("three snapshots", () => events.filter((e) => e === "sync").length >= 3);
      // prepare, sync, prepare, sync, ...: never two of one, never a sync not got ready.
      events.forEach((e, i) => {
        assert.equal(e, i % 2 === 0 ? "prepare" : "sync", events.join(","));
      });
      assert.equal(failure, undefined);
    } finally {
      await loop.stop();
      await loop.closeWal();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a leader sends the messages that only advance the commit index before applying what they commit, as etcd's leader does", async () => {
    const { dir, storage, wal } = await bootstrapped([1n, 2n, 3n]);
    // Ticks far apart (the test campaigns itself): a heartbeat in the Ready that commits x would
    // make it more than commit news, and such a Ready is sent first.
    const config = memberConfig(
      parseFlags(["--heartbeat-interval", "5000", "--election-timeout", "50000"], {}),
    );

    // What the leader did, in order: "apply N" for a proposal's entry, "commit N" for a
    // commit-only MsgApp to member 2.
    const events: string[] = [];
    const commitsTo2: number[] = [];
    let applied = 0;
    let failure: unknown;
    // Member 2 answers what the leader sends it (member 3 never does): enough for a quorum.
    const answer = (m: Message): void => {
      const reply = member2Reply(m);
      if (reply === undefined) return;
      setImmediate(() => loop.step([reply]));
    };
    const loop: RaftLoop = new RaftLoop(
      config,
      { id: 1n, storage, wal, snapshotter: new Snapshotter(join(dir, "snap")), applied: 0 },
      testHost({
        send: (messages) => {
          for (const m of messages) {
            if (m.to === 2n && m.type === MessageType.MsgApp) {
              commitsTo2.push(m.commit);
              if (m.entries.length === 0) events.push(`commit ${m.commit}`);
            }
            if (m.to === 2n) answer(m);
          }
        },
        appliedIndex: () => applied,
        async applyCommitted(entries) {
          for (const e of entries) {
            if (e.type === EntryType.ConfChange) loop.applyConfChange(decodeConfChange(e.data), e.index);
            else if (e.data.length > 0) events.push(`apply ${e.index}`);
            applied = e.index;
          }
        },
        fatal: (err) => {
          failure = err;
        },
      }),
      quiet,
    );
    try {
      loop.start();
      // Raft refuses to campaign before the bootstrap ConfChanges are applied.
      await until("the bootstrap configuration applied", () => applied >= storage.lastIndex());
      loop.raw.campaign();
      loop.kick();
      await until("leadership", () => loop.leaderId === 1n);
      await until("the leader's empty entry applied", () => applied === loop.status().commit && applied > 3);
      const x = loop.status().commit + 1;
      // Followers (and the watchers they host) learn each commit without waiting for the
      // leader's apply, whoever proposed the entry.
      for (const [i, data] of ["x", "y"].entries()) {
        loop.propose(Buffer.from(data));
        await until(`${data} applied and its commit sent`, () =>
          [`commit ${x + i}`, `apply ${x + i}`].every((e) => events.includes(e)),
        );
        assert.ok(
          events.indexOf(`commit ${x + i}`) < events.indexOf(`apply ${x + i}`),
          `the commit-only message went out before the leader's apply: ${events.join(", ")}`,
        );
      }
      assert.deepEqual(
        commitsTo2,
        [...commitsTo2].sort((a, b) => a - b),
        "member 2 learns commit indexes in order",
      );
      assert.equal(failure, undefined);
    } finally {
      await loop.stop();
      await loop.closeWal();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("applies committed entries it already saved while the same Ready's new entries are being written", async () => {
    const { dir, storage, wal } = await bootstrapped([1n, 2n, 3n]);
    const config = memberConfig(
      parseFlags(["--heartbeat-interval", "5000", "--election-timeout", "50000"], {}),
    );
    // "apply N" when an apply of a proposal's entry starts, "saved N" when its WAL write is done.
    const events: string[] = [];
    let applied = 0;
    let failure: unknown;
    let x = 0;
    // 1 MiB: its O_DSYNC write takes milliseconds, far longer than the turn the apply waits for.
    const y = Buffer.alloc(1024 * 1024, 1);
    const answer = (m: Message): void => {
      const reply = member2Reply(m);
      if (reply === undefined) return;
      setImmediate(() => loop.step([reply]));
      // y is proposed right after x's ack is stepped: the next Ready commits x and carries y.
      if (m.type === MessageType.MsgApp && m.entries.some((e) => e.index === x)) {
        setImmediate(() => loop.propose(y));
      }
    };
    const host: RaftLoopHost = {
      ...testHost({
        send: (messages) => {
          for (const m of messages) if (m.to === 2n) answer(m);
        },
        appliedIndex: () => applied,
        async applyCommitted(entries) {
          for (const e of entries) {
            if (e.type === EntryType.ConfChange) loop.applyConfChange(decodeConfChange(e.data), e.index);
            else if (e.data.length > 0) events.push(`apply ${e.index}`);
            applied = e.index;
          }
        },
        fatal: (err) => {
          failure = err;
        },
      }),
      persisted: (entries) => {
        for (const e of entries) if (e.data.length > 0) events.push(`saved ${e.index}`);
      },
    };
    const loop: RaftLoop = new RaftLoop(
      config,
      { id: 1n, storage, wal, snapshotter: new Snapshotter(join(dir, "snap")), applied: 0 },
      host,
      quiet,
    );
    try {
      loop.start();
      await until("the bootstrap configuration applied", () => applied >= storage.lastIndex());
      loop.raw.campaign();
      loop.kick();
      await until("leadership", () => loop.leaderId === 1n);
      await until("the leader's empty entry applied", () => applied === loop.status().commit && applied > 3);
      x = loop.status().commit + 1;
      loop.propose(Buffer.from("x"));
      await until("y applied", () => events.includes(`apply ${x + 1}`));
      assert.deepEqual(
        events,
        [`saved ${x}`, `apply ${x}`, `saved ${x + 1}`, `apply ${x + 1}`],
        "x, saved by the Ready before, was applied during y's write, each only once saved",
      );
      assert.equal(failure, undefined);
    } finally {
      await loop.stop();
      await loop.closeWal();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("knows the configuration at a state image's index, also past the replay when no ConfChange lies between", async () => {
    const dir = await mkdtemp(join(tmpdir(), "raft-loop-"));
    const config = memberConfig(parseFlags([], {}));
    // Entry 1 adds member 1 (bootstrap), entry 3 adds member 2, entries 2 and 4 are normal. As
    // right after a restart: the store applied all four before the crash, the replay (the
    // applier) has reached `applied`.
    const storage = bootstrapStorage([1n]);
    const addTwo = { type: ConfChangeType.AddNode, nodeId: 2n, context: new Uint8Array(0) };
    const normal = (index: number) => ({ index, term: 1, type: EntryType.Normal, data: Buffer.from("x") });
    storage.append([
      normal(2),
      { index: 3, term: 1, type: EntryType.ConfChange, data: encodeConfChange(addTwo) },
      normal(4),
    ]);
    const wal = await Wal.create(join(dir, "wal"), { logger: quiet });
    let applied = 1;
    const loop = new RaftLoop(
      config,
      { id: 1n, storage, wal, snapshotter: new Snapshotter(join(dir, "snap")), applied: 0 },
      testHost({
        send: () => {},
        appliedIndex: () => applied,
        applyCommitted: async () => {},
        fatal: () => {},
      }),
      quiet,
    );
    try {
      loop.applyConfChange(decodeConfChange(storage.entries(1, 2, Infinity)[0]!.data), 1);
      assert.deepEqual(loop.confStateAt(1)?.voters, [1n]);
      assert.deepEqual(loop.confStateAt(2)?.voters, [1n], "no ConfChange in 2: the configuration applied");
      assert.equal(loop.confStateAt(4), undefined, "entry 3's ConfChange is not replayed yet");
      loop.applyConfChange(addTwo, 3);
      applied = 3;
      assert.deepEqual(
        loop.confStateAt(4)?.voters,
        [1n, 2n],
        "no ConfChange in 4: the configuration applied",
      );
      assert.deepEqual(loop.confStateAt(2)?.voters, [1n], "the configuration at 2, not the newest");
      assert.equal(loop.confStateAt(5), undefined, "past the log's end");
    } finally {
      await loop.closeWal();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("answers a read's heartbeat while its Ready loop waits for an apply", async () => {
    const { dir, storage, wal } = await bootstrapped([1n, 2n, 3n]);
    // Member 1 follows member 2 (this test), which never times out.
    const config = memberConfig(
      parseFlags(["--heartbeat-interval", "5000", "--election-timeout", "50000"], {}),
    );
    const sent: Message[] = [];
    const started: string[] = [];
    let applied = 0;
    let failure: unknown;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const loop: RaftLoop = new RaftLoop(
      config,
      { id: 1n, storage, wal, snapshotter: new Snapshotter(join(dir, "snap")), applied: 0 },
      testHost({
        send: (messages) => sent.push(...messages),
        appliedIndex: () => applied,
        async applyCommitted(entries) {
          for (const e of entries) {
            if (e.type === EntryType.ConfChange) loop.applyConfChange(decodeConfChange(e.data), e.index);
            else if (e.data.length > 0) {
              started.push(Buffer.from(e.data).toString());
              // "a"'s apply is held until the test lets it go.
              if (started.length === 1) await gate;
            }
            applied = e.index;
          }
        },
        fatal: (err) => {
          failure = err;
        },
      }),
      quiet,
    );
    const fromLeader = (fields: Partial<Message> & Pick<Message, "type">): Message =>
      message({ to: 1n, from: 2n, term: 2, ...fields });
    const last = storage.lastIndex();
    const entry = (index: number, data: string): Entry => ({
      term: 2,
      index,
      type: EntryType.Normal,
      data: Buffer.from(data),
    });
    try {
      loop.start();
      loop.step([
        fromLeader({
          type: MessageType.MsgApp,
          index: last,
          logTerm: 1,
          entries: [entry(last + 1, "a")],
          commit: last,
        }),
      ]);
      loop.step([
        fromLeader({
          type: MessageType.MsgApp,
          index: last + 1,
          logTerm: 2,
          entries: [entry(last + 2, "b")],
          commit: last + 1,
        }),
      ]);
      await until("a's apply started (and held)", () => started.length === 1);
      // b commits: its Ready waits for a's apply, held, so the Ready loop is busy until release.
      loop.step([fromLeader({ type: MessageType.MsgHeartbeat, commit: last + 2 })]);
      await new Promise((r) => setTimeout(r, 50));
      loop.step([
        fromLeader({ type: MessageType.MsgHeartbeat, commit: last + 2, context: Buffer.from("r") }),
      ]);
      await until("the read's heartbeat answered", () =>
        sent.some(
          (m) => m.type === MessageType.MsgHeartbeatResp && Buffer.from(m.context ?? []).toString() === "r",
        ),
      );
      assert.deepEqual(started, ["a"], "b's apply still waits behind a's");
      release();
      await until("b applied", () => applied === last + 2);
      assert.equal(failure, undefined);
    } finally {
      release();
      await loop.stop();
      await loop.closeWal();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
