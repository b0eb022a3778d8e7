// `backup serve`: backups on a cron schedule (croner; seconds field allowed) and an HTTP API on
// loopback by default:
//   GET  /backups              -> 200 [{id, size, sha256}]
//   POST /backups              -> 201 {id, size, sha256, source, removed, seconds}; 409 while one runs
//   GET  /backups/ID/verify    -> 200 {id, size, sha256, revision, totalKey, hash}; 404; 422 {error}
// A scheduled run that fails is logged and the schedule goes on; runs never overlap.
// With NATS (natsUrl): every run publishes backup.started then backup.completed or
// backup.failed, and a request on backup.now takes one (the reply says how it went).
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { type BackupCompleted, type BackupTrigger, ControlPlane, topics } from "@etcd-ts/events";
import { Cron } from "croner";
import { type BackupResult, takeBackup, verifyBackup } from "./backup-job.js";
import { BackupError, type DirectoryStore } from "./directory-store.js";

export interface BackupServerOptions {
  store: DirectoryStore;
  endpoints: string[];
  keepLast?: number | undefined;
  /** A cron expression; no schedule when undefined. */
  cron?: string | undefined;
  host: string;
  port: number;
  /** nats:// URLs for backup events and backup.now requests; none when undefined or empty. */
  natsUrl?: string | undefined;
  log(line: string): void;
}

export interface BackupServer {
  url: string;
  close(): Promise<void>;
}

export async function startBackupServer(options: BackupServerOptions): Promise<BackupServer> {
  const plane =
    options.natsUrl === undefined || options.natsUrl === ""
      ? undefined
      : ControlPlane.start({
          url: options.natsUrl,
          name: "etcd-ts backup",
          log: (level, message, details) =>
            options.log(`${level}: ${message}${details === undefined ? "" : ` ${JSON.stringify(details)}`}`),
        });
  const describe = (r: BackupResult) => ({
    ...r.entry,
    source: r.source.endpoint,
    removed: r.removed,
    seconds: r.seconds,
  });
  const completed = (r: BackupResult, trigger: BackupTrigger): BackupCompleted => ({
    trigger,
    ...describe(r),
    at: Date.now(),
  });

  let running: Promise<BackupResult> | undefined;
  const backupOnce = (trigger: BackupTrigger): Promise<BackupResult> => {
    if (running !== undefined) return Promise.reject(new BackupError("a backup is already running"));
    plane?.publish(topics.backupStarted, { trigger, at: Date.now() });
    running = takeBackup({ store: options.store, endpoints: options.endpoints, keepLast: options.keepLast });
    return running
      .then(
        (result) => {
          plane?.publish(topics.backupCompleted, completed(result, trigger));
          return result;
        },
        (err: unknown) => {
          plane?.publish(topics.backupFailed, { trigger, error: (err as Error).message, at: Date.now() });
          throw err;
        },
      )
      .finally(() => {
        running = undefined;
      });
  };
  plane?.reply(
    topics.backupNow,
    async () => {
      try {
        return { ok: true as const, backup: completed(await backupOnce("nats"), "nats") };
      } catch (err) {
        return { ok: false as const, error: (err as Error).message };
      }
    },
    () => ({ ok: false as const, error: "backup.now takes a JSON object (or an empty body)" }),
  );

  let job: Cron | undefined;
  if (options.cron !== undefined) {
    try {
      job = new Cron(options.cron, { protect: true }, async () => {
        try {
          options.log(`scheduled backup: ${JSON.stringify(describe(await backupOnce("schedule")))}`);
        } catch (err) {
          options.log(`scheduled backup failed: ${(err as Error).message}`);
        }
      });
    } catch (err) {
      throw new BackupError(`invalid --cron "${options.cron}": ${(err as Error).message}`);
    }
  }

  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(`${JSON.stringify(body)}\n`);
  };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? "/", "http://backup").pathname;
    if (path === "/backups" && req.method === "GET") return send(res, 200, await options.store.list());
    if (path === "/backups" && req.method === "POST") {
      if (running !== undefined) return send(res, 409, { error: "a backup is already running" });
      try {
        return send(res, 201, describe(await backupOnce("http")));
      } catch (err) {
        return send(res, 502, { error: (err as Error).message });
      }
    }
    const verify = /^\/backups\/([A-Za-z0-9._-]+)\/verify$/.exec(path);
    if (verify && req.method === "GET") {
      const id = verify[1]!;
      if (!(await options.store.list()).some((b) => b.id === id))
        return send(res, 404, { error: `no backup ${id}` });
      try {
        return send(res, 200, await verifyBackup(options.store, id));
      } catch (err) {
        return send(res, 422, { error: (err as Error).message });
      }
    }
    return send(res, 404, { error: `no route ${req.method} ${path}` });
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => send(res, 500, { error: String(err) }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${options.host}:${address.port}`,
    async close() {
      job?.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await running?.catch(() => {});
      await plane?.close();
    },
  };
}
