// One full backup, one delta and one verification, shared by the CLI, the schedule and the HTTP
// API. Both kinds of backup retry with back-off: a member that fails mid-stream is avoided on the
// next attempt (another member streams it), a store that is down is tried again; after the last
// attempt the failure is reported, and nothing incomplete is ever listed (backup-catalog.ts).
import { openSnapshotFile, snapshotStatus } from "@etcd-ts/raft-node";
import { type TraceContext, traced } from "@etcd-ts/telemetry";
import type { Span } from "@opentelemetry/api";
import type { BackupCatalog, BackupEntry, DeltaEntry, Progress } from "./backup-catalog.js";
import { SnapshotSourceError } from "./backup-catalog.js";
import type { BackupMetrics, RetryStage } from "./backup-metrics.js";
import { MemberAccess } from "./member-access.js";
import { BackupError, StoreUnavailableError } from "./object-store.js";
import { backupId, beyondRetention, checkPolicy, type RetentionPolicy } from "./retention.js";
import { type RetryOptions, withRetries } from "./retry.js";
import {
  type MemberStatus,
  memberStatus,
  pickSource,
  snapshotStream,
  watchEvents,
} from "./snapshot-source.js";

export interface BackupResult {
  entry: BackupEntry;
  source: MemberStatus;
  /** Backups deleted by the retention policy. */
  removed: string[];
  seconds: number;
  attempts: number;
}

export interface DeltaResult {
  /** undefined: nothing was written since the last backup, so no delta was stored. */
  entry: DeltaEntry | undefined;
  base: string;
  source: MemberStatus;
  seconds: number;
}

export type RetrySettings = Pick<RetryOptions, "attempts" | "baseDelayMs" | "maxDelayMs" | "random">;

export const DEFAULT_RETRIES: RetrySettings = { attempts: 5, baseDelayMs: 1000, maxDelayMs: 30_000 };

interface JobOptions {
  catalog: BackupCatalog;
  endpoints: readonly string[];
  /** TLS and the user to dial members with; plaintext, no user when undefined. */
  access?: MemberAccess | undefined;
  retry?: RetrySettings | undefined;
  /** Retries and failures, one line each. */
  log?: ((line: string) => void) | undefined;
  metrics?: BackupMetrics | undefined;
}

/** Which part failed: the member (retry elsewhere), the store (retry later), or neither (final). */
function stageOf(err: unknown): RetryStage | undefined {
  if (err instanceof SnapshotSourceError) return "source";
  if (err instanceof StoreUnavailableError) return "store";
  // Anything else (a missing bucket, a bad id, a bug) would fail the same way again.
  return undefined;
}

async function withBackoff<T>(
  options: JobOptions,
  what: string,
  run: (attempt: number, failedSources: Set<string>) => Promise<T>,
): Promise<T> {
  const failedSources = new Set<string>();
  const settings = options.retry ?? DEFAULT_RETRIES;
  const { attempts } = settings;
  return withRetries((attempt) => run(attempt, failedSources), {
    ...settings,
    retryable: (err) => stageOf(err) !== undefined,
    onRetry(err, attempt, delayMs) {
      const stage = stageOf(err)!;
      options.metrics?.retried(stage);
      options.log?.(
        `${what}: attempt ${attempt} of ${attempts} failed (${stage}): ${(err as Error).message}; retrying in ${delayMs} ms`,
      );
    },
  });
}

async function chooseSource(
  endpoints: readonly string[],
  avoid: ReadonlySet<string>,
  trace: TraceContext | undefined,
  access: MemberAccess,
): Promise<MemberStatus> {
  const source = await traced("backup.pick_source", {}, trace, async (pick) => {
    const chosen = pickSource(await Promise.all(endpoints.map((e) => memberStatus(e, access))), avoid);
    pick?.setAttribute("backup.source", chosen?.endpoint ?? "none");
    return chosen;
  });
  if (source === undefined)
    throw new SnapshotSourceError(`no member answered with a leader: ${endpoints.join(", ")}`);
  // Log in before the stream starts: refused credentials end the job at once, unretried.
  await access.metadata(source.endpoint);
  return source;
}

type TakeBackupOptions = JobOptions & {
  retention?: RetentionPolicy | undefined;
  onProgress?: (p: Progress, elapsedMs: number) => void;
};

/** Pulls a snapshot from a follower (the leader if none answers) into the store, then applies retention. */
export async function takeBackup(options: TakeBackupOptions): Promise<BackupResult> {
  return traced(
    "backup.take",
    { "backup.endpoints": options.endpoints.join(","), "backup.location": options.catalog.location },
    undefined,
    (span, trace) => takeBackupTraced(options, span, trace),
  );
}

/** takeBackup inside its backup.take span: each attempt's pick_source and snapshot, then retention. */
async function takeBackupTraced(
  options: TakeBackupOptions,
  span: Span | undefined,
  trace: TraceContext | undefined,
): Promise<BackupResult> {
  const { catalog, endpoints, access = MemberAccess.plaintext } = options;
  const retention = options.retention ?? {};
  checkPolicy(retention);
  const started = performance.now();
  try {
    const { entry, source, attempts } = await withBackoff(options, "full backup", async (attempt, failed) => {
      await catalog.store.check();
      const source = await chooseSource(endpoints, failed, trace, access);
      const streamStarted = performance.now();
      try {
        const entry = await traced(
          "backup.snapshot",
          { "backup.source": source.endpoint, "backup.attempt": attempt },
          trace,
          async (snap, snapTrace) => {
            const written = await catalog.writeFull(
              backupId(new Date()),
              snapshotStream(source.endpoint, snapTrace, access),
              (p) => options.onProgress?.(p, performance.now() - streamStarted),
            );
            snap?.setAttribute("backup.bytes", written.size);
            return written;
          },
        );
        return { entry, source, attempts: attempt };
      } catch (err) {
        if (err instanceof SnapshotSourceError) {
          failed.add(source.endpoint);
          throw new SnapshotSourceError(`snapshot from ${source.endpoint}: ${err.message}`);
        }
        throw err;
      }
    });
    const seconds = (performance.now() - started) / 1000;
    options.metrics?.succeeded("full", entry.size, seconds);
    span?.setAttributes({ "backup.id": entry.id, "backup.attempts": attempts });
    const applyRetention = async (retentionSpan?: Span) => {
      const removed = beyondRetention(
        (await catalog.list()).map((b) => b.id),
        retention,
      );
      for (const old of removed) await catalog.remove(old);
      retentionSpan?.setAttribute("backup.removed", removed.length);
      return removed;
    };
    const rules = Object.entries({
      "backup.keep_last": retention.keepLast,
      "backup.keep_daily": retention.keepDaily,
      "backup.keep_weekly": retention.keepWeekly,
    }).filter((rule): rule is [string, number] => rule[1] !== undefined);
    // Spanned only when a rule can delete something (as before: --keep-last), however many rules.
    const removed =
      rules.length === 0
        ? await applyRetention()
        : await traced("backup.retention", Object.fromEntries(rules), trace, (r) => applyRetention(r));
    return { entry, source, removed, seconds, attempts };
  } catch (err) {
    options.metrics?.failed("full");
    throw err;
  }
}

/**
 * Stores the changes since the newest full backup's last delta (or since the full backup itself)
 * as a delta, read from a watch on a follower up to the revision it has applied. `fullRevisions`
 * caches each full backup's revision (reading it means reading the snapshot).
 */
export async function takeDelta(
  options: JobOptions & { fullRevisions?: Map<string, number> | undefined },
): Promise<DeltaResult> {
  return traced(
    "backup.delta",
    { "backup.endpoints": options.endpoints.join(","), "backup.location": options.catalog.location },
    undefined,
    (span, trace) => takeDeltaTraced(options, span, trace),
  );
}

async function takeDeltaTraced(
  options: JobOptions & { fullRevisions?: Map<string, number> | undefined },
  span: Span | undefined,
  trace: TraceContext | undefined,
): Promise<DeltaResult> {
  const { catalog, endpoints, access = MemberAccess.plaintext } = options;
  const started = performance.now();
  try {
    const result = await withBackoff(options, "delta backup", async (_attempt, failed) => {
      await catalog.store.check();
      const base = (await catalog.list()).at(-1);
      if (base === undefined)
        throw new BackupError(`no full backup in ${catalog.location} to take a delta after`);
      const after =
        (await catalog.deltas(base.id)).at(-1)?.toRevision ?? (await fullRevision(options, base.id, trace));
      const source = await chooseSource(endpoints, failed, trace, access);
      const head = source.revision ?? 0;
      if (head <= after) return { entry: undefined, base: base.id, source };
      const lines = (async function* () {
        try {
          yield* watchEvents(source.endpoint, after + 1, head, { access });
        } catch (err) {
          failed.add(source.endpoint);
          if (err instanceof BackupError) throw err;
          throw new SnapshotSourceError(`watch on ${source.endpoint}: ${(err as Error).message}`);
        }
      })();
      return { entry: await catalog.writeDelta(base.id, after + 1, head, lines), base: base.id, source };
    });
    const seconds = (performance.now() - started) / 1000;
    if (result.entry !== undefined) options.metrics?.succeeded("delta", result.entry.size, seconds);
    span?.setAttributes({
      "backup.base": result.base,
      "backup.source": result.source.endpoint,
      "backup.bytes": result.entry?.size ?? 0,
    });
    return { ...result, seconds };
  } catch (err) {
    options.metrics?.failed("delta");
    throw err;
  }
}

async function fullRevision(
  options: { catalog: BackupCatalog; fullRevisions?: Map<string, number> | undefined },
  id: string,
  trace: TraceContext | undefined,
): Promise<number> {
  const known = options.fullRevisions?.get(id);
  if (known !== undefined) return known;
  const { revision } = await verifyBackup(options.catalog, id, trace);
  options.fullRevisions?.set(id, revision);
  return revision;
}

export interface Verified extends BackupEntry {
  revision: number;
  totalKey: number;
  /** etcdctl snapshot status's hash. */
  hash: string;
}

/** The stored sha256, then the snapshot's own trailer, bbolt structure and etcd buckets. */
export function verifyBackup(catalog: BackupCatalog, id: string, parent?: TraceContext): Promise<Verified> {
  return traced("backup.verify", { "backup.id": id }, parent, () =>
    catalog.withCheckedFile(`${id}.db`, async (path, checked) => ({
      id,
      ...checked,
      ...(await readSnapshotStatus(path, id)),
    })),
  );
}

export async function readSnapshotStatus(
  path: string,
  id: string,
): Promise<{ revision: number; totalKey: number; hash: string }> {
  let snapshot: Awaited<ReturnType<typeof openSnapshotFile>>;
  try {
    snapshot = await openSnapshotFile(path);
  } catch (err) {
    throw new BackupError(`backup ${id}: ${(err as Error).message}`);
  }
  try {
    const status = snapshotStatus(snapshot.reader);
    return { revision: status.revision, totalKey: status.totalKey, hash: status.hash.toString(16) };
  } finally {
    await snapshot.close();
  }
}
