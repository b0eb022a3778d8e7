#!/usr/bin/env node
// Runs every compiled test file (dist/**/*.test.js) of the workspaces with Node's test runner.
// `--unit` leaves out tests/integration and *.integration.test.js (real clusters); any other
// argument filters test paths by substring.
import { spawn } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const args = process.argv.slice(2);
const unitOnly = args.includes("--unit");
const filters = args.filter((a) => !a.startsWith("--"));
const roots = ["packages", "services", "tests", "bench"];

function* testFiles(dir) {
  for (const name of readdirSync(dir)) {
    if (name === "node_modules") continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* testFiles(path);
    else if (name.endsWith(".test.js") && path.split("/").includes("dist")) yield path;
  }
}

const files = [];
for (const root of roots) {
  if (unitOnly && root === "tests") continue;
  try {
    files.push(...testFiles(root));
  } catch {}
}
const selected = files
  .filter((f) => !(unitOnly && f.endsWith(".integration.test.js")))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();
if (selected.length === 0) {
  console.error("no test files found: run `npx tsc -b` first");
  process.exit(1);
}
// A test file that leaves a handle open (a socket, a child process) must not hang CI: once its
// tests are done it is ended. No single test may run longer than 5 minutes. The container suite
// (tests/integration/src/deploy) builds an image and brings one compose project up for all its
// tests, each still bounded by its own timeout: the file as a whole gets 20 minutes.
const containerSuite = (f) => f.includes("/dist/deploy/");
// Each run is its own process group, killed whole once the run ends: a member process that a
// cancelled or force-exited test file never stopped cannot outlive the run (and load the rest of it).
function runGroup(args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: "inherit", detached: true });
    const forward = (signal) => process.kill(-child.pid, signal);
    process.on("SIGINT", forward).on("SIGTERM", forward);
    child.once("exit", (code, signal) => {
      process.off("SIGINT", forward).off("SIGTERM", forward);
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // The group is already empty.
      }
      resolve(code ?? (signal === null ? 1 : 128));
    });
  });
}

let status = 0;
for (const [files, timeout] of [
  [selected.filter((f) => !containerSuite(f)), 300_000],
  [selected.filter(containerSuite), 1_200_000],
]) {
  if (files.length === 0) continue;
  const code = await runGroup(["--test", "--test-force-exit", `--test-timeout=${timeout}`, ...files]);
  if (code !== 0) status = code;
}
process.exit(status);
