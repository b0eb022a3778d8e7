// Authenticate/s: a real etcd 3.4 (3 members, etcd's own Authenticate) against this project's
// services/auth (2 replicas behind the gateway), with our members' own Authenticate alongside.
// Every target has auth enabled, a root user and a "bench" user whose hash the member made at
// bcrypt cost 10 (etcd's); the same Node gRPC client drives each target in turn for a fixed
// time with a fixed number of concurrent callers, then the CPU time every server process used
// is read from /proc, so the result is given both per second and per CPU-second (the second
// holds better on a shared machine). With bcrypt on every login both sides are bound by the
// same two cores here; services/auth's default reuses a recent verification of the same user
// and password (services/auth/README.md), which is what the last row measures: one user
// logging in again and again, as reconnecting clients do.
//
//   node --conditions=source --import tsx bench/src/auth/authenticate-throughput.ts [--seconds 10] [--callers 16]
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { etcdserverpb } from "@etcd-ts/api";
import { AuthStack } from "@etcd-ts/auth";
import { freePort } from "@etcd-ts/testing";
import grpc from "@grpc/grpc-js";
import { cpuSeconds } from "../proc-cpu.js";

const args = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const SECONDS = flag("seconds", 10);
const CALLERS = flag("callers", 16);
const host = "127.0.0.1";

function etcdctl(endpoint: string, ...argv: string[]): void {
  const r = spawnSync("etcdctl", [`--endpoints=${endpoint}`, "--command-timeout=20s", ...argv], {
    env: { ...process.env, ETCDCTL_API: "3" },
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`etcdctl ${argv.join(" ")}: ${r.stderr}`);
}

function enableAuth(endpoint: string): void {
  for (const argv of [
    ["user", "add", "root:rootpw"],
    ["role", "add", "root"],
    ["user", "grant-role", "root", "root"],
    ["user", "add", "bench:benchpw"],
    ["auth", "enable"],
  ])
    etcdctl(endpoint, ...argv);
}

interface Result {
  target: string;
  ok: number;
  errors: number;
  seconds: number;
  perSecond: number;
  cpuSeconds: number;
  perCpuSecond: number;
  /** CPU the members spent per successful Authenticate (ms): what an auth service takes off them. */
  memberCpuMsPerOp: number;
  p50Ms: number;
  sampleError?: string;
}

/** CALLERS concurrent Authenticate loops against `endpoints` (round-robin), for SECONDS. */
async function drive(
  target: string,
  endpoints: string[],
  pids: (number | undefined)[],
  memberPids: (number | undefined)[],
): Promise<Result> {
  const clients = endpoints.map((e) => new etcdserverpb.AuthClient(e, grpc.credentials.createInsecure()));
  const call = (c: etcdserverpb.AuthClient) =>
    new Promise<void>((resolve, reject) =>
      c.authenticate(
        { name: "bench", password: "benchpw" },
        new grpc.Metadata(),
        { deadline: Date.now() + 30_000 },
        (err) => (err ? reject(err) : resolve()),
      ),
    );
  // Warm-up: connections, the first key, JIT.
  await Promise.all(clients.map(call));
  const cpuBefore = pids.map(cpuSeconds);
  const memberCpuBefore = memberPids.map(cpuSeconds);
  const started = performance.now();
  const until = started + SECONDS * 1000;
  let ok = 0;
  let errors = 0;
  let sampleError: string | undefined;
  const latencies: number[] = [];
  await Promise.all(
    Array.from({ length: CALLERS }, async (_, i) => {
      for (let n = 0; n < 100_000 && performance.now() < until; n++) {
        const t = performance.now();
        try {
          await call(clients[(i + n) % clients.length]!);
          ok++;
          latencies.push(performance.now() - t);
        } catch (err) {
          errors++;
          sampleError ??= String((err as Error).message);
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const cpu = pids.map(cpuSeconds).reduce((sum, after, i) => sum + after - cpuBefore[i]!, 0);
  const memberCpu = memberPids
    .map(cpuSeconds)
    .reduce((sum, after, i) => sum + after - memberCpuBefore[i]!, 0);
  for (const c of clients) c.close();
  latencies.sort((a, b) => a - b);
  return {
    target,
    ok,
    errors,
    seconds,
    perSecond: ok / seconds,
    cpuSeconds: cpu,
    perCpuSecond: cpu > 0 ? ok / cpu : 0,
    memberCpuMsPerOp: ok > 0 ? (memberCpu * 1000) / ok : 0,
    p50Ms: latencies[Math.floor(latencies.length / 2)] ?? 0,
    ...(sampleError === undefined ? {} : { sampleError }),
  };
}

async function startEtcd(dir: string): Promise<{ children: ChildProcess[]; endpoints: string[] }> {
  const names = ["e1", "e2", "e3"];
  const client = await Promise.all(names.map(() => freePort()));
  const peer = await Promise.all(names.map(() => freePort()));
  const initial = names.map((n, i) => `${n}=http://${host}:${peer[i]}`).join(",");
  const children = names.map((n, i) =>
    spawn(
      "/usr/bin/etcd",
      [
        `--name=${n}`,
        `--data-dir=${join(dir, n)}`,
        `--listen-client-urls=http://${host}:${client[i]}`,
        `--advertise-client-urls=http://${host}:${client[i]}`,
        `--listen-peer-urls=http://${host}:${peer[i]}`,
        `--initial-advertise-peer-urls=http://${host}:${peer[i]}`,
        `--initial-cluster=${initial}`,
        "--initial-cluster-token=auth-bench",
        "--log-level=error",
      ],
      { stdio: "ignore" },
    ),
  );
  const endpoints = client.map((p) => `${host}:${p}`);
  for (let attempt = 0; ; attempt++) {
    const r = spawnSync("etcdctl", [`--endpoints=${endpoints[0]}`, "put", "ready", "1"], {
      env: { ...process.env, ETCDCTL_API: "3" },
    });
    if (r.status === 0) break;
    if (attempt > 60) throw new Error("etcd did not start");
    await new Promise((r) => setTimeout(r, 500));
  }
  return { children, endpoints };
}

async function stopAll(children: ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.once("exit", () => resolve());
          c.kill("SIGTERM");
          setTimeout(() => c.kill("SIGKILL"), 8_000).unref();
        }),
    ),
  );
}

async function main(): Promise<void> {
  const results: Result[] = [];
  const dir = mkdtempSync(join(tmpdir(), "auth-bench-"));
  try {
    const etcd = await startEtcd(dir);
    try {
      enableAuth(etcd.endpoints[0]!);
      results.push(
        await drive(
          "etcd 3.4 members (etcd's Authenticate)",
          etcd.endpoints,
          etcd.children.map((c) => c.pid),
          etcd.children.map((c) => c.pid),
        ),
      );
    } finally {
      await stopAll(etcd.children);
    }
    // bcrypt on every login (as etcd), then with the default reuse of a recent verification.
    for (const [label, flags] of [
      ["services/auth x2, bcrypt every login", ["--verified-password-ttl=0"]],
      ["services/auth x2, default (verified passwords reused 300 s)", []],
    ] as const) {
      const stack = await AuthStack.start({ authReplicas: 2, authFlags: [...flags] });
      try {
        const memberEndpoints = stack.cluster.members.map((m) => m.clientUrl.replace("http://", ""));
        enableAuth(stack.gatewayAddr);
        const memberPids = stack.cluster.members.map((m) => m.child?.pid);
        const pids = [...memberPids, ...stack.auth.map((a) => a.child.pid), stack.gateway.child.pid];
        if (results.length === 1)
          results.push(
            await drive("etcd-ts members (their own Authenticate)", memberEndpoints, pids, memberPids),
          );
        results.push(await drive(`etcd-ts gateway -> ${label}`, [stack.gatewayAddr], pids, memberPids));
      } finally {
        await stack.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const etcd = results[0]!;
  console.log(`Authenticate, ${CALLERS} concurrent callers, ${SECONDS} s per target (noisy: shared machine)`);
  console.log("target | ok | errors | /s | /CPU-s | member CPU ms/op | p50 ms | ratio /s | ratio /CPU-s");
  for (const r of results) {
    console.log(
      [
        r.target,
        r.ok,
        r.errors,
        r.perSecond.toFixed(1),
        r.perCpuSecond.toFixed(1),
        r.memberCpuMsPerOp.toFixed(1),
        r.p50Ms.toFixed(0),
        (r.perSecond / etcd.perSecond).toFixed(2),
        etcd.perCpuSecond > 0 ? (r.perCpuSecond / etcd.perCpuSecond).toFixed(2) : "-",
        r.sampleError ?? "",
      ].join(" | "),
    );
  }
  console.log(JSON.stringify({ seconds: SECONDS, callers: CALLERS, results }));
}

await main();
