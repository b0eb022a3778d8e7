// `raft-node snapshot status FILE [-w table|simple|json]` and
// `raft-node snapshot restore FILE --name ... --initial-cluster ... --initial-cluster-token ...
// --initial-advertise-peer-urls ... --data-dir ... [--skip-hash-check]`, as etcdutl/etcdctl 3.4
// spell them.
import { ConfigError, memberConfig, parseFlags } from "../config/flags.js";
import { formatId } from "../membership/member-id.js";
import { restoreSnapshot } from "./restore.js";
import { formatStatus, openSnapshotFile, SnapshotFileError, snapshotStatus } from "./snapshot-file.js";

const USAGE = `usage:
  raft-node snapshot status FILE [-w table|simple|json]
  raft-node snapshot restore FILE [--name NAME] [--data-dir DIR] [--initial-cluster NAME=URL,...]
      [--initial-cluster-token TOKEN] [--initial-advertise-peer-urls URL,...] [--skip-hash-check]
`;

const RESTORE_FLAGS = new Set([
  "name",
  "data-dir",
  "initial-cluster",
  "initial-cluster-token",
  "initial-advertise-peer-urls",
]);

export interface CommandOutput {
  out(text: string): void;
  err(text: string): void;
}

/** Runs a `snapshot` subcommand; returns the process exit status. */
export async function runSnapshotCommand(argv: readonly string[], io: CommandOutput): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    if (sub === "status") return status(rest, io);
    if (sub === "restore") return await restore(rest, io);
    io.err(USAGE);
    return 2;
  } catch (err) {
    if (err instanceof SnapshotFileError || err instanceof ConfigError) {
      io.err(`Error: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

function splitFile(args: readonly string[]): { file: string; flags: string[] } {
  const files = args.filter((a, i) => !a.startsWith("-") && (i === 0 || !needsValue(args[i - 1]!)));
  if (files.length !== 1)
    throw new ConfigError(`snapshot file name expected (got ${files.length})\n${USAGE}`);
  const at = args.indexOf(files[0]!);
  return { file: files[0]!, flags: [...args.slice(0, at), ...args.slice(at + 1)] };
}

function needsValue(flag: string): boolean {
  return flag.startsWith("-") && !flag.includes("=") && !/^--?skip-hash-check$/.test(flag);
}

async function status(args: readonly string[], io: CommandOutput): Promise<number> {
  const { file, flags } = splitFile(args);
  let format = "simple";
  for (let i = 0; i < flags.length; i++) {
    const flag = flags[i]!;
    const eq = flag.indexOf("=");
    const name = (eq === -1 ? flag : flag.slice(0, eq)).replace(/^--?/, "");
    if (name !== "w" && name !== "write-out") throw new ConfigError(`unknown flag ${flag}\n${USAGE}`);
    format = eq === -1 ? (flags[++i] ?? "") : flag.slice(eq + 1);
  }
  // etcdctl's status does not check the trailer; it opens the database part.
  return openSnapshotFile(file, { skipHashCheck: true }).then(async (snapshot) => {
    try {
      io.out(formatStatus(snapshotStatus(snapshot.reader), format));
      return 0;
    } finally {
      await snapshot.close();
    }
  });
}

async function restore(args: readonly string[], io: CommandOutput): Promise<number> {
  const { file, flags } = splitFile(args);
  let skipHashCheck = false;
  const memberFlags: string[] = [];
  for (let i = 0; i < flags.length; i++) {
    const flag = flags[i]!;
    const eq = flag.indexOf("=");
    const name = (eq === -1 ? flag : flag.slice(0, eq)).replace(/^--?/, "");
    if (name === "skip-hash-check") {
      skipHashCheck = eq === -1 || flag.slice(eq + 1) === "true";
      continue;
    }
    if (!RESTORE_FLAGS.has(name)) throw new ConfigError(`unknown flag ${flag}\n${USAGE}`);
    memberFlags.push(flag);
    if (eq === -1 && i + 1 < flags.length) memberFlags.push(flags[++i]!);
  }
  const config = memberConfig(parseFlags(memberFlags, {}));
  const result = await restoreSnapshot(file, config, { skipHashCheck });
  io.out(
    `restored snapshot ${file} into ${config.dataDir}: revision ${result.revision}, ${result.keys} revisions, ` +
      `${result.leases} lease(s); members ${result.members.map((m) => `${formatId(m.id)}=${m.peerUrls.join(",")}`).join(" ")}` +
      `${result.hashChecked ? "" : " (sha256 not checked)"}\n`,
  );
  for (const what of result.dropped) io.err(`warning: not restored: ${what}\n`);
  return 0;
}
