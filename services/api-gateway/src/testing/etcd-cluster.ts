// The reference the gateway is tested against: a real 3-member etcd 3.4 on loopback, started by
// raft-node's LocalCluster (the project's one launcher) with etcd's binary in place of our
// member; and etcdctl for the tests.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { LocalCluster } from "@etcd-ts/raft-node";

export const ETCD_BINARY = process.env.ETCD_BINARY ?? "/usr/bin/etcd";
export const ETCDCTL_BINARY = process.env.ETCDCTL_BINARY ?? "/usr/bin/etcdctl";

/** Why integration tests cannot run here, or undefined when they can. */
export function etcdMissingReason(): string | undefined {
  if (!existsSync(ETCD_BINARY)) return `${ETCD_BINARY} not found (install etcd-server or set ETCD_BINARY)`;
  if (!existsSync(ETCDCTL_BINARY))
    return `${ETCDCTL_BINARY} not found (install etcd-client or set ETCDCTL_BINARY)`;
  return undefined;
}

/** Three etcd members; elections faster than etcd's 1 s default so leader-loss tests finish quickly. */
export function startEtcd(): Promise<LocalCluster> {
  return LocalCluster.start({
    size: 3,
    binary: ETCD_BINARY,
    token: `gw-test-${process.pid}-${Date.now()}`,
    flags: ["--heartbeat-interval=50", "--election-timeout=500"],
  });
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runEtcdctl(
  endpoints: string[],
  args: string[],
  timeoutMs = 10_000,
  input?: string,
): Promise<CommandResult> {
  return runCommand(ETCDCTL_BINARY, [`--endpoints=${endpoints.join(",")}`, "--dial-timeout=2s", ...args], {
    timeoutMs,
    input,
    env: { ...process.env, ETCDCTL_API: "3" },
  });
}

export function runCommand(
  file: string,
  args: string[],
  opts: { timeoutMs: number; input?: string | undefined; env?: NodeJS.ProcessEnv },
): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { env: opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
