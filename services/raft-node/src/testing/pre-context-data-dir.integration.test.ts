// Data dirs from before 59e0f3b: their bootstrap AddNode entries carry no member. A member whose
// store lost everything (power before its first snapshot) replays them; here all three start
// that way, so every peer URL a member learns comes from --initial-cluster's fallback (without
// it no member had a link to any other: no leader, nothing published, never ready).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { memberConfig, parseFlags } from "../config/flags.js";
import { memberIdFor } from "../membership/member-id.js";
import { AckedWrites } from "./acked-writes.fixture.js";
import { eventually } from "./eventually.fixture.js";
import { addressOf } from "./local-cluster.js";
import { writePreContextDataDir } from "./pre-context-data-dir.fixture.js";
import { suiteResources } from "./suite-clusters.fixture.js";

describe("data dirs whose bootstrap entries carry no member", { timeout: 120_000 }, () => {
  const owned = suiteResources();

  it("members replaying them into empty stores take the URLs from --initial-cluster and serve puts", async () => {
    const token = "pre-context";
    const cluster = await owned.cluster({
      size: 3,
      token,
      prepare: async (members) => {
        const ids = members.map((m) => memberIdFor([m.peerUrl], token));
        for (const [i, m] of members.entries()) {
          const config = memberConfig(parseFlags(["--name", m.name, "--data-dir", m.dataDir], {}));
          await writePreContextDataDir(config, ids, ids[i]!);
        }
      },
    });
    const writes = new AckedWrites(cluster.members.map(addressOf));
    await writes.run(() => writes.acked.size >= 50, 20_000);
    assert.ok(writes.acked.size >= 50, `only ${writes.acked.size} puts acknowledged`);
    for (const m of cluster.members) {
      await eventually(
        `${m.name} serves every acknowledged put`,
        async () => (await writes.missingOn(addressOf(m))).length === 0,
        20_000,
      );
    }
  });
});
