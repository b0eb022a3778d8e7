// Changes a stopped member's stored data behind Raft's back: RocksDB opened directly, stored
// mvccpb.KeyValue records rewritten, as a disk or a bug that alters data at rest would.
import { join } from "node:path";
import { EXTRA_COLUMNS } from "../bootstrap/data-dir.js";
import { decodeKeyValue, encodeKeyValue, type KeyValue, META_COLUMN } from "../mvcc/mod.js";
import { RocksBackend } from "../mvcc/rocks-backend.js";

/**
 * Rewrites every stored revision for which `alter` returns a new record (undefined: left as
 * it is), synced; returns how many were rewritten.
 */
export async function alterStoredKeyValues(
  dataDir: string,
  alter: (kv: KeyValue) => KeyValue | undefined,
): Promise<number> {
  const db = await RocksBackend.open(join(dataDir, "member", "snap", "db"), [META_COLUMN, ...EXTRA_COLUMNS]);
  let altered = 0;
  try {
    const it = db.iterator({});
    const batch = db.batch();
    for (;;) {
      const chunk = it.nextSync(1000);
      for (let i = 0; i < chunk.keys.length; i++) {
        const changed = alter(decodeKeyValue(chunk.values[i]!));
        if (changed === undefined) continue;
        batch.put(chunk.keys[i]!, encodeKeyValue(changed));
        altered++;
      }
      if (chunk.finished) break;
    }
    it.close();
    batch.write(true);
  } finally {
    await db.close();
  }
  return altered;
}
