// CPU a gateway and its members spend with no calls at all (timers, probes, keepalives): what
// cpu-per-op's per-call figures include at 1 client, spread over the calls of a round.
// Usage: node bench/dist/profile/idle-cpu.js [--seconds 10] [--gateway services/api-gateway/dist/main.js]
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { LocalCluster } from "@etcd-ts/raft-node";
import { cpuSeconds } from "../proc-cpu.js";
import { startGateway, stopGateway } from "./gateway-process.js";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    gateway: {
      type: "string",
      default: resolve(import.meta.dirname, "../../../services/api-gateway/dist/main.js"),
    },
  },
});
const cluster = await LocalCluster.start({ size: 3, token: "idle-cpu" });
try {
  const gateway = await startGateway(args.gateway, cluster);
  const child = gateway.child;
  try {
    await new Promise((r) => setTimeout(r, 3_000));
    const pids = [child.pid!, ...cluster.pids().values()];
    const before = pids.map((p) => cpuSeconds(p));
    const seconds = Number(args.seconds);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const after = pids.map((p) => cpuSeconds(p));
    const ms = after.map((a, i) => (((a - before[i]!) / seconds) * 1000).toFixed(1));
    console.log(`idle CPU ms per second: gateway ${ms[0]}, members ${ms.slice(1).join(", ")}`);
  } finally {
    await stopGateway(gateway);
  }
} finally {
  await cluster.close();
}
