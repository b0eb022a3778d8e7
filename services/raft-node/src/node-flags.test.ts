import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { MEMBER_NODE_FLAGS } from "./node-flags.js";
import { memberCommand } from "./testing/local-cluster.js";

const dockerfile = fileURLToPath(new URL("../../../deploy/Dockerfile", import.meta.url));

test("LocalCluster starts every build of a member with the member's node flags, before its entry file", () => {
  for (const build of ["source", "dist", undefined] as const) {
    const command = memberCommand(build, "/x/main.js");
    assert.deepEqual(command.slice(0, MEMBER_NODE_FLAGS.length), [...MEMBER_NODE_FLAGS], String(build));
    assert.equal(command.at(-1), "/x/main.js");
  }
});

test("the image's raft-node launcher runs node with the same flags", () => {
  // Runs the Dockerfile's launcher loop as written (into a temp dir instead of /usr/local/bin).
  const run = readFileSync(dockerfile, "utf8").match(/RUN (for s in raft-node[\s\S]*?done) \\/);
  assert.ok(run, "the launcher loop in deploy/Dockerfile");
  const loop = run[1]!.replaceAll("\\\n", " ").replaceAll("/usr/local/bin", '"$OUT"');
  const out = spawnSync(
    "sh",
    ["-c", `OUT=$(mktemp -d) && ${loop} && cat "$OUT/raft-node" "$OUT/auth" && rm -r "$OUT"`],
    {
      encoding: "utf8",
    },
  );
  assert.equal(out.status, 0, out.stderr);
  const [member, auth] = out.stdout.split("#!/bin/sh\n").filter((s) => s !== "");
  assert.equal(
    member,
    `exec node ${MEMBER_NODE_FLAGS.join(" ")} /app/services/raft-node/dist/main.js "$@"\n`,
  );
  assert.equal(auth, 'exec node /app/services/auth/dist/main.js "$@"\n');
});

test("node accepts the member's flags", () => {
  const out = spawnSync(process.execPath, [...MEMBER_NODE_FLAGS, "-e", "0"], { encoding: "utf8" });
  assert.equal(out.status, 0, out.stderr);
});
