// A bbolt database held in memory, for tests of the page layout.
import { BboltReader } from "./bbolt-reader.js";

export function openBboltBuffer(file: Buffer): BboltReader {
  return BboltReader.open((offset, length) => file.subarray(offset, offset + length), file.length);
}
