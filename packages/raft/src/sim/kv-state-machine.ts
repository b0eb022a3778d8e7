// The replicated application each simulated node runs: a small key-value map fed by
// "p<id> <key>=<value>" proposals, plus a digest chained over every applied entry. The digest
// makes "two nodes applied the same history" a string comparison, including across snapshot
// install and restart, where the entries themselves are no longer there to compare.

import { type Entry, EntryType } from "../types.js";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

export const EMPTY_DIGEST = "0000000000000000";

/** Two FNV-1a lanes with different offsets: 64 bits, plenty against accidental collisions. */
function chainDigest(prev: string, e: Entry): string {
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193 ^ 0x5bd1e995;
  const mix = (byte: number) => {
    h1 = Math.imul(h1 ^ byte, 0x01000193);
    h2 = Math.imul(h2 ^ byte, 0x0100019d);
  };
  for (let i = 0; i < prev.length; i++) mix(prev.charCodeAt(i));
  for (const n of [e.index, e.term, e.type]) {
    for (let k = 0; k < 4; k++) mix((n >>> (8 * k)) & 0xff);
    mix(Math.floor(n / 2 ** 32) & 0xff);
  }
  for (let i = 0; i < e.data.length; i++) mix(e.data[i]);
  return (h1 >>> 0).toString(16).padStart(8, "0") + (h2 >>> 0).toString(16).padStart(8, "0");
}

export function proposalData(proposalId: number, key: string, value: string): Uint8Array {
  return encoder.encode(`p${proposalId} ${key}=${value}`);
}

interface Image {
  index: number;
  digest: string;
  kv: [string, string][];
}

export class KvStateMachine {
  private constructor(
    private index: number,
    private currentDigest: string,
    private readonly kv: Map<string, string>,
  ) {}

  static empty(): KvStateMachine {
    return new KvStateMachine(0, EMPTY_DIGEST, new Map());
  }

  /** Rebuilds the state machine from a snapshot's data (empty data: the empty state at index 0). */
  static restore(index: number, data: Uint8Array): KvStateMachine {
    if (data.length === 0) {
      if (index !== 0) throw new Error(`snapshot at index ${index} carries no state machine image`);
      return KvStateMachine.empty();
    }
    const image = JSON.parse(decoder.decode(data)) as Image;
    if (image.index !== index) {
      throw new Error(`snapshot metadata says index ${index} but its image is of index ${image.index}`);
    }
    return new KvStateMachine(image.index, image.digest, new Map(image.kv));
  }

  get appliedIndex(): number {
    return this.index;
  }

  get digest(): string {
    return this.currentDigest;
  }

  get(key: string): string | undefined {
    return this.kv.get(key);
  }

  /** Applies one committed entry; conf changes only advance the digest (Raft applies them). */
  apply(e: Entry): void {
    if (e.index !== this.index + 1) {
      throw new Error(`state machine at index ${this.index} asked to apply index ${e.index}`);
    }
    if (e.type === EntryType.Normal && e.data.length > 0) {
      const text = decoder.decode(e.data);
      const space = text.indexOf(" ");
      const eq = text.indexOf("=", space);
      if (space < 0 || eq < 0) throw new Error(`malformed proposal ${JSON.stringify(text)}`);
      this.kv.set(text.slice(space + 1, eq), text.slice(eq + 1));
    }
    this.index = e.index;
    this.currentDigest = chainDigest(this.currentDigest, e);
  }

  snapshotData(): Uint8Array {
    const image: Image = { index: this.index, digest: this.currentDigest, kv: [...this.kv].sort() };
    return encoder.encode(JSON.stringify(image));
  }
}
