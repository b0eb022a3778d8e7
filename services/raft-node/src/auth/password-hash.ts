// bcrypt in etcd's format ($2a$/$2b$ hashes of Go's golang.org/x/crypto/bcrypt; either verifies
// on both sides). The `bcrypt` package (>= 6) ships prebuilt N-API binaries inside its npm
// tarball (nothing downloaded at install), and its async hash/compare run on libuv's thread
// pool, so a member's event loop never blocks on the ~50-100 ms a cost-10 hash takes. Called
// only in the RPC layer, before proposing (hash) or before Authenticate proposes (compare),
// never on the apply path.
import bcrypt from "bcrypt";

export const DEFAULT_BCRYPT_COST = 10;

export async function hashPassword(password: string, cost: number): Promise<Buffer> {
  return Buffer.from(await bcrypt.hash(password, cost));
}

export function passwordMatches(password: string, hash: Buffer): Promise<boolean> {
  if (hash.length === 0) return Promise.resolve(false);
  return bcrypt.compare(password, hash.toString("latin1"));
}
