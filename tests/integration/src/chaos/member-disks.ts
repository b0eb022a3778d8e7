// Each member's data dir on a disk of its own, for the disk faults: a small tmpfs that can be
// filled (disk-full) or an ext4 loop disk whose writes and reads a blkio cgroup can slow (slow-disk).
// Needs root; @etcd-ts/testing's disk-faults.ts makes the disks.
import { join } from "node:path";
import type { LocalCluster, MemberProcess } from "@etcd-ts/raft-node";
import { dropCachedPages, LoopDisk, SlowDisk, SmallFilesystem } from "@etcd-ts/testing";

export class MemberDisks {
  private constructor(
    private readonly small: Map<string, SmallFilesystem>,
    private readonly slowable: Map<string, { disk: LoopDisk; slow: SlowDisk }>,
  ) {}

  /** `bytes` of tmpfs per member: `fill` makes its next write that needs space fail with ENOSPC. */
  static small(names: readonly string[], bytes: number): MemberDisks {
    return new MemberDisks(new Map(names.map((n) => [n, SmallFilesystem.create(bytes)])), new Map());
  }

  /** A loop disk per member whose writes `slow` can limit. */
  static slowable(names: readonly string[]): MemberDisks {
    const disks = new Map<string, { disk: LoopDisk; slow: SlowDisk }>();
    for (const n of names) {
      const disk = LoopDisk.create({ diskBytes: 256 * 1024 * 1024, backingBytes: 512 * 1024 * 1024 });
      disks.set(n, { disk, slow: SlowDisk.create(disk.deviceNumber) });
    }
    return new MemberDisks(new Map(), disks);
  }

  /** LocalCluster's `dataDirs`: each member's on its own disk. */
  dataDirs(): Record<string, string> {
    const dirs: Record<string, string> = {};
    for (const [n, fs] of this.small) dirs[n] = join(fs.path, `${n}.data`);
    for (const [n, { disk }] of this.slowable) dirs[n] = join(disk.mountPoint, `${n}.data`);
    return dirs;
  }

  /**
   * Takes every free byte of the member's file system: its next write that needs space fails
   * with ENOSPC, and a member (ours, and etcd) is then expected to exit, which is no crash.
   */
  fill(cluster: LocalCluster, m: MemberProcess): void {
    const fs = this.small.get(m.name);
    if (fs === undefined) throw new Error("disk faults need small disks (MemberDisks.small)");
    cluster.expectExit(m);
    fs.fill();
  }

  /** Space returns on the member's file system. */
  unfill(m: MemberProcess): void {
    this.small.get(m.name)?.unfill();
  }

  /**
   * The member's disk takes at most `writeIops` write requests a second (its fsyncs wait in the
   * block layer) and `readIops` read requests (0: reads unlimited) until `fast`; its data dir's
   * cached pages are dropped, so its reads reach the disk until they are cached again. Applies
   * to the process running now; a restart escapes it.
   */
  slow(m: MemberProcess, writeIops: number, readIops = 0): void {
    const d = this.slowable.get(m.name);
    if (d === undefined) throw new Error("slow disks need slowable disks (MemberDisks.slowable)");
    d.slow.limitWrites(writeIops);
    d.slow.limitReads(readIops);
    if (m.child?.pid !== undefined) d.slow.add(m.child.pid);
    if (readIops > 0) dropCachedPages(m.dataDir);
  }

  /** The member's disk is at full speed again. */
  fast(m: MemberProcess): void {
    const d = this.slowable.get(m.name);
    if (d === undefined) return;
    d.slow.limitWrites(0);
    d.slow.limitReads(0);
    if (m.child?.pid !== undefined) d.slow.remove(m.child.pid);
  }

  /** Unmounts and removes every disk (after the members are gone). */
  destroy(): void {
    for (const fs of this.small.values()) fs.destroy();
    this.small.clear();
    for (const { disk, slow } of this.slowable.values()) {
      slow.destroy();
      disk.destroy();
    }
    this.slowable.clear();
  }
}
