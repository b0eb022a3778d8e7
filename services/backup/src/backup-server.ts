// `backup serve`: full backups on a cron schedule (croner; seconds field allowed), deltas between
// them on another, and an HTTP API on loopback by default:
//   GET  /backups              -> 200 [{id, size, sha256}]
//   POST /backups              -> 201 {id, size, sha256, source, removed, seconds, attempts}; 409 while one runs
//   POST /deltas               -> 201 {key, base, fromRevision, toRevision, size, source} | 200 {base, delta: null}
//   GET  /backups/ID/verify    -> 200 {id, size, sha256, revision, totalKey, hash}; 404; 422 {error}
//   GET  /metrics              -> Prometheus text format (backup-metrics.ts + process metrics)
// A scheduled run that fails (after its retries) is logged and counted, and the schedule goes on;
// runs never overlap, a full backup and a delta included.
// With NATS (natsUrl): every full backup publishes backup.started then backup.completed (with
// the snapshot's revision, read back from the store) or backup.failed, and a request on
// backup.now takes one (the reply says how it went); every stored delta publishes
// backup.completed (kind "delta"), a failed one backup.failed.
// Deltas need the revisions after the last one: when a compaction removed them, a scheduled
// delta takes a full backup instead (trigger "compaction"), and with NATS and deltas scheduled
// a member's compaction event past the end of the chain does so at once.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  ANY_CLUSTER,
  type BackupCompleted,
  type BackupKind,
  type BackupTrigger,
  type Compacted,
  ControlPlane,
  registerControlPlaneMetrics,
  topics,
} from "@etcd-ts/events";
import { writeMetrics } from "@etcd-ts/telemetry";
import { Cron } from "croner";
import type { BackupCatalog } from "./backup-catalog.js";
import {
  type BackupResult,
  type DeltaResult,
  deltaChainEnd,
  fullState,
  type RetrySettings,
  takeBackup,
  takeDelta,
  verifyBackup,
} from "./backup-job.js";
import { BackupMetrics } from "./backup-metrics.js";
import type { DeltaState } from "./delta-state.js";
import type { MemberAccess } from "./member-access.js";
import { BackupError } from "./object-store.js";
import { backupTime, type RetentionPolicy } from "./retention.js";
import { CompactedAwayError } from "./snapshot-source.js";

export interface BackupServerOptions {
  catalog: BackupCatalog;
  endpoints: string[];
  /** TLS and the user to dial members with; plaintext, no user when undefined. */
  access?: MemberAccess | undefined;
  retention?: RetentionPolicy | undefined;
  retry?: RetrySettings | undefined;
  /** Cron expressions; no schedule when undefined. */
  cron?: string | undefined;
  deltaCron?: string | undefined;
  host: string;
  port: number;
  /** nats:// URLs for backup events and backup.now requests; none when undefined or empty. */
  natsUrl?: string | undefined;
  log(line: string): void;
  /** A registry of the caller's; a new one with the process metrics otherwise. */
  metrics?: BackupMetrics;
}

export interface BackupServer {
  url: string;
  metrics: BackupMetrics;
  close(): Promise<void>;
}

export async function startBackupServer(options: BackupServerOptions): Promise<BackupServer> {
  const { catalog, log } = options;
  // A store that cannot be used (a bucket that does not exist) stops the service at once.
  await catalog.store.check();
  const metrics = options.metrics ?? new BackupMetrics();
  const newest = (await catalog.list()).at(-1);
  if (newest !== undefined) {
    try {
      metrics.knownFull(backupTime(newest.id));
    } catch {
      // An id that is not a time (copied in by hand) says nothing about age.
    }
  }
  const fullStates = new Map<string, DeltaState>();
  const job = {
    catalog,
    endpoints: options.endpoints,
    access: options.access,
    retry: options.retry,
    log,
    metrics,
  };

  let running: Promise<unknown> | undefined;
  const exclusive = <T>(run: () => Promise<T>): Promise<T> => {
    if (running !== undefined) throw new BackupError("a backup is already running");
    const p = run();
    running = p;
    return p.finally(() => {
      running = undefined;
    });
  };
  const describeFull = (r: BackupResult) => ({
    ...r.entry,
    source: r.source.endpoint,
    removed: r.removed,
    seconds: r.seconds,
    attempts: r.attempts,
  });
  const completed = (r: BackupResult, trigger: BackupTrigger, revision?: number): BackupCompleted => ({
    trigger,
    kind: "full",
    ...describeFull(r),
    ...(revision === undefined ? {} : { revision }),
    at: Date.now(),
  });
  /**
   * The snapshot's revision, read back from the store (the member does not say it): the next
   * delta needs it too, so it is cached for it. A backup that cannot be read back is still stored.
   */
  const revisionOf = async (id: string): Promise<number | undefined> => {
    try {
      return (await fullState({ catalog, fullStates }, id, undefined)).revision;
    } catch (err) {
      log(`backup ${id}: reading its revision back failed: ${(err as Error).message}`);
      return undefined;
    }
  };
  // Started once the store and the schedules are known good (below), so a failed start leaks no connection.
  let plane: ControlPlane | undefined;
  /** The cluster the last backup came from (hex): compactions of other clusters are not ours. */
  let clusterId: string | undefined;
  /** Runs one backup, publishing backup.failed if it fails after its retries. */
  const failureReported = async <T>(kind: BackupKind, trigger: BackupTrigger, run: () => Promise<T>) => {
    try {
      return await run();
    } catch (err) {
      plane?.publish(topics.backupFailed, { trigger, kind, error: (err as Error).message, at: Date.now() });
      throw err;
    }
  };
  const full = (trigger: BackupTrigger) =>
    exclusive(() => {
      plane?.publish(topics.backupStarted, { trigger, kind: "full", at: Date.now() });
      return failureReported("full", trigger, async () => {
        const result = await takeBackup({ ...job, retention: options.retention });
        clusterId = result.source.clusterId ?? clusterId;
        const event = completed(
          result,
          trigger,
          plane === undefined ? undefined : await revisionOf(result.entry.id),
        );
        plane?.publish(topics.backupCompleted, event);
        return { result, event };
      });
    });
  const delta = (trigger: BackupTrigger) =>
    exclusive(() =>
      failureReported("delta", trigger, async () => {
        const r = await takeDelta({ ...job, fullStates });
        clusterId = r.source.clusterId ?? clusterId;
        if (r.entry !== undefined)
          plane?.publish(topics.backupCompleted, {
            trigger,
            kind: "delta",
            id: r.entry.key,
            base: r.base,
            revision: r.entry.toRevision,
            fromRevision: r.entry.fromRevision,
            size: r.entry.size,
            sha256: r.entry.sha256 ?? "",
            source: r.source.endpoint,
            seconds: r.seconds,
            removed: [],
            at: Date.now(),
          });
        return r;
      }),
    );
  const compactionAnnounced = async (event: Compacted) => {
    if (clusterId !== undefined && event.clusterId !== clusterId) return;
    if (running !== undefined) return; // A delta now running fails and the schedule restarts the chain.
    try {
      const chain = await deltaChainEnd({ catalog, fullStates });
      // Compacting at R removes the revisions below R; the next delta starts at after + 1.
      if (chain === undefined || event.revision <= chain.after + 1 || running !== undefined) return;
      log(
        `restarted deltas: ${JSON.stringify(await restartChain(`compaction at revision ${event.revision} passed revision ${chain.after + 1}, where the next delta starts`))}`,
      );
    } catch (err) {
      log(`full backup after compaction at revision ${event.revision} failed: ${(err as Error).message}`);
    }
  };
  const describeDelta = (r: DeltaResult) =>
    r.entry === undefined ? { base: r.base, delta: null } : { ...r.entry, source: r.source.endpoint };

  const schedules: Cron[] = [];
  const schedule = (
    flag: string,
    expression: string | undefined,
    run: () => Promise<unknown>,
    what: string,
    skip: () => Promise<string | undefined> = async () => undefined,
  ) => {
    if (expression === undefined) return;
    try {
      schedules.push(
        new Cron(expression, { protect: true }, async () => {
          try {
            // A run still going (the other kind, or one on demand) or nothing to do is not a failure.
            const why = running !== undefined ? "a backup is already running" : await skip();
            if (why !== undefined) return log(`scheduled ${what} skipped: ${why}`);
            log(`scheduled ${what}: ${JSON.stringify(await run())}`);
          } catch (err) {
            log(`scheduled ${what} failed: ${(err as Error).message}`);
          }
        }),
      );
    } catch (err) {
      throw new BackupError(`invalid ${flag} "${expression}": ${(err as Error).message}`);
    }
  };
  schedule("--cron", options.cron, async () => describeFull((await full("schedule")).result), "backup");
  /**
   * A full backup in place of a delta that cannot be taken: the revisions after the last delta
   * were compacted away, so the chain of deltas has to start again from a new full backup.
   */
  const restartChain = async (why: string) => {
    log(`${why}: taking a full backup to start the deltas again`);
    return describeFull((await full("compaction")).result);
  };
  const scheduledDelta = async () => {
    try {
      return describeDelta(await delta("schedule"));
    } catch (err) {
      if (!(err instanceof CompactedAwayError)) throw err;
      return restartChain(`delta from revision ${err.from}: compacted at ${err.compactRevision}`);
    }
  };
  schedule("--delta-cron", options.deltaCron, scheduledDelta, "delta", async () =>
    (await catalog.list()).length === 0 ? "no full backup yet" : undefined,
  );

  if (options.natsUrl !== undefined && options.natsUrl !== "") {
    plane = ControlPlane.start({
      url: options.natsUrl,
      name: "etcd-ts backup",
      log: (level, message, details) =>
        log(`${level}: ${message}${details === undefined ? "" : ` ${JSON.stringify(details)}`}`),
    });
    registerControlPlaneMetrics(metrics.registry, plane);
    // With deltas scheduled, a compaction past the end of the chain would make the next delta
    // fail: the chain starts again from a full backup as soon as the compaction is announced,
    // not at the next delta's tick. Without NATS the scheduled delta finds out (scheduledDelta).
    if (options.deltaCron !== undefined)
      plane.subscribe(topics.compaction(ANY_CLUSTER), (event) => void compactionAnnounced(event));
    plane.reply(
      topics.backupNow,
      async () => {
        try {
          return { ok: true as const, backup: (await full("nats")).event };
        } catch (err) {
          return { ok: false as const, error: (err as Error).message };
        }
      },
      () => ({ ok: false as const, error: "backup.now takes a JSON object (or an empty body)" }),
    );
  }

  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(`${JSON.stringify(body)}\n`);
  };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? "/", "http://backup").pathname;
    if (path === "/metrics" && req.method === "GET") return writeMetrics(metrics.registry, res);
    if (path === "/backups" && req.method === "GET") return send(res, 200, await catalog.list());
    if ((path === "/backups" || path === "/deltas") && req.method === "POST") {
      if (running !== undefined) return send(res, 409, { error: "a backup is already running" });
      try {
        if (path === "/backups") return send(res, 201, describeFull((await full("http")).result));
        const r = await delta("http");
        return send(res, r.entry === undefined ? 200 : 201, describeDelta(r));
      } catch (err) {
        return send(res, 502, { error: (err as Error).message });
      }
    }
    const verify = /^\/backups\/([A-Za-z0-9_-]+)\/verify$/.exec(path);
    if (verify && req.method === "GET") {
      const id = verify[1]!;
      if (!(await catalog.list()).some((b) => b.id === id))
        return send(res, 404, { error: `no backup ${id}` });
      try {
        return send(res, 200, await verifyBackup(catalog, id));
      } catch (err) {
        return send(res, 422, { error: (err as Error).message });
      }
    }
    return send(res, 404, { error: `no route ${req.method} ${path}` });
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => send(res, 500, { error: String(err) }));
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port, options.host, () => resolve());
    });
  } catch (err) {
    for (const s of schedules) s.stop();
    await plane?.close();
    throw err;
  }
  const address = server.address() as AddressInfo;
  return {
    url: `http://${options.host}:${address.port}`,
    metrics,
    async close() {
      for (const s of schedules) s.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await running?.catch(() => {});
      await plane?.close();
    },
  };
}
