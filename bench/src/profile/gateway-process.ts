// An api-gateway of a given build in front of a LocalCluster, for the profile tools that send
// their load through it (cpu-per-op.js --gateway, range-full.js --gateway).
import { type ChildProcess, spawn } from "node:child_process";
import { openSync } from "node:fs";
import type { LocalCluster } from "@etcd-ts/raft-node";
import { freePort } from "@etcd-ts/testing";
import { runGoload } from "../goload.js";

export interface Gateway {
  child: ChildProcess;
  address: string;
}

/**
 * `nodeFlags`: before the script (e.g. --cpu-prof); the gateway's stderr is this process's.
 * `stdoutFile`: where its stdout goes (--trace-gc writes there), else nowhere.
 */
export async function startGateway(
  main: string,
  cluster: LocalCluster,
  nodeFlags: readonly string[] = [],
  stdoutFile?: string,
): Promise<Gateway> {
  const address = `127.0.0.1:${await freePort()}`;
  const endpoints = cluster.members.map((m) => m.clientUrl).join(",");
  const child = spawn(
    process.execPath,
    [
      ...process.execArgv,
      ...nodeFlags,
      main,
      "--endpoints",
      endpoints,
      "--listen-addr",
      address,
      "--json-listen-addr",
      `127.0.0.1:${await freePort()}`,
      "--log-level",
      "warn",
    ],
    { stdio: ["ignore", stdoutFile === undefined ? "ignore" : openSync(stdoutFile, "a"), "inherit"] },
  );
  // Ready once a put goes through it.
  for (let i = 0; i < 120; i++) {
    const probe = await runGoload(["-endpoints", address, "-op", "put", "-total", "1"]).catch(
      () => undefined,
    );
    if (probe !== undefined && probe.errors === 0) return { child, address };
    await new Promise((r) => setTimeout(r, 500));
  }
  child.kill();
  throw new Error(`gateway ${main} not ready on ${address}`);
}

/** SIGTERM (a gateway with --cpu-prof writes its profile as it exits), then wait for the exit. */
export async function stopGateway(gateway: Gateway): Promise<void> {
  if (gateway.child.exitCode !== null || gateway.child.signalCode !== null) return;
  const exited = new Promise<void>((r) => gateway.child.once("exit", () => r()));
  gateway.child.kill("SIGTERM");
  const timer = setTimeout(() => gateway.child.kill("SIGKILL"), 20_000);
  await exited;
  clearTimeout(timer);
}
