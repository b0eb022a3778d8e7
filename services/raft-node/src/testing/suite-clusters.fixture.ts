// The clusters a test suite starts, and the disks they stand on, closed after the suite (the
// clusters first: a disk is removed only once no member has files open on it). Call inside a
// describe(): the hooks belong to that suite.
import { after, before } from "node:test";
import { diskFaultsUnavailable } from "@etcd-ts/testing";
import { haveEtcdctl } from "./etcdctl.fixture.js";
import { LocalCluster, type LocalClusterOptions } from "./local-cluster.js";

/**
 * describe() options of a suite that fills or fails real disks (root) under members it drives
 * with etcdctl. The whole suite: its tests take 20-70 s each on a loaded 2-core machine.
 */
export const DISK_FAULT_SUITE = {
  timeout: 240_000,
  skip: diskFaultsUnavailable() ?? (haveEtcdctl ? false : "etcdctl not installed"),
};

/** One cluster for the whole suite, started before its first test: `suite()` in a test gives it. */
export function suiteCluster(options: LocalClusterOptions): () => LocalCluster {
  let cluster: LocalCluster | undefined;
  before(async () => {
    cluster = await LocalCluster.start(options);
  });
  after(async () => {
    await cluster?.close();
  });
  return () => {
    if (cluster === undefined) throw new Error("the suite's cluster did not start");
    return cluster;
  };
}

/** Clusters and disks started by the suite's tests, each closed after the suite. */
export function suiteResources(): {
  cluster(options: LocalClusterOptions): Promise<LocalCluster>;
  disk<T extends { destroy(): void }>(disk: T): T;
} {
  const clusters: LocalCluster[] = [];
  const disks: { destroy(): void }[] = [];
  after(async () => {
    for (const c of clusters.splice(0)) await c.close();
    for (const d of disks.splice(0)) d.destroy();
  });
  return {
    async cluster(options) {
      const cluster = await LocalCluster.start(options);
      clusters.push(cluster);
      return cluster;
    },
    disk(disk) {
      disks.push(disk);
      return disk;
    },
  };
}
