// The backup CLI:
//   backup now --endpoints H:P[,H:P...] --dir DIR [--keep-last N]
//   backup list --dir DIR
//   backup verify ID --dir DIR
//   backup restore ID --dir DIR --name ... --data-dir ... --initial-cluster ... (etcd's restore flags)
//   backup serve --endpoints ... --dir DIR [--cron EXPR] [--keep-last N] [--listen HOST:PORT] [--nats-url URL]
import { natsUrlProblem } from "@etcd-ts/events";
import { runSnapshotCommand } from "@etcd-ts/raft-node";
import { takeBackup, verifyBackup } from "./backup-job.js";
import { startBackupServer } from "./backup-server.js";
import { BackupError, DirectoryStore } from "./directory-store.js";

export interface CommandOutput {
  out(text: string): void;
  /** Progress and warnings. */
  err(text: string): void;
}

const USAGE = `usage:
  backup now --endpoints HOST:PORT[,HOST:PORT...] --dir DIR [--keep-last N]
  backup list --dir DIR
  backup verify ID --dir DIR
  backup restore ID --dir DIR --name NAME --data-dir DIR --initial-cluster ... [etcd's restore flags]
  backup serve --endpoints HOST:PORT[,...] --dir DIR [--cron "0 * * * *"] [--keep-last N] [--listen 127.0.0.1:2390]
               [--nats-url nats://HOST:PORT (or ETCD_BACKUP_NATS_URL): backup events, backup.now requests]
`;

interface Parsed {
  positional: string[];
  options: Map<string, string>;
  /** Flags left for `snapshot restore`, as given. */
  rest: string[];
}

const OWN_FLAGS = new Set(["dir", "endpoints", "keep-last", "cron", "listen", "nats-url"]);

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

/** "12.3 MB, 40.1 MB/s, ETA 2 s" */
export function progressLine(bytes: number, remaining: number | undefined, elapsedMs: number): string {
  const rate = elapsedMs > 0 ? bytes / (elapsedMs / 1000) : 0;
  let line = `${(bytes / 1e6).toFixed(1)} MB, ${(rate / 1e6).toFixed(1)} MB/s`;
  if (remaining !== undefined && rate > 0) line += `, ETA ${Math.ceil(remaining / rate)} s`;
  return line;
}

export async function runBackupCommand(argv: readonly string[], io: CommandOutput): Promise<number> {
  const [command, ...args] = argv;
  try {
    const parsed = parse(args);
    switch (command) {
      case "now":
        return await now(parsed, io);
      case "list": {
        const store = new DirectoryStore(required(parsed, "dir"));
        for (const b of await store.list()) io.out(`${b.id}\t${b.size}\t${b.sha256}\n`);
        return 0;
      }
      case "verify":
        return await verify(parsed, io);
      case "serve":
        return await serve(parsed, io);
      case "restore": {
        const [id] = parsed.positional;
        if (id === undefined) throw new BackupError(`backup ID expected\n${USAGE}`);
        const store = new DirectoryStore(required(parsed, "dir"));
        await store.checkHash(id);
        return await runSnapshotCommand(["restore", store.path(id), ...parsed.rest], io);
      }
      default:
        io.err(USAGE);
        return 2;
    }
  } catch (err) {
    if (err instanceof BackupError) {
      io.err(`Error: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

function keepLastOf(parsed: Parsed): number | undefined {
  return parsed.options.has("keep-last") ? Number(parsed.options.get("keep-last")) : undefined;
}

async function now(parsed: Parsed, io: CommandOutput): Promise<number> {
  let lastPrint = 0;
  const result = await takeBackup({
    store: new DirectoryStore(required(parsed, "dir")),
    endpoints: required(parsed, "endpoints").split(","),
    keepLast: keepLastOf(parsed),
    onProgress: ({ bytes, remaining }, elapsedMs) => {
      if (elapsedMs - lastPrint < 1000) return;
      lastPrint = elapsedMs;
      io.err(`${progressLine(bytes, remaining, elapsedMs)}\n`);
    },
  });
  const { entry, source } = result;
  const role = source.memberId === source.leaderId ? "leader" : "follower";
  io.out(
    `backup ${entry.id} from ${source.endpoint} (${role} ${BigInt(source.memberId!).toString(16)}): ` +
      `${entry.size} bytes, sha256 ${entry.sha256}; ${progressLine(entry.size, 0, result.seconds * 1000)}\n`,
  );
  for (const old of result.removed)
    io.out(`removed backup ${old} (keeping the last ${keepLastOf(parsed)})\n`);
  return 0;
}

async function verify(parsed: Parsed, io: CommandOutput): Promise<number> {
  const [id] = parsed.positional;
  if (id === undefined) throw new BackupError(`backup ID expected\n${USAGE}`);
  const v = await verifyBackup(new DirectoryStore(required(parsed, "dir")), id);
  io.out(
    `backup ${id} is sound: sha256 and bbolt structure checked; revision ${v.revision}, ` +
      `${v.totalKey} keys, hash ${v.hash}\n`,
  );
  return 0;
}

/** Runs until SIGINT/SIGTERM. */
async function serve(parsed: Parsed, io: CommandOutput): Promise<number> {
  const listen = parsed.options.get("listen") ?? "127.0.0.1:2390";
  const colon = listen.lastIndexOf(":");
  const natsUrl = parsed.options.get("nats-url") ?? process.env.ETCD_BACKUP_NATS_URL ?? "";
  const problem = natsUrlProblem("nats-url", natsUrl);
  if (problem !== undefined) throw new BackupError(problem);
  const server = await startBackupServer({
    store: new DirectoryStore(required(parsed, "dir")),
    endpoints: required(parsed, "endpoints").split(","),
    keepLast: keepLastOf(parsed),
    cron: parsed.options.get("cron"),
    host: listen.slice(0, colon),
    port: Number(listen.slice(colon + 1)),
    natsUrl,
    log: (line) => io.err(`${new Date().toISOString()} ${line}\n`),
  });
  io.out(`backup service on ${server.url}\n`);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await server.close();
  return 0;
}
