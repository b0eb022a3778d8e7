// Per-stage stamps of one write at a time, for profiling the latency of a single client's puts
// (issue 15): with ETCD_TS_STAGE_TIMELINE=<file> a member stamps each stage of a write
// (performance.now()) and every 500 writes appends the medians of each stage's offset from the
// write's first stamp to <file>.<pid>. Meaningful only with one write in flight: a stage keeps
// its first stamp since the record began. Off (the default), `stageTimeline` is undefined and a
// call site costs one comparison.
import { appendFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { eventTrace } from "@etcd-ts/telemetry";

const REPORT_EVERY = 500;

class StageTimeline {
  private current = new Map<string, number>();
  private startedAt = 0;
  private readonly records: Map<string, number>[] = [];

  constructor(private readonly file: string) {}

  /** Starts a new record (a leader's proposal, a follower's MsgApp with entries). */
  begin(stage: string): void {
    eventTrace?.add(stage);
    const now = performance.now();
    const answeredAt = this.current.get("answered");
    if (this.current.size > 0) this.finish();
    // The time since the previous write's answer: the client's side of the round trip.
    const gap = answeredAt === undefined ? undefined : now - (this.startedAt + answeredAt);
    this.startedAt = now;
    this.current.set(stage, 0);
    if (gap !== undefined) this.current.set("gap.since.answer", -gap);
  }

  /** The log index of the write's entry: answers about earlier entries are not stamped. */
  index = 0;

  /** Stamps `stage` (markNext) for an answer acknowledging `index`, if that covers this write. */
  markAck(stage: string, index: number): void {
    if (this.index > 0 && index >= this.index) this.markNext(stage);
  }

  /** Stamps `stage` once per record (its first occurrence). */
  mark(stage: string): void {
    eventTrace?.add(stage);
    if (this.current.size === 0 || this.current.has(stage)) return;
    this.current.set(stage, performance.now() - this.startedAt);
  }

  /** Stamps `stage`, or `stage`2 if `stage` was stamped already (two followers' answers). */
  markNext(stage: string): void {
    this.mark(this.current.has(stage) ? `${stage}2` : stage);
  }

  private finish(): void {
    this.records.push(this.current);
    this.current = new Map();
    this.index = 0;
    if (this.records.length < REPORT_EVERY) return;
    const offsets = new Map<string, number[]>();
    for (const r of this.records) {
      for (const [stage, at] of r) {
        let list = offsets.get(stage);
        if (list === undefined) {
          list = [];
          offsets.set(stage, list);
        }
        list.push(at);
      }
    }
    const summary: Record<string, { p50us: number; n: number }> = {};
    const rows = [...offsets].map(([stage, list]) => {
      list.sort((a, b) => a - b);
      return { stage, p50us: Math.round(list[list.length >> 1]! * 1000), n: list.length };
    });
    rows.sort((a, b) => a.p50us - b.p50us);
    for (const { stage, p50us, n } of rows) summary[stage] = { p50us, n };
    appendFileSync(
      `${this.file}.${process.pid}`,
      `${JSON.stringify({ records: this.records.length, summary })}\n`,
    );
    this.records.length = 0;
  }
}

const file = process.env.ETCD_TS_STAGE_TIMELINE;
export const stageTimeline: StageTimeline | undefined =
  file === undefined || file === "" ? undefined : new StageTimeline(file);
