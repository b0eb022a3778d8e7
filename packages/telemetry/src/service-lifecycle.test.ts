import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { describe, it } from "node:test";

// The module under test as this file runs: sources under tsx, or the build.
const moduleUrl = new URL(
  `./service-lifecycle.${import.meta.url.endsWith(".ts") ? "ts" : "js"}`,
  import.meta.url,
).href;

/** A process that runs stopOnSignals with a stop that succeeds or fails, then waits for a signal. */
function serviceProcess(stopFails: boolean) {
  const script = `
    import { stopOnSignals } from ${JSON.stringify(moduleUrl)};
    const logger = { info: (d, m) => console.log(m, d.signal), error: (_d, m) => console.log(m) };
    let stops = 0;
    stopOnSignals(async () => { stops++; console.log("stop", stops); if (${stopFails}) throw new Error("x"); }, logger, undefined);
    console.log("ready");
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (c: Buffer) => {
    out += c.toString();
  });
  const ready = new Promise<void>((resolve) => {
    const check = () => (out.includes("ready") ? resolve() : setTimeout(check, 20));
    check();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, ready, exited, output: () => out };
}

describe("stopOnSignals", () => {
  it("stops once on SIGTERM (a second signal does not stop again) and exits 0", async () => {
    const p = serviceProcess(false);
    await p.ready;
    p.child.kill("SIGTERM");
    p.child.kill("SIGINT");
    assert.equal(await p.exited, 0);
    // The two signals may be handled in either order: only the first stops.
    assert.match(p.output(), /shutting down SIG(TERM|INT)\nstop 1\n/);
    assert.doesNotMatch(p.output(), /stop 2/);
  });

  it("exits 1 and says so when stopping fails", async () => {
    const p = serviceProcess(true);
    await p.ready;
    p.child.kill("SIGINT");
    assert.equal(await p.exited, 1);
    assert.match(p.output(), /shutting down SIGINT\nstop 1\nshutdown failed\n/);
  });
});
