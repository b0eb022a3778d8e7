// For tests: s3rver (a real S3-speaking server) in its own process on loopback, and the backup
// CLI run in-process with its output captured.
import { type ChildProcess, spawn } from "node:child_process";
import { readdir } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { runBackupCommand } from "./backup-command.js";

const S3RVER = createRequire(import.meta.url).resolve("s3rver/bin/s3rver.js");

/** The bucket every s3rver started here has. */
export const BUCKET = "backups";

export interface S3rver {
  child: ChildProcess;
  port: number;
  /** Its log: one line per request, with method, path and status. */
  log: { text: string };
}

/** s3rver serving `dir`; `port` 0 picks a free one. Resolves once it listens. */
export function startS3rver(dir: string, port = 0): Promise<S3rver> {
  const child = spawn(
    process.execPath,
    [S3RVER, "-d", dir, "-a", "127.0.0.1", "-p", String(port), "--configure-bucket", BUCKET],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const log = { text: "" };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`s3rver not listening:\n${log.text}`)), 20_000);
    const onData = (chunk: Buffer) => {
      log.text += chunk.toString();
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(log.text);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]), log });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited with ${code}:\n${log.text}`));
    });
  });
}

export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
}

/** The AWS_* variables any AWS tool would read to reach `server`. */
export function useS3rverEnv(server: S3rver): void {
  process.env.AWS_ENDPOINT_URL_S3 = `http://127.0.0.1:${server.port}`;
  process.env.AWS_ACCESS_KEY_ID = "S3RVER";
  process.env.AWS_SECRET_ACCESS_KEY = "S3RVER";
  delete process.env.AWS_REGION;
  delete process.env.AWS_PROFILE;
}

/** Every file under `dir` (s3rver keeps objects and upload parts as files). */
export async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
}

/** `backup ARGS...` in this process: its exit code and what it printed. */
export async function backupCli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runBackupCommand(args, {
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
  });
  return { code, out, err };
}
