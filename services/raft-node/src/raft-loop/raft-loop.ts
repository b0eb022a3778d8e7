// The Raft loop in etcd's order (etcdserver/raft.go): a tick timer drives Raft; each Ready is
// persisted to the WAL (fsynced, group-committed), appended to the in-memory log, sent to peers,
// and its committed entries are handed to the applier; then advance(). Every --snapshot-count
// applied entries it saves a snapshot and releases the WAL and the in-memory log before it.
// What the entries mean is not its business: it sees bytes, and a host that applies them.
//
// Apply is pipelined as etcd's is (its apply goroutine runs while raft.go persists the next
// batch): a Ready's committed entries are applied once the Ready loop has nothing more to do
// this turn (no further Ready, or one waiting for its WAL write in the thread pool, in which case
// the apply starts on the next turn, during that write), instead of before advance(). Committed
// entries already durable here (saved by an earlier Ready) start even before the Ready's own
// WAL write (handleReady). What makes this safe (see scheduleApply and its callers):
//  - order: batch N+1 starts only after batch N finished (one promise chain), and a batch is
//    scheduled only once every entry in it is durable in this member's WAL;
//  - conf changes: a Ready committing a ConfChange waits for its apply before advance(), so
//    Raft's configuration (and its one-change-at-a-time rule, which reads its applied index)
//    never runs ahead of the entries actually applied (etcd's waitApply);
//  - snapshots: creating one and installing one both wait for the batch in flight, so a
//    snapshot's index is an applied state and an install never races an apply;
//  - reads and replies: ReadIndex waits for the applier's own index (applied >= read index)
//    and a client is answered by the apply of its entry, so neither sees the lag;
//  - failure: an apply error stops the loop as a WAL error does; stop() waits for the batch.
//
// A leader's commit news (MsgApps that only advance followers' commit index) leaves at once, as
// etcd's leader sends it, before its own apply: followers apply in step with the leader, so a
// follower's watchers (the gateway's upstream watches among them) and a follower's forwarded puts
// wait for no leader apply. From 2026-12-06 to 2026-12-07 it was held behind the leader's apply
// and answers (so the proposer's answer would not wait behind two peer writes); paired, that
// measured nothing at 1 client, and through the gateway it put the leader's apply between a put's
// answer and the events of the 2 in 3 upstream watches a follower hosts (bench/JOURNAL.md,
// 2026-12-07 (night): w100k).
//
// Read traffic does not wait for the Ready loop (`flushReadTraffic`): while a Ready's WAL write
// or apply is awaited, the heartbeat round of new ReadIndex requests, followers' heartbeat
// responses, forwarded reads and their answers, and the read states answered are taken from
// Raft in the next turn and sent or handed on at once (RawNode.takeReadTraffic says why none
// of them depends on persistence), instead of after that write and the next Ready's. Under a
// put load every Ready carries entries, so a linearizable read waited for up to four WAL writes
// (the leader's before it sent the round, a follower's before it answered, the leader's twice
// before it saw the quorum).
import { performance } from "node:perf_hooks";
import {
  type ConfChange,
  type ConfState,
  type Entry,
  EntryType,
  isReadTraffic,
  type MemoryStorage,
  type Message,
  MessageType,
  RawNode,
  type Ready,
  type Snapshot,
  StateRole,
} from "@etcd-ts/raft";
import { eventTrace } from "@etcd-ts/telemetry";
import type { MemberConfig } from "../config/flags.js";
import { formatId } from "../membership/member-id.js";
import { stageTimeline } from "../server/stage-timeline.js";
import type { Snapshotter, Wal } from "../wal/mod.js";
import { ConfStateHistory } from "./conf-state-history.js";
import { compactionIndex, SnapshotFollowUps, shouldSnapshot, snapshotNear } from "./snapshot-policy.js";

export interface RaftLoopLogger {
  info(details: Record<string, unknown>, message: string): void;
  error(details: Record<string, unknown>, message: string): void;
}

/** What the loop hands on and asks of the member around it. */
export interface RaftLoopHost {
  send(messages: Message[]): void;
  appliedIndex(): number;
  /** Applies committed entries in order; resolves once they are applied (and durable in the batch). */
  applyCommitted(entries: Entry[]): Promise<void>;
  /** Replaces the state machine with the image received for `snapshot` (a follower far behind). */
  restoreStateMachine(snapshot: Snapshot): Promise<void>;
  /**
   * Makes the state applied so far durable (the log before it is then released); the member's
   * thread is free meanwhile (the fsync runs on another).
   */
  syncStateMachine(): Promise<unknown>;
  /**
   * A snapshot is near (snapshotNear): get syncStateMachine ready so the Ready loop does not
   * wait for its set-up too (a thread started ahead). Returns at once.
   */
  prepareStateMachineSync(): void;
  /** Leadership moved (`lead` 0n: no leader known). */
  leadershipChanged(lead: bigint, isLeader: boolean, wasLeader: boolean): void;
  /** A ReadIndex round was answered. */
  readState(requestCtx: Uint8Array, index: number): void;
  /** Every tick, after Raft's: deadlines of waiting calls. */
  ticked(now: number): void;
  /** The loop failed (disk): nothing more is persisted. */
  fatal(error: unknown): void;
  /**
   * Tracing only (undefined otherwise, so an untraced loop reads no extra clock): a Ready's
   * entries were appended to the WAL and fsynced, starting at `startedAt` (performance.now()).
   */
  persisted?(entries: readonly Entry[], startedAt: number): void;
  /** Tracing only: entries Raft reports committed, about to be applied. */
  committed?(entries: readonly Entry[]): void;
}

export interface RaftLoopParts {
  id: bigint;
  storage: MemoryStorage;
  wal: Wal;
  snapshotter: Snapshotter;
  /** Index of the state the store starts from (its last snapshot's). */
  applied: number;
}

export class RaftLoop {
  readonly raw: RawNode;
  term = 0;
  leaderId = 0n;
  role: StateRole = StateRole.Follower;
  /** When leadership last changed, on the monotonic clock; for etcd's timeout wording. */
  leaderChangedAt = 0;

  private readonly id: bigint;
  private readonly storage: MemoryStorage;
  private readonly wal: Wal;
  private readonly snapshotter: Snapshotter;
  private confState: ConfState;
  /** Configurations by applied index, to stamp a snapshot image cut at an earlier index. */
  private readonly confStates: ConfStateHistory;
  private snapshotIndex: number;
  /** The snapshot index after which the next snapshot's sync was got ready (once per snapshot). */
  private syncPreparedAfter = -1;
  private readyScheduled = false;
  private inReady = false;
  /** A flushReadTraffic is scheduled for the next turn. */
  private readFlushScheduled = false;
  private readyIdle: (() => void)[] = [];
  private tickTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private leaderWatchers: (() => void)[] = [];
  /** The batch of committed entries being applied (resolved when none is). */
  private applying: Promise<void> = Promise.resolve();
  /** Whether `applying` is still pending: an apply batch is scheduled or running. */
  private applyInFlight = false;
  /** Starts the scheduled apply now instead of on the next turn (see scheduleApply); undefined when none waits. */
  private startApply: (() => void) | undefined;
  private failed = false;
  private readonly snapshotFollowUps = new SnapshotFollowUps();

  constructor(
    private readonly config: MemberConfig,
    parts: RaftLoopParts,
    private readonly host: RaftLoopHost,
    private readonly logger: RaftLoopLogger,
  ) {
    this.id = parts.id;
    this.storage = parts.storage;
    this.wal = parts.wal;
    this.snapshotter = parts.snapshotter;
    const initial = this.storage.initialState();
    this.confState = initial.confState;
    this.snapshotIndex = this.storage.snapshot().metadata.index;
    this.confStates = new ConfStateHistory(this.snapshotIndex, this.confState);
    this.term = initial.hardState.term;
    this.raw = new RawNode({
      id: this.id,
      storage: this.storage,
      electionTick: Math.max(2, Math.round(config.electionMs / config.heartbeatMs)),
      heartbeatTick: 1,
      random: Math.random,
      applied: parts.applied,
      checkQuorum: true,
      preVote: config.preVote,
      maxSizePerMsg: 1024 * 1024,
      maxInflightMsgs: 512,
    });
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  get voters(): readonly bigint[] {
    return this.confState.voters;
  }

  get learners(): readonly bigint[] {
    return this.confState.learners;
  }

  start(): void {
    this.tickTimer = setInterval(() => this.tick(), this.config.heartbeatMs);
    // A member alone in its configuration needs no election timeout to lead.
    if (this.confState.voters.length === 1 && this.confState.voters[0] === this.id) this.raw.campaign();
    this.kick();
  }

  private tick(): void {
    if (this.stopped) return;
    eventTrace?.add("tick");
    this.raw.tick();
    this.host.ticked(performance.now());
    this.kick();
  }

  /** Schedules Ready processing after the current turn, so work from this turn is batched. */
  kick(): void {
    eventTrace?.add(`kick ${this.readyScheduled ? "s" : ""}${this.inReady ? "r" : ""}`);
    if (this.readyScheduled || this.inReady || this.stopped) return;
    this.readyScheduled = true;
    setImmediate(() => {
      this.readyScheduled = false;
      void this.runReady();
    });
  }

  /**
   * Hands on the read traffic Raft made since the Ready in progress (see the header), a turn
   * after the step that made it, so every read message stepped in that turn shares one
   * heartbeat round. Only while a Ready is in progress: otherwise the next Ready carries it
   * as soon (kick).
   */
  private scheduleReadFlush(): void {
    if (this.readFlushScheduled || !this.inReady || this.stopped) return;
    this.readFlushScheduled = true;
    setImmediate(() => {
      this.readFlushScheduled = false;
      if (!this.inReady || this.stopped) return;
      const { messages, readStates } = this.raw.takeReadTraffic();
      if (messages.length > 0) {
        eventTrace?.add(
          `tx ${messages.map((m) => `${m.type}/0/${m.index}/${m.commit}>${m.to}`).join(",")} READ`,
        );
        this.host.send(messages);
      }
      for (const rs of readStates) this.host.readState(rs.requestCtx, rs.index);
    });
  }

  private async runReady(): Promise<void> {
    if (this.inReady || this.stopped) return;
    stageTimeline?.mark("ready.run");
    this.inReady = true;
    try {
      while (!this.stopped && this.raw.hasReady()) {
        const rd = this.raw.ready();
        await this.handleReady(rd);
        this.raw.advance(rd);
      }
      // Nothing left for Raft this turn, so no WAL write for the apply to overlap: apply now.
      this.startApply?.();
    } catch (err) {
      this.fail(err);
    } finally {
      eventTrace?.add("ready.done");
      this.inReady = false;
      for (const wake of this.readyIdle.splice(0)) wake();
    }
  }

  private fail(err: unknown): void {
    this.stopped = true;
    if (this.failed) return;
    this.failed = true;
    this.logger.error({ error: err instanceof Error ? err.stack : String(err) }, "raft loop failed");
    this.host.fatal(err);
  }

  /**
   * Applies `entries` after the batch in flight (chained on it; callers mostly await it first,
   * the early apply in handleReady does not), once the Ready loop stops (runReady calls
   * startApply) or on the next turn, whichever comes first: a Ready's WAL write in the thread
   * pool then runs during the apply, mostly synchronous work. Starting in the turn that committed
   * the entries, when there is no such write, spares a turn of the event loop per apply (a single
   * client's put: two turns fewer per member, with the kick below). Either way every entry is
   * durable in this member's WAL before its apply starts.
   */
  private scheduleApply(entries: Entry[]): void {
    const previous = this.applying;
    this.applyInFlight = true;
    const started = new Promise<void>((resolve) => {
      const start = () => {
        clearImmediate(timer);
        if (this.startApply === start) this.startApply = undefined;
        resolve();
      };
      const timer = setImmediate(start);
      this.startApply = start;
    });
    const run: Promise<void> = previous
      .then(() => started)
      .then(() => {
        stageTimeline?.mark("apply.start");
        return this.host.applyCommitted(entries);
      })
      .then(async () => {
        stageTimeline?.mark("apply.end");
        // Batches chain on the one before: only the newest one says none is in flight.
        if (this.applying === run) this.applyInFlight = false;
        // What the apply did may have made new work for Raft (a ConfChange applied); a turn
        // only if so: proposals and reads the apply caused kick for themselves.
        if (this.raw.hasReady()) this.kick();
      });
    this.applying = run;
    run.catch((err: unknown) => this.fail(err));
  }

  private send(messages: Message[]): void {
    if (messages.length === 0) return;
    eventTrace?.add(
      `tx ${messages.map((m) => `${m.type}/${m.entries.length}/${m.index}/${m.commit}>${m.to}`).join(",")}`,
    );
    this.host.send(messages);
  }

  private async handleReady(rd: Ready): Promise<void> {
    if (rd.softState) this.onSoftState(rd.softState.lead, rd.softState.role);
    if (rd.hardState) this.term = rd.hardState.term;
    // A read state depends on nothing this Ready persists (its reads still wait for applied >=
    // its index): handed on before the WAL write, not after it.
    for (const rs of rd.readStates) this.host.readState(rs.requestCtx, rs.index);
    // The leader may send before its own fsync (Raft thesis 10.2.1): it counts itself in the
    // quorum only after advance(). Everyone else must persist first.
    const sendFirst = this.role === StateRole.Leader;
    const committedConfChange = rd.committedEntries.some((e) => e.type === EntryType.ConfChange);
    if (sendFirst) this.send(rd.messages);
    if (rd.entries.length > 0 && stageTimeline !== undefined) {
      stageTimeline.mark(sendFirst ? "msgapp.sent" : "ready.entries");
      stageTimeline.index ||= rd.entries[rd.entries.length - 1]!.index;
    }
    if (rd.snapshot) {
      await this.applying;
      await this.installSnapshot(rd.snapshot);
    }
    // Committed entries this member already holds durably (saved by an earlier Ready, whose
    // write was awaited) start applying now, while this Ready's WAL write is in flight, instead
    // of after it: under load a leader's Ready commits batch k and carries batch k+1, and batch
    // k's answers waited for k+1's write (a follower's likewise, for the puts it forwarded).
    // Safe: they are committed (durable on a quorum) and durable here, so the store's applied
    // index never passes this member's log (a restart replays from it); the apply chain keeps
    // batches in order. Not with a ConfChange (its apply must precede advance, below).
    let committed = rd.committedEntries;
    if (rd.entries.length > 0 && committed.length > 0 && !committedConfChange) {
      const durable = Math.min(this.storage.lastIndex(), rd.entries[0]!.index - 1);
      let n = 0;
      while (n < committed.length && committed[n]!.index <= durable) n++;
      if (n > 0) {
        const early = n === committed.length ? committed : committed.slice(0, n);
        committed = n === committed.length ? [] : committed.slice(n);
        this.host.committed?.(early);
        stageTimeline?.mark("committed");
        // Chained behind the batch in flight (scheduleApply), not awaited: the write goes first.
        this.scheduleApply(early);
      }
    }
    // A hard state whose only change is the commit index need not be durable (Raft learns
    // the commit index again from the leader), so it costs no fsync, as in etcd (MustSync).
    // A snapshot's hard state is saved, so that the log's commit never trails its snapshot.
    const saving =
      rd.entries.length > 0 || (rd.hardState !== undefined && (rd.mustSync || rd.snapshot !== undefined));
    let afterSave = rd.messages;
    if (!sendFirst && saving) {
      // A follower's forwarded proposals and its read traffic depend on nothing this Ready
      // persists (Raft's rule is about what a message says of this member's log and votes: acks
      // and votes; a MsgProp carries a client's request, a MsgReadIndex a context, and the leader
      // takes either whatever this member holds; a heartbeat response, RawNode.takeReadTraffic),
      // so they leave before the write instead of after it.
      const early = rd.messages.filter(isSentBeforeSave);
      if (early.length > 0) {
        this.send(early);
        afterSave = rd.messages.filter((m) => !isSentBeforeSave(m));
      }
    }
    if (saving) {
      const persisted = this.host.persisted;
      const startedAt = persisted === undefined ? 0 : performance.now();
      if (rd.entries.length > 0) stageTimeline?.mark("wal.start");
      // A member with one entry to save and no apply in flight (a single client's write) has
      // nothing to do but wait for this write: the WAL writes it on this thread (Wal.save's
      // `inline`), sparing the thread pool's two wake-ups. Durability is unchanged (an O_DSYNC
      // write either way; a follower's MsgAppResp still goes after it, and the leader counts
      // itself in the quorum only after advance()). The leader too: its MsgApps were written to
      // their sockets when sent above (PeerLink.send writes at once), so they travel while this
      // write blocks. At 1 client (2026-12-06 quiet window) its own write went from ~700 us in
      // the thread pool to ~400, and its CPU per put down 7-22% in three paired runs. Not
      // while an apply is in flight or with more entries, where the write overlapping the apply
      // and the next messages is what keeps a busy member's throughput.
      const inline = rd.entries.length === 1 && !this.applyInFlight;
      await this.wal.save(rd.hardState, rd.entries, inline);
      if (rd.entries.length > 0) stageTimeline?.mark("wal.end");
      if (persisted !== undefined && rd.entries.length > 0) this.host.persisted?.(rd.entries, startedAt);
    }
    if (rd.hardState) this.storage.setHardState(rd.hardState);
    if (rd.entries.length > 0) this.storage.append(rd.entries);
    if (!sendFirst) this.send(afterSave);
    if (!sendFirst && rd.entries.length > 0) stageTimeline?.mark("resp.sent");
    if (committed.length > 0) {
      this.host.committed?.(committed);
      stageTimeline?.mark("committed");
      // The previous batch ran during this Ready's WAL write; this one runs during the next's.
      await this.applying;
      this.scheduleApply(committed);
      if (committedConfChange) await this.applying;
    }
    // Only gets the snapshot's sync started sooner (a thread ready): what it covers and that the
    // log is released only after it are unchanged (snapshot()).
    if (
      this.syncPreparedAfter !== this.snapshotIndex &&
      snapshotNear(this.host.appliedIndex(), this.snapshotIndex, this.config.snapshotCount)
    ) {
      this.syncPreparedAfter = this.snapshotIndex;
      this.host.prepareStateMachineSync();
    }
    // The applied index may trail by the batch in flight; a snapshot due is then taken a Ready later.
    const due = () => shouldSnapshot(this.host.appliedIndex(), this.snapshotIndex, this.config.snapshotCount);
    if (due()) {
      await this.applying;
      if (due()) await this.snapshot();
    }
  }

  private onSoftState(lead: bigint, role: StateRole): void {
    const wasLeader = this.role === StateRole.Leader;
    if (lead !== this.leaderId) {
      this.leaderChangedAt = performance.now();
      if (lead !== 0n) this.logger.info({ leader: formatId(lead), term: this.term }, "raft leader changed");
      else this.logger.info({ term: this.term }, "raft lost its leader");
    }
    this.leaderId = lead;
    this.role = role;
    this.host.leadershipChanged(lead, role === StateRole.Leader, wasLeader);
    for (const wake of this.leaderWatchers.splice(0)) wake();
  }

  /** A committed ConfChange, the entry at `index`, as the applier reaches it. */
  applyConfChange(cc: ConfChange, index: number): void {
    this.confState = this.raw.applyConfChange(cc);
    this.confStates.record(index, this.confState);
  }

  /**
   * The configuration once the entry at `index` was applied, or undefined when this member cannot
   * tell: older than the configurations kept, or a ConfChange among entries the state machine
   * holds but the applier has not replayed yet.
   */
  confStateAt(index: number): ConfState | undefined {
    const applied = this.host.appliedIndex();
    if (index <= applied) return this.confStates.at(index);
    // Right after a restart the store may be ahead of the replay: it applied (committed) entries
    // that Raft hands over again only once this member learns the commit index anew. A new
    // leader may need a snapshot to reach a quorum before it can (a follower behind its
    // compacted log), so waiting for the replay could wait forever. Those entries are in the
    // log; without a ConfChange among them, the configuration is the one applied so far.
    if (index > this.storage.lastIndex() || applied < this.storage.firstIndex() - 1) return undefined;
    const pending = this.storage.entries(applied + 1, index + 1, Number.POSITIVE_INFINITY);
    if (pending.some((e) => e.type === EntryType.ConfChange)) return undefined;
    return this.confStates.at(applied);
  }

  // ---- snapshots ----------------------------------------------------------------------------------

  private async snapshot(): Promise<void> {
    const index = this.host.appliedIndex();
    // The Raft log up to `index` may be released only once the state it produced is durable:
    // awaited (an fsync of 100,000 puts' worth of the store's WAL took 67-160 ms, on another
    // thread now, so calls and sockets are served meanwhile; the Ready loop waits for it).
    await this.host.syncStateMachine();
    const snap = this.storage.createSnapshot(index, this.confState, new Uint8Array(0));
    // Commit-only hard states are not saved (see handleReady); replay after this snapshot needs
    // a commit index at least as high as the snapshot's.
    await this.wal.save(this.storage.initialState().hardState, []);
    await this.snapshotter.save(snap);
    await this.wal.saveSnapshotMarker(snap.metadata);
    const keepAfter = this.snapshotFollowUps.keepAfter(this.raw.status().progress, performance.now());
    const to = compactionIndex(
      index,
      this.storage.firstIndex(),
      this.config.snapshotCatchUpEntries,
      keepAfter,
    );
    if (to !== undefined) this.storage.compact(to);
    this.snapshotIndex = index;
    await this.wal.releaseTo(index);
    if (this.config.maxSnapshots > 0) await this.snapshotter.purge(this.config.maxSnapshots);
    this.logger.info({ index, compactedTo: to ?? 0, keptForFollowerAfter: keepAfter }, "saved snapshot");
  }

  /** Installs a snapshot the leader sent: the state machine first, then the Raft log's marker. */
  private async installSnapshot(snapshot: Snapshot): Promise<void> {
    await this.host.restoreStateMachine(snapshot);
    const empty = { metadata: snapshot.metadata, data: new Uint8Array(0) };
    await this.snapshotter.save(empty);
    await this.wal.saveSnapshotMarker(snapshot.metadata);
    this.storage.applySnapshot(empty);
    this.confState = snapshot.metadata.confState;
    this.confStates.reset(snapshot.metadata.index, this.confState);
    this.snapshotIndex = snapshot.metadata.index;
  }

  // ---- inputs -------------------------------------------------------------------------------------

  /** Proposes entry data; throws Raft's ProposalDroppedError when it cannot be proposed now. */
  propose(data: Uint8Array): void {
    this.raw.propose(data);
    this.kick();
  }

  proposeConfChange(cc: ConfChange): void {
    this.raw.proposeConfChange(cc);
    this.kick();
  }

  readIndex(ctx: Uint8Array): void {
    this.raw.readIndex(ctx);
    this.kick();
    this.scheduleReadFlush();
  }

  step(messages: Message[]): void {
    if (this.stopped) return;
    let read = false;
    for (const m of messages) {
      this.raw.step(m);
      if (isReadTraffic(m.type)) read = true;
    }
    this.kick();
    if (read) this.scheduleReadFlush();
  }

  reportUnreachable(id: bigint): void {
    this.raw.reportUnreachable(id);
  }

  reportSnapshot(id: bigint, ok: boolean): void {
    if (ok) {
      const index = this.raw.status().progress.get(id)?.pendingSnapshot ?? 0;
      this.snapshotFollowUps.sent(id, index, performance.now());
    }
    this.raw.reportSnapshot(id, ok);
    this.kick();
  }

  status() {
    return this.raw.status();
  }

  // ---- leadership ---------------------------------------------------------------------------------

  /** Resolves at the next leadership change, or after `timeoutMs`. */
  waitLeaderChange(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.leaderWatchers.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Hands leadership to `target` and waits (up to `timeoutMs`) until it leads. */
  async transferLeadership(target: bigint, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    this.raw.transferLeader(target);
    this.kick();
    while (this.leaderId !== target && performance.now() < deadline) {
      await this.waitLeaderChange(Math.max(1, deadline - performance.now()));
    }
    return this.leaderId === target;
  }

  /** The voter whose log matches the leader's most (for a leader stepping down). */
  mostUpToDateVoter(): bigint | undefined {
    const status = this.raw.status();
    let best: bigint | undefined;
    let bestMatch = -1;
    for (const [id, pr] of status.progress) {
      if (id === this.id || pr.isLearner) continue;
      if (pr.match > bestMatch) {
        best = id;
        bestMatch = pr.match;
      }
    }
    return best;
  }

  // ---- shutdown -----------------------------------------------------------------------------------

  /** Stops ticking and processing Readys; resolves once the Ready in progress (if any) is done. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.tickTimer = undefined;
    if (this.inReady) await new Promise<void>((resolve) => this.readyIdle.push(resolve));
    await this.applying.catch(() => {});
  }

  async closeWal(): Promise<void> {
    await this.wal.close().catch(() => {});
  }
}

/** A proposal a follower forwards to its leader, or read traffic (RawNode.takeReadTraffic). */
function isSentBeforeSave(m: Message): boolean {
  return m.type === MessageType.MsgProp || isReadTraffic(m.type);
}
