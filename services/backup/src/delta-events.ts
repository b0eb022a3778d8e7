// A delta is the watch events of a run of revisions, one JSON object per line, in the order the
// watch delivered them (revision, then the order of changes inside a revision's txn):
//   {"rev":12,"type":"put","key":"<base64>","value":"<base64>","create":10,"version":3,"lease":"0",
//    "prev":{"value":"<base64>","create":10,"mod":11,"version":2,"lease":"0"}}
// "prev" is the key's previous value (the watch's prev_kv), absent when the key was new.
// Revisions are JSON numbers (exact up to 2^53); lease IDs are int64, so decimal strings.
import { etcdserverpb, mvccpb } from "@etcd-ts/api";
import { BackupError } from "./object-store.js";

export interface DeltaEvent {
  revision: number;
  type: "put" | "delete";
  key: Buffer;
  value: Buffer;
  createRevision: number;
  version: number;
  lease: bigint;
  prev?: { value: Buffer; createRevision: number; modRevision: number; version: number; lease: bigint };
}

export function encodeEvent(e: mvccpb.Event): string {
  const kv = e.kv;
  if (kv === undefined) throw new BackupError("watch event without a key-value");
  const line: Record<string, unknown> = {
    rev: Number(kv.modRevision),
    type: e.type === mvccpb.Event_EventType.DELETE ? "delete" : "put",
    key: kv.key.toString("base64"),
    value: kv.value.toString("base64"),
    create: Number(kv.createRevision),
    version: Number(kv.version),
    lease: kv.lease.toString(),
  };
  if (e.prevKv !== undefined) {
    line.prev = {
      value: e.prevKv.value.toString("base64"),
      create: Number(e.prevKv.createRevision),
      mod: Number(e.prevKv.modRevision),
      version: Number(e.prevKv.version),
      lease: e.prevKv.lease.toString(),
    };
  }
  return `${JSON.stringify(line)}\n`;
}

export function decodeEvent(line: string): DeltaEvent {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new BackupError(`delta line is not JSON: ${line.slice(0, 80)}`);
  }
  const int = (v: unknown, name: string): number => {
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
      throw new BackupError(`delta line has a bad "${name}": ${line.slice(0, 80)}`);
    return v;
  };
  if (o.type !== "put" && o.type !== "delete")
    throw new BackupError(`delta line has a bad "type": ${line.slice(0, 80)}`);
  const event: DeltaEvent = {
    revision: int(o.rev, "rev"),
    type: o.type,
    key: Buffer.from(String(o.key ?? ""), "base64"),
    value: Buffer.from(String(o.value ?? ""), "base64"),
    createRevision: int(o.create, "create"),
    version: int(o.version, "version"),
    lease: BigInt(String(o.lease ?? "0")),
  };
  if (event.key.length === 0) throw new BackupError(`delta line has an empty key: ${line.slice(0, 80)}`);
  const p = o.prev as Record<string, unknown> | undefined;
  if (p !== undefined) {
    event.prev = {
      value: Buffer.from(String(p.value ?? ""), "base64"),
      createRevision: int(p.create, "prev.create"),
      modRevision: int(p.mod, "prev.mod"),
      version: int(p.version, "prev.version"),
      lease: BigInt(String(p.lease ?? "0")),
    };
  }
  return event;
}

/** One revision's changes, as the watch gave them. */
export interface RevisionChanges {
  revision: number;
  events: DeltaEvent[];
}

/**
 * Groups events by revision and keeps those in (after, upTo], checking the history has no hole:
 * every revision in between is a write that changed at least one key, so each must be present.
 */
export async function* revisionsBetween(
  events: AsyncIterable<DeltaEvent> | Iterable<DeltaEvent>,
  after: number,
  upTo: number,
): AsyncGenerator<RevisionChanges> {
  let current: RevisionChanges | undefined;
  let expected = after + 1;
  for await (const e of events) {
    if (e.revision <= after) continue;
    if (e.revision > upTo) break;
    if (current !== undefined && e.revision === current.revision) {
      current.events.push(e);
      continue;
    }
    if (current !== undefined) yield current;
    if (e.revision < expected)
      throw new BackupError(`deltas are out of order: revision ${e.revision} after ${expected - 1}`);
    if (e.revision !== expected)
      throw new BackupError(`deltas have a gap: revision ${expected} is missing (next is ${e.revision})`);
    current = { revision: e.revision, events: [e] };
    expected = e.revision + 1;
  }
  if (current !== undefined) yield current;
  if (expected <= upTo) throw new BackupError(`deltas end at revision ${expected - 1}, before ${upTo}`);
}

/**
 * The txn that makes one revision again: its puts and deletes in the watch's order, so a key's
 * sub-revision inside the revision is the original's too. `keepLease` says whether a lease still
 * exists where the txn is applied (a put naming a missing lease would fail the whole txn).
 */
export function replayTxn(
  changes: RevisionChanges,
  keepLease: (lease: bigint) => boolean,
): etcdserverpb.TxnRequest {
  return etcdserverpb.TxnRequest.fromPartial({
    success: changes.events.map((e) =>
      e.type === "put"
        ? {
            requestPut: {
              key: e.key,
              value: e.value,
              lease: e.lease !== 0n && keepLease(e.lease) ? e.lease : 0n,
            },
          }
        : { requestDeleteRange: { key: e.key } },
    ),
  });
}
