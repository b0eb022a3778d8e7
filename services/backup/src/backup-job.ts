// One backup and one verification, shared by the CLI, the schedule and the HTTP API.
import { openSnapshotFile, snapshotStatus } from "@etcd-ts/raft-node";
import type { TraceContext } from "@etcd-ts/telemetry";
import type { Span } from "@opentelemetry/api";
import { traced } from "./backup-tracing.js";
import {
  type BackupEntry,
  BackupError,
  beyondRetention,
  type DirectoryStore,
  type Progress,
} from "./directory-store.js";
import { type MemberStatus, memberStatus, pickSource, snapshotStream } from "./snapshot-source.js";

export interface BackupResult {
  entry: BackupEntry;
  source: MemberStatus;
  /** Backups deleted by the keep-last policy. */
  removed: string[];
  seconds: number;
}

export function backupId(now: Date): string {
  return now.toISOString().replaceAll(":", "-").replace(".", "-");
}

/** Pulls a snapshot from a follower (the leader if none answers) into the store. */
export async function takeBackup(options: {
  store: DirectoryStore;
  endpoints: readonly string[];
  keepLast?: number | undefined;
  onProgress?: (p: Progress, elapsedMs: number) => void;
}): Promise<BackupResult> {
  return traced(
    "backup.take",
    { "backup.endpoints": options.endpoints.join(",") },
    undefined,
    (span, trace) => takeBackupTraced(options, span, trace),
  );
}

async function takeBackupTraced(
  options: Parameters<typeof takeBackup>[0],
  span: Span | undefined,
  trace: TraceContext | undefined,
): Promise<BackupResult> {
  const { store, endpoints, keepLast } = options;
  if (keepLast !== undefined) beyondRetention([], keepLast);
  const source = await traced("backup.pick_source", {}, trace, async (pick) => {
    const chosen = pickSource(await Promise.all(endpoints.map((e) => memberStatus(e))));
    pick?.setAttribute("backup.source", chosen?.endpoint ?? "none");
    return chosen;
  });
  if (source === undefined)
    throw new BackupError(`no member answered with a leader: ${endpoints.join(", ")}`);
  const started = performance.now();
  let entry: BackupEntry;
  try {
    entry = await traced(
      "backup.snapshot",
      { "backup.source": source.endpoint },
      trace,
      async (snap, snapTrace) => {
        const written = await store.write(
          backupId(new Date()),
          snapshotStream(source.endpoint, snapTrace),
          (p) => options.onProgress?.(p, performance.now() - started),
        );
        snap?.setAttribute("backup.bytes", written.size);
        return written;
      },
    );
  } catch (err) {
    if (err instanceof BackupError) throw err;
    throw new BackupError(`snapshot from ${source.endpoint} failed: ${(err as Error).message}`);
  }
  const seconds = (performance.now() - started) / 1000;
  span?.setAttribute("backup.id", entry.id);
  const removed: string[] = [];
  if (keepLast !== undefined) {
    await traced("backup.retention", { "backup.keep_last": keepLast }, trace, async (retention) => {
      for (const old of beyondRetention(
        (await store.list()).map((b) => b.id),
        keepLast,
      )) {
        await store.remove(old);
        removed.push(old);
      }
      retention?.setAttribute("backup.removed", removed.length);
    });
  }
  return { entry, source, removed, seconds };
}

export interface Verified extends BackupEntry {
  revision: number;
  totalKey: number;
  /** etcdctl snapshot status's hash. */
  hash: string;
}

/** The stored sha256, then the snapshot's own trailer, bbolt structure and etcd buckets. */
export function verifyBackup(store: DirectoryStore, id: string): Promise<Verified> {
  return traced("backup.verify", { "backup.id": id }, undefined, () => verifyStored(store, id));
}

async function verifyStored(store: DirectoryStore, id: string): Promise<Verified> {
  const entry = await store.checkHash(id);
  let snapshot: Awaited<ReturnType<typeof openSnapshotFile>>;
  try {
    snapshot = await openSnapshotFile(store.path(id));
  } catch (err) {
    throw new BackupError(`backup ${id}: ${(err as Error).message}`);
  }
  try {
    const status = snapshotStatus(snapshot.reader);
    return { ...entry, revision: status.revision, totalKey: status.totalKey, hash: status.hash.toString(16) };
  } finally {
    await snapshot.close();
  }
}
