// A small in-memory revisioned key-value log with etcd's revision rules: the EventHistory used
// by the watch tests and the fan-out benchmark, where a RocksDB-backed mvcc store would only add
// noise. Each write is one revision; events carry etcd's create/mod revision and version.
import { EtcdError } from "@etcd-ts/api";
import { type Event, EventType, type KeyValue } from "./events.js";
import type { EventHistory, HistoryRead, HistoryReadOptions } from "./watchable-store.js";

export type LogOperation =
  | { op: "put"; key: string | Buffer; value: string | Buffer; lease?: bigint }
  | { op: "delete"; key: string | Buffer };

export class MemoryEventLog implements EventHistory {
  private readonly revisions: { revision: number; events: Event[] }[] = [];
  private readonly live = new Map<string, KeyValue>();
  private current = 0;
  private compacted = 0;
  /** Called with each new revision's events, as mvcc's observer would be. */
  onApply: ((revision: number, events: Event[]) => void) | null = null;
  /** Awaited inside every history read, so a test can hold a read open while writes go on. */
  beforeRead: (() => Promise<void>) | null = null;

  get currentRevision(): number {
    return this.current;
  }

  compactedRevision(): number {
    return this.compacted;
  }

  put(key: string | Buffer, value: string | Buffer, lease = 0n): Event[] {
    return this.txn([{ op: "put", key, value, lease }]);
  }

  delete(key: string | Buffer): Event[] {
    return this.txn([{ op: "delete", key }]);
  }

  /** Applies operations as one transaction: one revision, one event per change. */
  txn(operations: LogOperation[]): Event[] {
    const revision = this.current + 1;
    const events: Event[] = [];
    for (const operation of operations) {
      const key = Buffer.from(operation.key);
      const id = key.toString("latin1");
      const previous = this.live.get(id);
      if (operation.op === "put") {
        const kv: KeyValue = {
          key,
          createRevision: previous?.createRevision ?? revision,
          modRevision: revision,
          version: (previous?.version ?? 0) + 1,
          value: Buffer.from(operation.value),
          lease: operation.lease ?? 0n,
        };
        this.live.set(id, kv);
        events.push(
          previous === undefined
            ? { type: EventType.PUT, kv }
            : { type: EventType.PUT, kv, prevKv: previous },
        );
      } else if (previous !== undefined) {
        this.live.delete(id);
        const kv: KeyValue = {
          key,
          createRevision: 0,
          modRevision: revision,
          version: 0,
          value: Buffer.alloc(0),
          lease: 0n,
        };
        events.push({ type: EventType.DELETE, kv, prevKv: previous });
      }
    }
    if (events.length === 0) return events;
    this.current = revision;
    this.revisions.push({ revision, events });
    this.onApply?.(revision, events);
    return events;
  }

  compact(revision: number): void {
    this.compacted = Math.max(this.compacted, revision);
    while (this.revisions.length > 0 && this.revisions[0].revision < this.compacted) this.revisions.shift();
  }

  async eventsBetween(
    fromRevision: number,
    toRevision: number,
    options: HistoryReadOptions,
  ): Promise<HistoryRead> {
    if (this.beforeRead !== null) await this.beforeRead();
    if (fromRevision < this.compacted) throw new EtcdError("Compacted");
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    const result: Event[] = [];
    for (const { revision, events } of this.revisions) {
      if (revision < fromRevision) continue;
      if (revision > toRevision) break;
      if (result.length >= limit) return { events: result, nextRevision: revision };
      for (const event of events) {
        if (options.matches !== undefined && !options.matches(event.kv.key.toString("latin1"))) continue;
        result.push(
          options.withPrevKv || event.prevKv === undefined ? event : { type: event.type, kv: event.kv },
        );
      }
    }
    return { events: result, nextRevision: toRevision + 1 };
  }
}
