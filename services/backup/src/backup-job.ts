// One full backup, one delta and one verification, shared by the CLI, the schedule and the HTTP
// API. Both kinds of backup retry with back-off: a member that fails mid-stream is avoided on the
// next attempt (another member streams it), a store that is down is tried again; after the last
// attempt the failure is reported, and nothing incomplete is ever listed (backup-catalog.ts).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type OpenedSnapshot, openSnapshotFile, snapshotStatus } from "@etcd-ts/raft-node";
import { type TraceContext, traced } from "@etcd-ts/telemetry";
import type { Span } from "@opentelemetry/api";
import {
  BackupCatalog,
  type BackupEntry,
  type DeltaEntry,
  type Progress,
  SnapshotSourceError,
} from "./backup-catalog.js";
import type { BackupMetrics, RetryStage } from "./backup-metrics.js";
import {
  type AuthState,
  authOfSnapshot,
  type DeltaState,
  encodeState,
  sameState,
  stateOfSnapshot,
} from "./delta-state.js";
import { DirectoryStore } from "./directory-store.js";
import { MemberAccess } from "./member-access.js";
import { BackupError, StoreUnavailableError } from "./object-store.js";
import { backupId, beyondRetention, checkPolicy, type RetentionPolicy } from "./retention.js";
import { type RetryOptions, withRetries } from "./retry.js";
import {
  leaseAndAuthStatus,
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
 * as a delta: the lease and auth state (delta-state.ts), then the events of a watch on a follower
 * up to the revision it has applied. `fullStates` caches each full backup's state.
 */
export async function takeDelta(
  options: JobOptions & { fullStates?: Map<string, DeltaState> | undefined },
): Promise<DeltaResult> {
  return traced(
    "backup.delta",
    { "backup.endpoints": options.endpoints.join(","), "backup.location": options.catalog.location },
    undefined,
    (span, trace) => takeDeltaTraced(options, span, trace),
  );
}

async function takeDeltaTraced(
  options: JobOptions & { fullStates?: Map<string, DeltaState> | undefined },
  span: Span | undefined,
  trace: TraceContext | undefined,
): Promise<DeltaResult> {
  const { catalog, endpoints, access = MemberAccess.plaintext } = options;
  const started = performance.now();
  try {
    const result = await withBackoff(options, "delta backup", async (_attempt, failed) => {
      await catalog.store.check();
      const chain = await deltaChainEnd(options, trace);
      if (chain === undefined)
        throw new BackupError(`no full backup in ${catalog.location} to take a delta after`);
      const { base, previous, after } = chain;
      const source = await chooseSource(endpoints, failed, trace, access);
      const fromSource = <T>(what: string, run: () => Promise<T>): Promise<T> =>
        run().catch((err: unknown) => {
          failed.add(source.endpoint);
          if (err instanceof BackupError && !(err instanceof SnapshotSourceError)) throw err;
          throw new SnapshotSourceError(`${what} on ${source.endpoint}: ${(err as Error).message}`);
        });
      // Read before the events, at the revision the delta ends at (delta-state.ts).
      const status = await fromSource("lease and auth status", () =>
        leaseAndAuthStatus(source.endpoint, access),
      );
      const head = status.revision;
      // A member behind the last delta has nothing newer to give.
      if (head < after) return { entry: undefined, base: base.id, source };
      const state: DeltaState = { revision: head, leases: status.leases };
      if (status.auth !== undefined)
        state.auth =
          status.auth.revision === previous?.auth?.revision
            ? status.auth
            : await fromSource("auth store", () => authOfMember(source.endpoint, access, trace));
      if (head === after && previous !== undefined && sameState(state, previous))
        return { entry: undefined, base: base.id, source };
      const lines = (async function* () {
        yield Buffer.from(encodeState(state));
        if (head === after) return;
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

/** Where the newest full backup's chain of deltas ends: the next delta starts after `after`. */
export interface DeltaChainEnd {
  base: BackupEntry;
  /**
   * The state a restore would have without a new delta: the last delta's, else the full backup's
   * (undefined for a delta written before deltas carried states: then everything is read again).
   */
  previous: DeltaState | undefined;
  /** The newest revision the chain covers. */
  after: number;
}

/** undefined when the store holds no full backup. */
export async function deltaChainEnd(
  options: { catalog: BackupCatalog; fullStates?: Map<string, DeltaState> | undefined },
  trace?: TraceContext,
): Promise<DeltaChainEnd | undefined> {
  const { catalog } = options;
  const base = (await catalog.list()).at(-1);
  if (base === undefined) return undefined;
  const last = (await catalog.deltas(base.id)).at(-1);
  const previous =
    last === undefined ? await fullState(options, base.id, trace) : await catalog.deltaState(last.key);
  return { base, previous, after: last?.toRevision ?? previous!.revision };
}

/**
 * The auth store of `endpoint` with its password hashes, which no API returns: read from a
 * snapshot it streams into a temporary file (only when the auth revision moved, which is rare).
 */
async function authOfMember(
  endpoint: string,
  access: MemberAccess,
  trace: TraceContext | undefined,
): Promise<AuthState> {
  const dir = await mkdtemp(join(tmpdir(), "backup-auth-"));
  try {
    const catalog = new BackupCatalog(new DirectoryStore(dir));
    await catalog.writeFull("auth", snapshotStream(endpoint, trace, access));
    const snapshot = await openSnapshotFile(join(dir, "auth.db"));
    try {
      return authOfSnapshot(snapshot);
    } finally {
      await snapshot.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A full backup's revision, leases and auth store; `fullStates` caches them (reading means reading the snapshot). */
export async function fullState(
  options: { catalog: BackupCatalog; fullStates?: Map<string, DeltaState> | undefined },
  id: string,
  trace: TraceContext | undefined,
): Promise<DeltaState> {
  const known = options.fullStates?.get(id);
  if (known !== undefined) return known;
  const state = await traced("backup.verify", { "backup.id": id }, trace, () =>
    options.catalog.withCheckedFile(`${id}.db`, (path) => readFullState(path, id)),
  );
  options.fullStates?.set(id, state);
  return state;
}

/** The state (revision, leases, auth store) of a snapshot file. */
export async function readFullState(path: string, id: string): Promise<DeltaState> {
  return withSnapshot(path, id, (snapshot) =>
    stateOfSnapshot(snapshot, snapshotStatus(snapshot.reader).revision),
  );
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

export function readSnapshotStatus(
  path: string,
  id: string,
): Promise<{ revision: number; totalKey: number; hash: string }> {
  return withSnapshot(path, id, (snapshot) => {
    const status = snapshotStatus(snapshot.reader);
    return { revision: status.revision, totalKey: status.totalKey, hash: status.hash.toString(16) };
  });
}

async function withSnapshot<T>(path: string, id: string, use: (s: OpenedSnapshot) => T): Promise<T> {
  let snapshot: OpenedSnapshot;
  try {
    snapshot = await openSnapshotFile(path);
  } catch (err) {
    throw new BackupError(`backup ${id}: ${(err as Error).message}`);
  }
  try {
    return use(snapshot);
  } finally {
    await snapshot.close();
  }
}
