// SlowDisk really slows a process's synced writes, and its reads that reach the device, and only
// that process's, only while limited.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { describe, it } from "node:test";
import { dropCachedPages, LoopDisk, SlowDisk, slowDiskUnavailable } from "./disk-faults.js";

/**
 * Runs `dd <args>` in a new process, placed first by `place` (it waits on its stdin until then);
 * returns the milliseconds it took.
 */
async function timedDd(args: string, place: (pid: number) => void): Promise<number> {
  const child = spawn("sh", ["-c", `read go; exec dd ${args} status=none`], {
    stdio: ["pipe", "ignore", "inherit"],
  });
  place(child.pid!);
  const started = performance.now();
  child.stdin.end("go\n");
  const [code] = await once(child, "exit");
  assert.equal(code, 0);
  return performance.now() - started;
}

/** 20 synced 4 KiB writes to `file`. */
const syncedWrites = (file: string, place: (pid: number) => void) =>
  timedDd(`if=/dev/zero of=${file} bs=4k count=20 oflag=dsync`, place);

/** Reads `file` whole in 4 KiB blocks. */
const reads = (file: string, place: (pid: number) => void, flags = "") =>
  timedDd(`if=${file} of=/dev/null bs=4k ${flags}`, place);

describe("SlowDisk", { skip: slowDiskUnavailable() }, () => {
  it("holds the writes of the processes in it at the limit while limited", async () => {
    const disk = LoopDisk.create({ diskBytes: 64 * 1024 * 1024, backingBytes: 128 * 1024 * 1024 });
    const slow = SlowDisk.create(disk.deviceNumber);
    try {
      const file = join(disk.mountPoint, "f");
      slow.limitWrites(10);
      const outside = await syncedWrites(file, () => {});
      const inside = await syncedWrites(file, (pid) => slow.add(pid));
      const movedOut = await syncedWrites(file, (pid) => {
        slow.add(pid);
        slow.remove(pid);
      });
      slow.limitWrites(0);
      const lifted = await syncedWrites(file, (pid) => slow.add(pid));
      // 20 synced writes are at least 20 write requests: 2 s at 10 a second.
      assert.ok(inside >= 1_800, `limited: ${inside.toFixed(0)} ms`);
      for (const [what, ms] of [
        ["a process outside", outside],
        ["a process moved out", movedOut],
        ["the limit lifted", lifted],
      ] as const) {
        assert.ok(ms < inside / 2, `${what}: ${ms.toFixed(0)} ms vs ${inside.toFixed(0)} ms limited`);
      }
    } finally {
      slow.destroy();
      disk.destroy();
    }
  });
});

describe("SlowDisk reads", { skip: slowDiskUnavailable() }, () => {
  it("holds reads that reach the device, not those the page cache answers", async () => {
    const disk = LoopDisk.create({ diskBytes: 64 * 1024 * 1024, backingBytes: 128 * 1024 * 1024 });
    const slow = SlowDisk.create(disk.deviceNumber);
    try {
      const file = join(disk.mountPoint, "f");
      await syncedWrites(file, () => {}); // 80 KiB, synced
      slow.limitReads(10);
      // 20 direct 4 KiB reads are 20 read requests: 2 s at 10 a second.
      const direct = await reads(file, (pid) => slow.add(pid), "iflag=direct");
      assert.ok(direct >= 1_800, `direct reads limited: ${direct.toFixed(0)} ms`);
      // Through the page cache: once evicted, the first read goes to the device (readahead
      // makes it one or a few requests), the second is answered from memory.
      assert.ok(dropCachedPages(disk.mountPoint) >= 1);
      const cold = await reads(file, (pid) => slow.add(pid));
      const warm = await reads(file, (pid) => slow.add(pid));
      assert.ok(cold >= 90, `an evicted file's read waits for the device: ${cold.toFixed(0)} ms`);
      assert.ok(warm < cold / 2, `a cached read does not: ${warm.toFixed(0)} ms vs ${cold.toFixed(0)} ms`);
      slow.limitReads(0);
      const lifted = await reads(file, (pid) => slow.add(pid), "iflag=direct");
      assert.ok(lifted < direct / 2, `the limit lifted: ${lifted.toFixed(0)} ms vs ${direct.toFixed(0)} ms`);
    } finally {
      slow.destroy();
      disk.destroy();
    }
  });
});
