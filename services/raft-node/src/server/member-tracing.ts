// A member's spans, made only when tracing is on (Member holds one of these only then; every
// call site tests for it first, so an untraced member allocates nothing for tracing).
//
// A write's trace, under the member's gRPC server span:
//   etcdserver.propose   from propose until this member sees the entry committed
//   raft.wal_append      the WAL write + fsync of the Ready holding the entry, on every member
//                        that persists it (the leader's and each follower's: replication)
//   etcdserver.apply     the apply batch (one RocksDB write batch) holding the entry
// The span context travels inside the Raft entry (entry-envelope.ts) when the trace is sampled.
// On the proposer the apply span is the propose span's child; on other members one span per
// batch is the child of the first traced entry in it and links to every traced entry, so a
// follower's apply is found from each proposer's trace without batching entries of other
// traces into it.
//
// A linearizable read: etcdserver.read_index (the ReadIndex round) then etcdserver.wait_applied.
// Lease expiries (lease.expire) and watch deliveries (watch.deliver) start traces of their own.
//
// A span started at a given time (performance.now()) is ended at one too: sdk-trace-base ends
// such a span on Date.now() otherwise, in whole milliseconds.

import { type Entry, EntryType } from "@etcd-ts/raft";
import {
  contextWithParent,
  decodeSpanContext,
  encodeSpanContext,
  isSampled,
  sampledSpan,
  startSpanRecording,
  type TraceContext,
  tracing,
} from "@etcd-ts/telemetry";
import { type Link, type Span, SpanStatusCode } from "@opentelemetry/api";
import { EntryKind, envelopeProposerAndSeq, envelopeTrace } from "../apply/entry-envelope.js";
import { formatId } from "../membership/member-id.js";

/** The span context a normal entry's envelope carries (a ConfChange entry's data is no envelope). */
function carriedBy(entry: Entry): Uint8Array | undefined {
  return entry.type === EntryType.Normal ? envelopeTrace(entry.data) : undefined;
}

export class MemberTracing {
  /** Open propose spans of this member's own traced proposals, by sequence number. */
  private readonly proposals = new Map<number, Span>();
  private readonly memberId: string;

  constructor(private readonly id: bigint) {
    this.memberId = formatId(id);
  }

  /**
   * A propose span under the call's server span, or undefined when its trace is not sampled:
   * then nothing is added to the entry.
   */
  proposing(kind: EntryKind, parent: TraceContext): Span | undefined {
    if (sampledSpan(parent) === undefined) return undefined;
    return tracing.tracer.startSpan(
      "etcdserver.propose",
      { attributes: { "etcd.member_id": this.memberId, "etcd.entry_kind": EntryKind[kind] ?? kind } },
      parent,
    );
  }

  /** The bytes the entry carries for `span`, which stays open until the entry commits or fails. */
  proposed(seq: number, span: Span, done: Promise<unknown>): Uint8Array {
    this.proposals.set(seq, span);
    done.then(
      () => this.endProposal(seq),
      (err: unknown) => this.endProposal(seq, err),
    );
    return encodeSpanContext(span.spanContext());
  }

  private endProposal(seq: number, err?: unknown): void {
    const span = this.proposals.get(seq);
    if (span === undefined) return;
    this.proposals.delete(seq);
    if (err !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
    span.end();
  }

  /** Raft loop host hook: a Ready's entries were written and fsynced. */
  persisted(entries: readonly Entry[], startedAt: number): void {
    for (const entry of entries) {
      const carried = carriedBy(entry);
      if (carried === undefined) continue;
      tracing.tracer
        .startSpan(
          "raft.wal_append",
          {
            startTime: startedAt,
            attributes: {
              "etcd.member_id": this.memberId,
              "raft.index": entry.index,
              "raft.term": entry.term,
              "raft.ready_entries": entries.length,
            },
          },
          remoteParent(carried),
        )
        .end(performance.now());
    }
  }

  /** Raft loop host hook: entries committed; this member's own proposals among them end their propose span. */
  committed(entries: readonly Entry[]): void {
    if (this.proposals.size === 0) return;
    for (const entry of entries) {
      if (carriedBy(entry) === undefined) continue;
      const [proposer, seq] = envelopeProposerAndSeq(entry.data);
      if (proposer !== this.id) continue;
      const span = this.proposals.get(seq);
      if (span === undefined) continue;
      this.proposals.delete(seq);
      span.setAttribute("raft.index", entry.index);
      span.end();
    }
  }

  /** After an apply batch that started at `startedAt` (performance.now()). */
  applied(entries: readonly Entry[], startedAt: number): void {
    let links: Link[] | undefined;
    for (const entry of entries) {
      const carried = carriedBy(entry);
      if (carried === undefined) continue;
      const [proposer] = envelopeProposerAndSeq(entry.data);
      if (proposer === this.id) {
        tracing.tracer
          .startSpan(
            "etcdserver.apply",
            { startTime: startedAt, attributes: this.applyAttributes(entries, entry) },
            remoteParent(carried),
          )
          .end(performance.now());
      } else {
        links ??= [];
        links.push({ context: decodeSpanContext(carried) });
      }
    }
    if (links === undefined) return;
    tracing.tracer
      .startSpan(
        "etcdserver.apply",
        {
          startTime: startedAt,
          links,
          attributes: { ...this.applyAttributes(entries, undefined), "etcd.traced_entries": links.length },
        },
        contextWithParent(links[0]!.context),
      )
      .end(performance.now());
  }

  private applyAttributes(entries: readonly Entry[], entry: Entry | undefined) {
    return {
      "etcd.member_id": this.memberId,
      "raft.batch_entries": entries.length,
      "raft.first_index": entries[0]?.index ?? 0,
      "raft.last_index": entries[entries.length - 1]?.index ?? 0,
      ...(entry === undefined ? {} : { "raft.index": entry.index }),
    };
  }

  /**
   * A linearizable read under the call's server span: resolves as `wait` does, with the
   * ReadIndex round and the wait for apply as two spans. `wait` is given the callback to call
   * with the read index once Raft answered.
   */
  async linearizableRead(
    parent: TraceContext,
    wait: (indexKnown?: (index: number) => void) => Promise<void>,
  ): Promise<void> {
    if (sampledSpan(parent) === undefined) return wait();
    const round = tracing.tracer.startSpan("etcdserver.read_index", {}, parent);
    let applyWait: Span | undefined;
    try {
      await wait((index) => {
        round.setAttribute("raft.read_index", index);
        round.end();
        applyWait = tracing.tracer.startSpan(
          "etcdserver.wait_applied",
          { attributes: { "raft.read_index": index } },
          parent,
        );
      });
    } catch (err) {
      const open = applyWait ?? round;
      open.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
      throw err;
    } finally {
      if (applyWait === undefined) round.end();
      else applyWait.end();
    }
  }

  /** A lease expiry's own trace; the revoke entry carries it so its apply spans link back. */
  leaseExpiring(id: bigint, propose: (trace: Uint8Array | undefined) => void): void {
    const span = startSpanRecording(
      "lease.expire",
      { root: true },
      { "etcd.member_id": this.memberId, "etcd.lease_id": id.toString(16).padStart(16, "0") }, // as etcdctl prints it
    );
    try {
      propose(isSampled(span) ? encodeSpanContext(span.spanContext()) : undefined);
    } finally {
      span.end();
    }
  }

  /** Watch events handed to this member's watchers: a trace of its own per revision. */
  watchDelivery(revision: number, events: number, watchers: number, deliver: () => void): void {
    const span = startSpanRecording(
      "watch.deliver",
      { root: true },
      {
        "etcd.member_id": this.memberId,
        "etcd.revision": revision,
        "etcd.events": events,
        "etcd.synced_watchers": watchers,
      },
    );
    try {
      deliver();
    } finally {
      span.end();
    }
  }
}

function remoteParent(carried: Uint8Array): TraceContext {
  return contextWithParent(decodeSpanContext(carried));
}
