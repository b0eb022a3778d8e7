// Starts a 3-member etcd on loopback for manual runs and measurements; prints the member
// addresses as JSON on stdout and stops the cluster (data removed) on SIGTERM/SIGINT.

import { EtcdCluster } from "./etcd-cluster.js";

const cluster = await EtcdCluster.start({ electionTimeoutMs: 1000, heartbeatMs: 100 });
process.stdout.write(`${JSON.stringify({ endpoints: cluster.endpoints })}\n`);
const stop = () => {
  cluster.stop().then(() => process.exit(0));
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
