// The deterministic workload of the crash test: the request of Raft entry `index` is a pure
// function of (seed, index), so a restarted writer and the checker agree on the whole log, and
// a reference model of etcd's revision semantics says what the store must hold after any prefix.
import { compareRequest, deleteRangeRequest, putRequest } from "./request-builders.js";
import type { MvccRequest } from "./store.js";
import { CompareResult, CompareTarget } from "./types.js";

const KEYS = 24;

function keyName(i: number): string {
  return `key/${String(i).padStart(2, "0")}`;
}

/** mulberry32, seeded per entry so any entry can be generated without its predecessors. */
function random(seed: number, index: number): () => number {
  let a = (Math.imul(seed, 0x9e3779b1) ^ Math.imul(index, 0x85ebca6b)) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function workloadRequest(seed: number, index: number): MvccRequest | undefined {
  const rnd = random(seed, index);
  const pick = rnd();
  const key = () => keyName(Math.floor(rnd() * KEYS));
  if (pick < 0.45) {
    return {
      put: putRequest({
        key: key(),
        value: `v${index}`,
        lease: rnd() < 0.2 ? BigInt(1 + Math.floor(rnd() * 3)) : 0n,
      }),
    };
  }
  if (pick < 0.6) return { deleteRange: deleteRangeRequest({ key: key() }) };
  if (pick < 0.68) {
    const a = Math.floor(rnd() * KEYS);
    return {
      deleteRange: deleteRangeRequest({ key: keyName(a), rangeEnd: keyName(a + 1 + Math.floor(rnd() * 4)) }),
    };
  }
  if (pick < 0.9) {
    const a = Math.floor(rnd() * 8);
    const b = 8 + Math.floor(rnd() * 8);
    const c = 16 + Math.floor(rnd() * 8);
    return {
      txn: {
        compare: [
          compareRequest({
            key: keyName(a),
            target: CompareTarget.VERSION,
            result: CompareResult.GREATER,
            version: 1,
          }),
        ],
        success: [
          { requestPut: putRequest({ key: keyName(b), value: `t${index}` }) },
          { requestPut: putRequest({ key: keyName(c), value: `t${index}` }) },
        ],
        failure: [{ requestDeleteRange: deleteRangeRequest({ key: keyName(a) }) }],
      },
    };
  }
  if (pick < 0.95) return undefined;
  // Roughly half the revision count: usually valid, sometimes already compacted; both are
  // deterministic outcomes the model reproduces.
  return { compaction: { revision: Math.floor(index * 0.5), physical: false } };
}

export interface ModelKeyValue {
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
  lease: bigint;
}

/** etcd's revision semantics over a Map: what the store must show after a prefix of the log. */
export class ReferenceKv {
  revision = 1;
  compactRevision = -1;
  readonly kvs = new Map<string, ModelKeyValue>();

  apply(request: MvccRequest | undefined): void {
    if (request === undefined) return;
    if ("put" in request) {
      this.write((rev) =>
        this.put(request.put.key.toString(), request.put.value.toString(), request.put.lease, rev),
      );
    } else if ("deleteRange" in request) {
      const d = request.deleteRange;
      this.write((rev) => this.deleteRange(d.key.toString(), d.rangeEnd.toString(), rev));
    } else if ("txn" in request) {
      const t = request.txn;
      const c = t.compare[0]!;
      const succeeded = (this.kvs.get(c.key.toString())?.version ?? 0) > (c.version ?? 0);
      this.write((rev) => {
        let changed = false;
        for (const op of succeeded ? t.success : t.failure) {
          if (op.requestPut)
            changed =
              this.put(op.requestPut.key.toString(), op.requestPut.value.toString(), 0n, rev) || changed;
          if (op.requestDeleteRange)
            changed = this.deleteRange(op.requestDeleteRange.key.toString(), "", rev) || changed;
        }
        return changed;
      });
    } else if ("compaction" in request) {
      const rev = request.compaction.revision;
      if (rev > this.compactRevision && rev <= this.revision) this.compactRevision = rev;
    }
  }

  /** Runs a write at the next revision, which only counts if it changed something. */
  private write(body: (rev: number) => boolean): void {
    if (body(this.revision + 1)) this.revision++;
  }

  private put(key: string, value: string, lease: bigint, rev: number): boolean {
    const prev = this.kvs.get(key);
    this.kvs.set(key, {
      value,
      createRevision: prev?.createRevision ?? rev,
      modRevision: rev,
      version: (prev?.version ?? 0) + 1,
      lease,
    });
    return true;
  }

  private deleteRange(key: string, end: string, _rev: number): boolean {
    let changed = false;
    for (const k of [...this.kvs.keys()]) {
      if (end === "" ? k === key : k >= key && k < end) {
        this.kvs.delete(k);
        changed = true;
      }
    }
    return changed;
  }

  /** The live state in the shape the checker reads from the store. */
  snapshot(): string[] {
    return [...this.kvs.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${k}=${v.value} c${v.createRevision} m${v.modRevision} v${v.version} l${v.lease}`);
  }
}
