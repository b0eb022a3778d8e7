// The backup CLI:
//   backup now --endpoints H:P[,H:P...] --dir DIR [--keep-last N]
//   backup list --dir DIR
//   backup verify ID --dir DIR
//   backup restore ID --dir DIR --name ... --data-dir ... --initial-cluster ... (etcd's restore flags)
import { openSnapshotFile, runSnapshotCommand, snapshotStatus } from "@etcd-ts/raft-node";
import { BackupError, beyondRetention, DirectoryStore } from "./directory-store.js";
import { memberStatus, pickSource, snapshotStream } from "./snapshot-source.js";

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
`;

interface Parsed {
  positional: string[];
  options: Map<string, string>;
  /** Flags left for `snapshot restore`, as given. */
  rest: string[];
}

const OWN_FLAGS = new Set(["dir", "endpoints", "keep-last"]);

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

export function backupId(now: Date): string {
  return now.toISOString().replaceAll(":", "-").replace(".", "-");
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

async function now(parsed: Parsed, io: CommandOutput): Promise<number> {
  const store = new DirectoryStore(required(parsed, "dir"));
  const endpoints = required(parsed, "endpoints").split(",");
  const keepLast = parsed.options.has("keep-last") ? Number(parsed.options.get("keep-last")) : undefined;
  if (keepLast !== undefined) beyondRetention([], keepLast);
  const source = pickSource(await Promise.all(endpoints.map((e) => memberStatus(e))));
  if (source === undefined)
    throw new BackupError(`no member answered with a leader: ${endpoints.join(", ")}`);
  const id = backupId(new Date());
  const started = performance.now();
  let lastPrint = 0;
  let entry: Awaited<ReturnType<DirectoryStore["write"]>>;
  try {
    entry = await store.write(id, snapshotStream(source.endpoint), ({ bytes, remaining }) => {
      const t = performance.now();
      if (t - lastPrint >= 1000) {
        lastPrint = t;
        io.err(`${progressLine(bytes, remaining, t - started)}\n`);
      }
    });
  } catch (err) {
    if (err instanceof BackupError) throw err;
    throw new BackupError(`snapshot from ${source.endpoint} failed: ${(err as Error).message}`);
  }
  const role = source.memberId === source.leaderId ? "leader" : "follower";
  io.out(
    `backup ${id} from ${source.endpoint} (${role} ${BigInt(source.memberId!).toString(16)}): ` +
      `${entry.size} bytes, sha256 ${entry.sha256}; ${progressLine(entry.size, 0, performance.now() - started)}\n`,
  );
  if (keepLast !== undefined) {
    for (const old of beyondRetention(
      (await store.list()).map((b) => b.id),
      keepLast,
    )) {
      await store.remove(old);
      io.out(`removed backup ${old} (keeping the last ${keepLast})\n`);
    }
  }
  return 0;
}

async function verify(parsed: Parsed, io: CommandOutput): Promise<number> {
  const [id] = parsed.positional;
  if (id === undefined) throw new BackupError(`backup ID expected\n${USAGE}`);
  const store = new DirectoryStore(required(parsed, "dir"));
  await store.checkHash(id);
  let snapshot: Awaited<ReturnType<typeof openSnapshotFile>>;
  try {
    snapshot = await openSnapshotFile(store.path(id));
  } catch (err) {
    throw new BackupError(`backup ${id}: ${(err as Error).message}`);
  }
  try {
    const status = snapshotStatus(snapshot.reader);
    io.out(
      `backup ${id} is sound: sha256 and bbolt structure checked; revision ${status.revision}, ` +
        `${status.totalKey} keys, hash ${status.hash.toString(16)}\n`,
    );
    return 0;
  } finally {
    await snapshot.close();
  }
}
