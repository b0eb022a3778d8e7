// Real etcd 3.4 (from /usr/bin) and our member started one after the other with the same
// flags, for tests that run the same session against both and compare what they answer.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "@etcd-ts/testing";

export const ETCD = "/usr/bin/etcd";
export const ETCDCTL = "/usr/bin/etcdctl";
export const haveRealEtcd = existsSync(ETCD) && existsSync(ETCDCTL);

const mainPath = fileURLToPath(
  new URL(import.meta.url.endsWith(".ts") ? "../main.ts" : "../main.js", import.meta.url),
);

export interface Running {
  child: ChildProcess;
  output: { text: string };
}

export function startProcess(command: string, args: string[]): Running {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  const output = { text: "" };
  child.stdout?.on("data", (c: Buffer) => {
    output.text += c.toString();
  });
  child.stderr?.on("data", (c: Buffer) => {
    output.text += c.toString();
  });
  return { child, output };
}

/** Our member (main.ts or main.js, whichever this file runs as) with exactly `args`. */
export function startOurs(args: string[]): Running {
  return startProcess(process.execPath, [
    ...process.execArgv.filter((a) => !a.startsWith("--test")),
    mainPath,
    ...args,
  ]);
}

export async function waitReady(p: Running, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!p.output.text.includes("ready to serve client requests")) {
    if (p.child.exitCode !== null) throw new Error(`exited before it was ready:\n${p.output.text}`);
    if (Date.now() > deadline) throw new Error(`not ready after ${timeoutMs} ms:\n${p.output.text}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function stopProcess(p: Running): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise((r) => p.child.once("exit", r));
  p.child.kill("SIGTERM");
  const timer = setTimeout(() => p.child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/** The flags of a one-member cluster named `name` on the given URLs. */
export function singleMemberFlags(
  name: string,
  dataDir: string,
  clientUrl: string,
  peerUrl: string,
  token: string,
): string[] {
  return [
    "--name",
    name,
    "--data-dir",
    dataDir,
    "--listen-client-urls",
    clientUrl,
    "--advertise-client-urls",
    clientUrl,
    "--listen-peer-urls",
    peerUrl,
    "--initial-advertise-peer-urls",
    peerUrl,
    "--initial-cluster",
    `${name}=${peerUrl}`,
    "--initial-cluster-token",
    token,
    "--initial-cluster-state",
    "new",
  ];
}

/** Runs `session` against real etcd, then against our member, each started with `flags(dataDir)`. */
export async function sideBySide<T>(
  flags: (dataDir: string) => string[],
  dataDirs: { etcd: string; ours: string },
  session: () => Promise<T>,
): Promise<{ etcd: T; ours: T }> {
  const real = startProcess(ETCD, flags(dataDirs.etcd));
  let etcd: T;
  try {
    await waitReady(real);
    etcd = await session();
  } finally {
    await stopProcess(real);
  }
  const member = startOurs(flags(dataDirs.ours));
  try {
    await waitReady(member);
    return { etcd, ours: await session() };
  } finally {
    await stopProcess(member);
  }
}

/**
 * `session(clientUrl)` against real etcd, then against our member, each a one-member cluster
 * named `name` on the same free ports (so the same member and cluster IDs), in a temp dir
 * removed afterwards.
 */
export async function sideBySideMember<T>(
  name: string,
  session: (clientUrl: string) => Promise<T>,
): Promise<{ etcd: T; ours: T }> {
  const root = await mkdtemp(join(tmpdir(), `${name}-`));
  try {
    const clientUrl = `http://127.0.0.1:${await freePort()}`;
    const peerUrl = `http://127.0.0.1:${await freePort()}`;
    return await sideBySide(
      (dataDir) => singleMemberFlags(name, dataDir, clientUrl, peerUrl, `${name}-token`),
      { etcd: join(root, "etcd"), ours: join(root, "ours") },
      () => session(clientUrl),
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
