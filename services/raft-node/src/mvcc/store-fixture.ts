// Test support: stores in fresh temporary directories, and an applier that numbers Raft
// entries itself and turns failed results back into thrown errors.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deleteRangeRequest, putRequest, rangeRequest, txnRequest } from "./request-builders.js";
import { type MvccRequest, MvccStore, type MvccStoreOptions } from "./store.js";
import type {
  AlarmResponse,
  CompactionResponse,
  DeleteRangeRequest,
  DeleteRangeResponse,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  TxnRequest,
  TxnResponse,
} from "./types.js";

export async function tempDir(prefix = "mvcc-"): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/** Runs `body` with a store in a fresh directory, closing and removing it afterwards. */
export async function withStore<T>(
  body: (store: MvccStore, kv: Applier, dir: string) => Promise<T>,
  options: MvccStoreOptions = {},
): Promise<T> {
  const dir = await tempDir();
  const store = await MvccStore.open(join(dir.path, "db"), options);
  try {
    return await body(store, new Applier(store), join(dir.path, "db"));
  } finally {
    await store.close().catch(() => undefined);
    await dir.remove();
  }
}

type Bytes = Buffer | string;

export class Applier {
  constructor(
    readonly store: MvccStore,
    private readonly term = 1,
  ) {}

  /** Applies the request as the next Raft entry (callers await one request at a time). */
  async request(request: MvccRequest): Promise<unknown> {
    const result = await this.store.apply({ index: this.store.appliedIndex + 1, term: this.term, request });
    if (result.status === "failed") throw result.error;
    if (result.status === "skipped") throw new Error("entry unexpectedly skipped");
    return result.response;
  }

  put(key: Bytes, value: Bytes, extra: Partial<PutRequest> = {}): Promise<PutResponse> {
    return this.request({ put: putRequest({ ...extra, key, value }) }) as Promise<PutResponse>;
  }

  del(key: Bytes, rangeEnd?: Bytes, extra: Partial<DeleteRangeRequest> = {}): Promise<DeleteRangeResponse> {
    return this.request({
      deleteRange: deleteRangeRequest({ ...extra, key, rangeEnd }),
    }) as Promise<DeleteRangeResponse>;
  }

  txn(t: Partial<TxnRequest>): Promise<TxnResponse> {
    return this.request({ txn: txnRequest(t) }) as Promise<TxnResponse>;
  }

  compact(revision: number): Promise<CompactionResponse> {
    return this.request({ compaction: { revision, physical: false } }) as Promise<CompactionResponse>;
  }

  alarm(action: number, alarm: number, memberID = 1n): Promise<AlarmResponse> {
    return this.request({ alarm: { action, alarm, memberID } }) as Promise<AlarmResponse>;
  }

  get(
    key: Bytes,
    extra: Omit<Partial<RangeRequest>, "key" | "rangeEnd"> & { rangeEnd?: Bytes } = {},
  ): Promise<RangeResponse> {
    return this.store.range(rangeRequest({ ...extra, key }));
  }
}

/** Keys and values of a range response as strings, for compact assertions. */
export function pairs(r: RangeResponse): string[] {
  return r.kvs.map((kv) => `${kv.key.toString()}=${kv.value.toString()}`);
}

export function keys(r: RangeResponse): string[] {
  return r.kvs.map((kv) => kv.key.toString());
}
