// `--workers 2`: two gateway processes behind one pair of ports. Calls are served whichever
// worker a connection lands on, /metrics counts every worker's calls whichever worker a scrape
// reaches, a worker that dies is replaced while the other keeps serving, and SIGTERM stops all.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { parseExposition, type Sample, sampleValue } from "@etcd-ts/telemetry";
import { etcdctl, gatewayMain, Stack, sleep } from "./stack.js";

/** PIDs of the workers that logged "gateway listening", in order. */
function listeningPids(output: string): number[] {
  return output
    .split("\n")
    .filter((line) => line.includes('"msg":"gateway listening"'))
    .map((line) => (JSON.parse(line) as { pid: number }).pid);
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("gateway with --workers 2", () => {
  let stack: Stack;

  before(async () => {
    stack = await Stack.start([], {}, ["--workers=2"]);
    await waitFor("two workers listening", () => listeningPids(stack.gatewayOutput.text).length === 2);
  });
  after(async () => {
    await stack?.close();
  });

  const scrape = async () => {
    const res = await fetch(`${stack.jsonUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
    assert.equal(res.status, 200);
    return parseExposition(await res.text());
  };
  /** Puts answered, over every member and status label. */
  const putsIn = (samples: Sample[]) =>
    samples
      .filter((s) => s.name === "etcd_gateway_requests_total" && s.labels.method === "Put")
      .reduce((sum, s) => sum + s.value, 0);
  const puts = async () => putsIn(await scrape());

  it("serves on both workers and counts every worker's calls in each scrape", async () => {
    const [a, b] = listeningPids(stack.gatewayOutput.text);
    assert.notEqual(a, b);
    assert.notEqual(a, stack.gatewayPid, "workers are processes of their own");
    // Quiet first: the readiness write may still be counted by its worker.
    const before = await puts();
    // Each etcdctl is a new connection; the primary hands connections to workers in turn.
    for (let i = 0; i < 6; i++) {
      const res = await etcdctl(stack.gatewayAddr, ["put", `w${i}`, "v"]);
      assert.equal(res.code, 0, res.stderr);
    }
    for (let scrapes = 0; scrapes < 4; scrapes++) {
      const samples = await scrape();
      assert.equal(putsIn(samples) - before, 6, "a scrape counts the puts both workers served");
      assert.equal(sampleValue(samples, "etcd_gateway_has_leader"), 1, "a state, not summed over workers");
    }
  });

  it("replaces a worker that dies while the other keeps serving", async () => {
    const [victim, survivor] = listeningPids(stack.gatewayOutput.text);
    process.kill(victim!, "SIGKILL");
    // A connection handed over in the instant before the primary sees the death is lost (as
    // with any process killed mid-accept); from then on, until the replacement listens, new
    // connections go to the survivor.
    await waitFor("the primary to notice", () =>
      stack.gatewayOutput.text.includes("gateway worker exited; starting another"),
    );
    const res = await etcdctl(stack.gatewayAddr, ["put", "during", "v"]);
    assert.equal(res.code, 0, res.stderr);
    await waitFor("a third worker listening", () => listeningPids(stack.gatewayOutput.text).length === 3);
    assert.ok(alive(survivor!));
    for (let i = 0; i < 4; i++) {
      const got = await etcdctl(stack.gatewayAddr, ["get", "during", "--print-value-only"]);
      assert.equal(got.stdout.trim(), "v", got.stderr);
    }
  });

  it("exits 1 when its workers cannot start, instead of restarting them forever", async () => {
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      const execArgv = process.execArgv.filter((a) => !a.startsWith("--test"));
      const child = spawn(
        process.execPath,
        [
          ...execArgv,
          gatewayMain,
          `--endpoints=${stack.memberEndpoints}`,
          `--listen-addr=127.0.0.1:${port}`,
          "--json-listen-addr=127.0.0.1:0",
          "--workers=2",
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let output = "";
      child.stdout.on("data", (c: Buffer) => {
        output += c.toString();
      });
      child.stderr.on("data", (c: Buffer) => {
        output += c.toString();
      });
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      const [code] = (await once(child, "exit")) as [number | null];
      clearTimeout(timer);
      assert.equal(code, 1, output);
      assert.match(output, /a gateway worker failed to start/);
    } finally {
      busy.close();
    }
  });

  it("stops every worker on SIGTERM", async () => {
    const workers = listeningPids(stack.gatewayOutput.text).filter(alive);
    assert.equal(workers.length, 2);
    const primary = stack.gatewayPid!;
    process.kill(primary, "SIGTERM");
    await waitFor("the primary and its workers to exit", () => !alive(primary) && !workers.some(alive));
    assert.match(stack.gatewayOutput.text, /gateway workers stopped/);
  });
});
