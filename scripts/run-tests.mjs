#!/usr/bin/env node
// Runs every compiled test file (dist/**/*.test.js) of the workspaces with Node's test runner.
// `--unit` leaves out tests/integration; any other argument filters test paths by substring.
import { spawnSync } from "node:child_process";
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
const selected = files.filter((f) => filters.length === 0 || filters.some((s) => f.includes(s))).sort();
if (selected.length === 0) {
  console.error("no test files found: run `npx tsc -b` first");
  process.exit(1);
}
const result = spawnSync(process.execPath, ["--test", ...selected], { stdio: "inherit" });
process.exit(result.status ?? 1);
