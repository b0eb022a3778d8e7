// `--workers 2`: two gateway processes behind one pair of ports. Calls are served whichever
// worker a connection lands on, /metrics counts every worker's calls whichever worker a scrape
// reaches, a worker that dies is replaced while the other keeps serving, and SIGTERM stops all.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { parseExposition, type Sample, sampleValue } from "@etcd-ts/telemetry";
import { etcdctl, Stack, sleep } from "./stack.js";

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
    // Until the replacement listens, new connections go to the survivor.
    const res = await etcdctl(stack.gatewayAddr, ["put", "during", "v"]);
    assert.equal(res.code, 0, res.stderr);
    await waitFor("a third worker listening", () => listeningPids(stack.gatewayOutput.text).length === 3);
    assert.match(stack.gatewayOutput.text, /gateway worker exited; starting another/);
    assert.ok(alive(survivor!));
    for (let i = 0; i < 4; i++) {
      const got = await etcdctl(stack.gatewayAddr, ["get", "during", "--print-value-only"]);
      assert.equal(got.stdout.trim(), "v", got.stderr);
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
