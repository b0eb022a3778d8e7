// A snapshot shares the machine with the writes the member serves: the file is encoded on
// worker threads and sent from the member's one event loop, and for a large store each does
// that for seconds on end. So the snapshot's work pauses after each piece in proportion to how
// busy the member's thread is with writes: `factor` x the piece's time x the busy share (0..1).
// A saturating put load (share near 1) gets the pause at full factor; a trickle of writes (lease
// renewals, events: a share of a few thousandths) costs the snapshot almost nothing. The earlier
// rule paused the full factor on any write in the last 5 ms, so a trickle paid as much as a
// saturated member. The workers run at nice 19, but that does not cover all of their cost: V8
// runs their garbage collection and compilation on its helper threads, shared by the process at
// its priority (measured: a fifth to a third of a snapshot's CPU), so they pace themselves too,
// on the share the member's thread publishes.

import type { EventLoopUtilization } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";

/** Writes applied so far (any counter that moves when one is applied). */
export type WriteCounter = () => number;

/** How busy the member's thread is with writes: a share of its time, 0..1. */
export type BusyShare = () => number;

/**
 * The workers' pause after a piece at a fully busy member, in multiples of the piece's time.
 * At 8, with the member's thread 0.70-0.73 busy with puts, the workers still worked about a
 * sixth of the time and puts kept 0.79-0.94x while they wrote (1,000,000 keys, 2026-12-06 17:40):
 * the loss follows their working share, whatever their nice value (V8's helper threads, memory).
 */
export const SNAPSHOT_YIELD_FACTOR = 12;
/**
 * The send's, on the member's thread: while a chunk is written the member serves no put (it is
 * the same thread, and the client reading the bytes takes the other core). Measured at 8: the
 * send worked 1.56 s of its 6.25 s under a saturating put load and puts lost 0.27x of that time,
 * the loss about the send's working share. Its share is measured only in its pauses (its own work
 * is not the member's load), where it read about 0.4 (pause/work 3.0 at 8): keeping puts at 0.9x
 * needs pause/work of 9 or more, so 32 (a working share of about 0.08). A trickle's share reads a
 * few hundredths: its send pauses a few tenths of a second in all.
 */
export const SNAPSHOT_SEND_YIELD_FACTOR = 32;
const MAX_PAUSE_MS = 1000;
/** Node's timers do not sleep less than a millisecond: shorter pauses are owed until they add up to one. */
const MIN_PAUSE_MS = 1;
/** How much measured time the busy share is smoothed over (an exponential average). */
const SMOOTHING_MS = 25;
/**
 * While this thread's own snapshot work runs (the send), only its pauses measure the load; with
 * no pause due, writes seen make it pause this long at most every PROBE_EVERY_MS, to notice a
 * load that started since (a trickle pays about a fiftieth).
 */
const PROBE_MS = 1;
const PROBE_EVERY_MS = 50;

/**
 * The member's thread's event-loop utilisation (time running callbacks, not waiting for I/O) over
 * the recent past, counted only over intervals in which writes were applied (a read-only load
 * does not slow a snapshot): the busy share the snapshot paces itself by. Reading `busy` folds in
 * the time since the last read. While this thread does the snapshot's own work (ownWork), that
 * time is not the member's load: only the pauses taken through `pause` are measured then.
 */
export class WriteLoad {
  private mark: EventLoopUtilization;
  private writesAtMark: number;
  private counting = true;
  private activeMs = 0;
  private totalMs = 0;
  private moved = false;
  private share = 0;
  private lastCountedAt = performance.now();
  private summedMs = 0;
  private weighted = 0;

  constructor(private readonly writes: WriteCounter) {
    this.mark = performance.eventLoopUtilization();
    this.writesAtMark = writes();
  }

  /** The smoothed busy share, 0..1. */
  get busy(): number {
    this.fold();
    if (this.totalMs > 0) {
      const sample = this.moved ? this.activeMs / this.totalMs : 0;
      this.share += (sample - this.share) * (1 - Math.exp(-this.totalMs / SMOOTHING_MS));
      this.summedMs += this.totalMs;
      this.weighted += sample * this.totalMs;
      this.activeMs = 0;
      this.totalMs = 0;
      this.moved = false;
    }
    return this.share;
  }

  /** The mean busy share over all the time measured (for the log). */
  get mean(): number {
    return this.summedMs === 0 ? 0 : this.weighted / this.summedMs;
  }

  /** From now on this thread runs the snapshot's own work: only `pause` measures the load. */
  ownWork(): void {
    this.fold();
    this.counting = false;
  }

  /** Sleeps `ms` (a pause of this thread's own work), measuring the load meanwhile. */
  async pause(ms: number): Promise<void> {
    const counting = this.counting;
    if (!counting) this.startCounting();
    try {
      await sleep(ms);
    } finally {
      this.fold();
      this.counting = counting;
    }
  }

  /**
   * While this thread does its own work: whether to pause (PROBE_MS) only to measure the load,
   * because writes were applied since the load was last measured, a while ago.
   */
  probeDue(): boolean {
    return (
      !this.counting &&
      performance.now() - this.lastCountedAt >= PROBE_EVERY_MS &&
      this.writes() !== this.writesAtMark
    );
  }

  /** Adds the time since the mark to the measured time (while counting), and moves the mark. */
  private fold(): void {
    if (!this.counting) return;
    const d = performance.eventLoopUtilization(this.mark);
    this.activeMs += d.active;
    this.totalMs += d.active + d.idle;
    this.moved ||= this.writes() !== this.writesAtMark;
    this.startCounting();
  }

  private startCounting(): void {
    this.counting = true;
    this.mark = performance.eventLoopUtilization();
    this.writesAtMark = this.writes();
    this.lastCountedAt = performance.now();
  }
}

export class WritePacer {
  /** Pause time due but not yet taken (negative: overslept, credited to the next pieces). */
  private owed = 0;

  constructor(
    private readonly busy: BusyShare,
    private readonly factor = SNAPSHOT_YIELD_FACTOR,
    private readonly sleepFor: (ms: number) => Promise<unknown> = sleep,
    private readonly probe: () => boolean = () => false,
  ) {}

  /** After `busyMs` of snapshot work: pauses in proportion to the busy share; whether it did. */
  async pause(busyMs: number): Promise<boolean> {
    this.owed = Math.min(this.owed + busyMs * this.factor * this.busy(), MAX_PAUSE_MS);
    const ms = this.owed >= MIN_PAUSE_MS ? this.owed : this.probe() ? PROBE_MS : 0;
    if (ms === 0) return false;
    const started = performance.now();
    await this.sleepFor(ms);
    // A late wake-up (a nice-19 thread waits for a core) was a pause too: credited to the next pieces.
    const slept = Math.max(ms, performance.now() - started);
    this.owed = Math.max(this.owed - slept, -MAX_PAUSE_MS);
    return true;
  }
}
