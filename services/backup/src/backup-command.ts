// The backup CLI (see USAGE). The store is a local directory (--dir) or an S3 bucket (--s3-bucket,
// --s3-prefix; endpoint, region and credentials from the AWS_* variables, as every AWS tool).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { natsUrlProblem } from "@etcd-ts/events";
import { runSnapshotCommand } from "@etcd-ts/raft-node";
import { BackupCatalog } from "./backup-catalog.js";
import { DEFAULT_RETRIES, type RetrySettings, takeBackup, takeDelta, verifyBackup } from "./backup-job.js";
import { startBackupServer } from "./backup-server.js";
import { DirectoryStore } from "./directory-store.js";
import { MemberAccess } from "./member-access.js";
import { BackupError, type ObjectStore } from "./object-store.js";
import { pointInTimeSnapshot } from "./point-in-time.js";
import type { RetentionPolicy } from "./retention.js";
import { S3Store } from "./s3-store.js";

export interface CommandOutput {
  out(text: string): void;
  /** Progress and warnings. */
  err(text: string): void;
}

const STORE = "(--dir DIR | --s3-bucket BUCKET [--s3-prefix PREFIX])";
const MEMBERS = "[--cacert FILE [--cert FILE --key FILE]] [--user NAME[:PASSWORD] [--password P]]";
const USAGE = `usage:
  backup now --endpoints HOST:PORT[,HOST:PORT...] ${MEMBERS} ${STORE} [--keep-last N] [--keep-daily N] [--keep-weekly N] [--retries N]
  backup delta --endpoints HOST:PORT[,...] ${MEMBERS} ${STORE} [--retries N]
  backup list ${STORE}
  backup verify ID ${STORE}
  backup restore ID ${STORE} [--to-revision R (default: the newest delta's)] [--user root:PASSWORD] --name NAME --data-dir DIR --initial-cluster ... [etcd's restore flags]
  backup serve --endpoints HOST:PORT[,...] ${MEMBERS} ${STORE} [--cron "0 * * * *"] [--delta-cron "*/5 * * * *"]
         [--keep-last N] [--keep-daily N] [--keep-weekly N] [--retries N] [--listen 127.0.0.1:2390]
         [--nats-url nats://HOST:PORT: backup events, backup.now requests]
Members: endpoints as HOST:PORT or http(s):// URLs; TLS with etcdctl's --cacert/--cert/--key, and on a
    cluster with auth enabled a user who may take snapshots (root), as etcdctl's --user/--password.
S3: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (path-style addressing then), AWS_REGION,
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (or AWS_PROFILE and ~/.aws).
Every flag but --to-revision can also be given as ETCD_BACKUP_<FLAG> (ETCD_BACKUP_S3_BUCKET,
ETCD_BACKUP_CRON, ETCD_BACKUP_KEEP_LAST, ...); a flag wins over its variable, and a store
flag (--dir, --s3-bucket) ignores the store variables.
`;

interface Parsed {
  positional: string[];
  options: Map<string, string>;
  /** Flags left for `snapshot restore`, as given. */
  rest: string[];
}

const OWN_FLAGS = new Set([
  "dir",
  "s3-bucket",
  "s3-prefix",
  "endpoints",
  "keep-last",
  "keep-daily",
  "keep-weekly",
  "cron",
  "delta-cron",
  "listen",
  "retries",
  "retry-delay-ms",
  "to-revision",
  "nats-url",
  "cacert",
  "cert",
  "key",
  "user",
  "password",
]);

/** `keep-last` -> `ETCD_BACKUP_KEEP_LAST`. */
function backupEnvName(flag: string): string {
  return `ETCD_BACKUP_${flag.toUpperCase().replaceAll("-", "_")}`;
}

const STORE_FLAGS = ["dir", "s3-bucket", "s3-prefix"];

/**
 * Flags not given on the command line come from ETCD_BACKUP_* (a container's configuration),
 * except --to-revision, which names one restore and not a setting. A store named by a flag
 * takes none of its settings from the environment, so `--dir` is never mixed with an
 * ETCD_BACKUP_S3_BUCKET.
 */
function withEnvironment(parsed: Parsed, env: NodeJS.ProcessEnv): Parsed {
  const storeByFlag = parsed.options.has("dir") || parsed.options.has("s3-bucket");
  for (const flag of OWN_FLAGS) {
    if (flag === "to-revision" || parsed.options.has(flag)) continue;
    if (storeByFlag && STORE_FLAGS.includes(flag)) continue;
    const value = env[backupEnvName(flag)];
    if (value !== undefined && value !== "") parsed.options.set(flag, value);
  }
  return parsed;
}

function parse(args: readonly string[]): Parsed {
  const parsed: Parsed = { positional: [], options: new Map(), rest: [] };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith("-")) {
      parsed.positional.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = (eq === -1 ? arg : arg.slice(0, eq)).replace(/^--?/, "");
    const value = eq === -1 ? args[++i] : arg.slice(eq + 1);
    if (value === undefined) throw new BackupError(`flag --${name} needs a value`);
    if (OWN_FLAGS.has(name)) parsed.options.set(name, value);
    else parsed.rest.push(`--${name}=${value}`);
  }
  return parsed;
}

function required(parsed: Parsed, name: string): string {
  const value = parsed.options.get(name);
  if (value === undefined || value === "") throw new BackupError(`--${name} is required\n${USAGE}`);
  return value;
}

function integer(parsed: Parsed, name: string): number | undefined {
  const text = parsed.options.get(name);
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n))
    throw new BackupError(`--${name} must be a whole number, not "${text}"`);
  return n;
}

function accessOf(parsed: Parsed): MemberAccess {
  const get = (name: string) => parsed.options.get(name);
  return new MemberAccess({
    cacert: get("cacert"),
    cert: get("cert"),
    key: get("key"),
    user: get("user"),
    password: get("password"),
  });
}

function storeOf(parsed: Parsed): ObjectStore {
  const bucket = parsed.options.get("s3-bucket");
  if (bucket !== undefined) {
    if (parsed.options.has("dir")) throw new BackupError("give --dir or --s3-bucket, not both");
    return new S3Store({ bucket, prefix: parsed.options.get("s3-prefix") });
  }
  return new DirectoryStore(required(parsed, "dir"));
}

function retentionOf(parsed: Parsed): RetentionPolicy {
  return {
    keepLast: integer(parsed, "keep-last"),
    keepDaily: integer(parsed, "keep-daily"),
    keepWeekly: integer(parsed, "keep-weekly"),
  };
}

function retryOf(parsed: Parsed): RetrySettings {
  const attempts = integer(parsed, "retries");
  const delay = integer(parsed, "retry-delay-ms");
  return {
    attempts: attempts === undefined ? DEFAULT_RETRIES.attempts : attempts + 1,
    baseDelayMs: delay ?? DEFAULT_RETRIES.baseDelayMs,
    maxDelayMs: Math.max(delay ?? 0, DEFAULT_RETRIES.maxDelayMs),
  };
}

/** "12.3 MB, 40.1 MB/s, ETA 2 s" */
export function progressLine(bytes: number, remaining: number | undefined, elapsedMs: number): string {
  const rate = elapsedMs > 0 ? bytes / (elapsedMs / 1000) : 0;
  let line = `${(bytes / 1e6).toFixed(1)} MB, ${(rate / 1e6).toFixed(1)} MB/s`;
  if (remaining !== undefined && rate > 0) line += `, ETA ${Math.ceil(remaining / rate)} s`;
  return line;
}

export async function runBackupCommand(
  argv: readonly string[],
  io: CommandOutput,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const [command, ...args] = argv;
  const log = (line: string) => io.err(`${new Date().toISOString()} ${line}\n`);
  let store: ObjectStore | undefined;
  try {
    const parsed = withEnvironment(parse(args), env);
    const commands: Record<string, (store: ObjectStore) => Promise<number>> = {
      now: (store) => now(parsed, store, io, log),
      delta: (store) => delta(parsed, store, io, log),
      list: (store) => list(store, io),
      verify: (store) => verify(parsed, store, io),
      restore: (store) => restore(parsed, store, io),
      serve: (store) => serve(parsed, store, io, log),
    };
    const run = command === undefined ? undefined : commands[command];
    if (run === undefined) {
      io.err(USAGE);
      return 2;
    }
    store = storeOf(parsed);
    return await run(store);
  } catch (err) {
    if (err instanceof BackupError) {
      io.err(`Error: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    if (store instanceof S3Store) store.close();
  }
}

async function now(
  parsed: Parsed,
  store: ObjectStore,
  io: CommandOutput,
  log: (l: string) => void,
): Promise<number> {
  let lastPrint = 0;
  const result = await takeBackup({
    catalog: new BackupCatalog(store),
    endpoints: required(parsed, "endpoints").split(","),
    access: accessOf(parsed),
    retention: retentionOf(parsed),
    retry: retryOf(parsed),
    log,
    onProgress: ({ bytes, remaining }, elapsedMs) => {
      if (elapsedMs - lastPrint < 1000) return;
      lastPrint = elapsedMs;
      io.err(`${progressLine(bytes, remaining, elapsedMs)}\n`);
    },
  });
  const { entry, source } = result;
  const role = source.memberId === source.leaderId ? "leader" : "follower";
  io.out(
    `backup ${entry.id} from ${source.endpoint} (${role} ${BigInt(source.memberId!).toString(16)}) to ${store.location}: ` +
      `${entry.size} bytes, sha256 ${entry.sha256}; ${progressLine(entry.size, 0, result.seconds * 1000)}\n`,
  );
  for (const old of result.removed) io.out(`removed backup ${old} (retention)\n`);
  return 0;
}

async function delta(
  parsed: Parsed,
  store: ObjectStore,
  io: CommandOutput,
  log: (l: string) => void,
): Promise<number> {
  const result = await takeDelta({
    catalog: new BackupCatalog(store),
    endpoints: required(parsed, "endpoints").split(","),
    access: accessOf(parsed),
    retry: retryOf(parsed),
    log,
  });
  if (result.entry === undefined) {
    io.out(`no changes since the last backup of ${result.base}: no delta stored\n`);
    return 0;
  }
  const { fromRevision, toRevision, size, key } = result.entry;
  const what =
    fromRevision > toRevision
      ? `lease and auth state at revision ${toRevision} (no key changed)`
      : `revisions ${fromRevision}..${toRevision}`;
  io.out(`delta ${key} from ${result.source.endpoint}: ${what}, ${size} bytes\n`);
  return 0;
}

async function list(store: ObjectStore, io: CommandOutput): Promise<number> {
  const catalog = new BackupCatalog(store);
  await store.check();
  for (const b of await catalog.list()) {
    io.out(`${b.id}\t${b.size}\t${b.sha256}\n`);
    for (const d of await catalog.deltas(b.id))
      io.out(`${b.id}\tdelta\t${d.fromRevision}..${d.toRevision}\t${d.size}\n`);
  }
  return 0;
}

async function verify(parsed: Parsed, store: ObjectStore, io: CommandOutput): Promise<number> {
  const [id] = parsed.positional;
  if (id === undefined) throw new BackupError(`backup ID expected\n${USAGE}`);
  const v = await verifyBackup(new BackupCatalog(store), id);
  io.out(
    `backup ${id} is sound: sha256 and bbolt structure checked; revision ${v.revision}, ` +
      `${v.totalKey} keys, hash ${v.hash}\n`,
  );
  return 0;
}

async function restore(parsed: Parsed, store: ObjectStore, io: CommandOutput): Promise<number> {
  const [id] = parsed.positional;
  if (id === undefined) throw new BackupError(`backup ID expected\n${USAGE}`);
  const catalog = new BackupCatalog(store);
  // Without --to-revision: the latest state the backup's chain reaches, as a user restoring
  // "this backup" expects (and gardener's etcd-backup-restore does); the full backup's own
  // revision as --to-revision gives the full backup alone.
  const toRevision = integer(parsed, "to-revision") ?? (await catalog.deltas(id)).at(-1)?.toRevision;
  if (toRevision === undefined)
    return catalog.withCheckedFile(`${id}.db`, (file) =>
      runSnapshotCommand(["restore", file, ...parsed.rest], io),
    );
  const work = await mkdtemp(join(tmpdir(), "backup-pitr-"));
  try {
    // Only the user matters here: the replay runs on a temporary member of this process's own.
    const login = new MemberAccess({
      user: parsed.options.get("user"),
      password: parsed.options.get("password"),
    });
    const pit = await pointInTimeSnapshot(catalog, id, toRevision, work, login);
    for (const warning of pit.warnings) io.err(`${warning}\n`);
    const notes = [
      pit.leasesGranted > 0 ? `${pit.leasesGranted} leases granted again` : "",
      pit.leasesWithoutTtl > 0
        ? `${pit.leasesWithoutTtl} of them with the minimum TTL (granted and ended between two deltas: TTL not recorded)`
        : "",
      pit.leasesRevoked > 0
        ? `${pit.leasesRevoked} leases without keys revoked (gone by the target's state)`
        : "",
      pit.authRevision !== undefined ? `auth store as of auth revision ${pit.authRevision}` : "",
    ].filter((n) => n !== "");
    io.err(
      `backup ${id} (revision ${pit.baseRevision}) + ${pit.replayed} revisions from deltas -> revision ${pit.revision}` +
        (notes.length > 0 ? `; ${notes.join("; ")}` : "") +
        "\n",
    );
    return await runSnapshotCommand(["restore", pit.file, ...parsed.rest], io);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Runs until SIGINT/SIGTERM. */
async function serve(
  parsed: Parsed,
  store: ObjectStore,
  io: CommandOutput,
  log: (l: string) => void,
): Promise<number> {
  const listen = parsed.options.get("listen") ?? "127.0.0.1:2390";
  const colon = listen.lastIndexOf(":");
  const natsUrl = parsed.options.get("nats-url") ?? "";
  const problem = natsUrlProblem("nats-url", natsUrl);
  if (problem !== undefined) throw new BackupError(problem);
  const server = await startBackupServer({
    catalog: new BackupCatalog(store),
    endpoints: required(parsed, "endpoints").split(","),
    access: accessOf(parsed),
    retention: retentionOf(parsed),
    retry: retryOf(parsed),
    cron: parsed.options.get("cron"),
    deltaCron: parsed.options.get("delta-cron"),
    host: listen.slice(0, colon),
    port: Number(listen.slice(colon + 1)),
    natsUrl,
    log,
  });
  io.out(`backup service on ${server.url}, storing in ${store.location}\n`);
  // The handlers stay for the rest of the process: a second signal (Ctrl-C reaches every process
  // of the terminal's group, then `npm start` sends SIGTERM) must not kill the close under way.
  await new Promise<void>((resolve) => {
    process.on("SIGINT", () => resolve());
    process.on("SIGTERM", () => resolve());
  });
  await server.close();
  return 0;
}
