// The crash-safe switch to a defragmented copy (database-files.ts): which directory a restart
// opens after a crash at each step, on real directories.
import assert from "node:assert/strict";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { defragDirOf, markCopyInUse, recoverInterruptedDefrag } from "./database-files.js";
import { tempDir } from "./store-fixture.js";

async function database(path: string, name: string): Promise<void> {
  await mkdir(path, { recursive: true });
  await writeFile(join(path, "CURRENT"), name);
}

const nameAt = (path: string) => readFile(join(path, "CURRENT"), "utf8");

describe("switching to a defragmented copy", () => {
  it("a copy into location.defrag is the truth once marked, and is moved to location", async () => {
    const dir = await tempDir();
    const db = join(dir.path, "db");
    try {
      await database(db, "old");
      await database(defragDirOf(db), "copy");
      // A crash before the mark: the copy is discarded.
      await recoverInterruptedDefrag(db);
      assert.equal(await nameAt(db), "old");
      assert.deepEqual(await readdir(dir.path), ["db"]);
      // Marked: the copy wins, whether or not the old directory was removed yet.
      await database(defragDirOf(db), "copy");
      await markCopyInUse(db, defragDirOf(db));
      await recoverInterruptedDefrag(db);
      assert.equal(await nameAt(db), "copy");
      assert.deepEqual(await readdir(dir.path), ["db"]);
    } finally {
      await dir.remove();
    }
  });

  it("a copy into location, made while the store lives in location.defrag, is the truth once the mark is gone", async () => {
    const dir = await tempDir();
    const db = join(dir.path, "db");
    try {
      // Living in the first defragmentation's copy; the old location was removed.
      await database(defragDirOf(db), "first copy");
      await markCopyInUse(db, defragDirOf(db));
      // A second copy into location, interrupted: the marked copy wins.
      await database(db, "second copy, partial");
      await recoverInterruptedDefrag(db);
      assert.equal(await nameAt(db), "first copy");
      // The second copy completed and fenced: it unmarks the first, and wins.
      await database(defragDirOf(db), "first copy");
      await markCopyInUse(db, defragDirOf(db));
      await database(db, "second copy");
      await markCopyInUse(db, db);
      await recoverInterruptedDefrag(db);
      assert.equal(await nameAt(db), "second copy");
      assert.deepEqual(await readdir(dir.path), ["db"]);
    } finally {
      await dir.remove();
    }
  });
});
