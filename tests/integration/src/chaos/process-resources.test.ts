import assert from "node:assert/strict";
import { open } from "node:fs/promises";
import { describe, it } from "node:test";
import { formatResources, processDiskReadBytes, ResourceLog, sampleProcess } from "./process-resources.js";

describe("process resources", () => {
  it("reads this process's RSS and sees a newly opened file descriptor", async () => {
    const before = await sampleProcess(process.pid);
    assert.ok(before !== undefined && before.rssMiB > 10, "a Node process holds more than 10 MiB");
    const file = await open(new URL(import.meta.url), "r");
    try {
      const after = await sampleProcess(process.pid);
      assert.equal(after?.fds, before.fds + 1);
    } finally {
      await file.close();
    }
  });

  it("says nothing for a process that is gone", async () => {
    assert.equal(await sampleProcess(2 ** 22 + 1), undefined);
    assert.equal(await processDiskReadBytes(2 ** 22 + 1), undefined);
  });

  it("reads how many bytes a process fetched from its disks", async () => {
    const bytes = await processDiskReadBytes(process.pid);
    assert.ok(bytes !== undefined && bytes >= 0, String(bytes));
  });

  it("keeps first, last and peak per member slot", () => {
    const log = new ResourceLog();
    log.add(1, { rssMiB: 60, fds: 30 });
    log.add(0, { rssMiB: 70, fds: 31 });
    log.add(1, { rssMiB: 300, fds: 45 });
    log.add(1, { rssMiB: 120, fds: 33 });
    assert.deepEqual(formatResources(log.report()), [
      "m0 RSS 70 -> 70 MiB (peak 70), fds 31 -> 31 (peak 31), 1 samples",
      "m1 RSS 60 -> 120 MiB (peak 300), fds 30 -> 33 (peak 45), 3 samples",
    ]);
  });
});
