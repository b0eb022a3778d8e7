// hpack.js (the HPACK implementation of the `spdy` package) ships no types; this is the part we use.
declare module "hpack.js" {
  interface DecodedHeader {
    name: string;
    value: string;
    neverIndex?: boolean;
  }
  interface Decompressor {
    write(block: Buffer): void;
    execute(): void;
    read(): DecodedHeader | null;
  }
  /** Used by tests, to encode header blocks as a client would. */
  interface Compressor {
    write(headers: { name: string; value: string }[]): void;
    read(): Buffer | null;
  }
  const hpack: {
    decompressor: { create(options: { table: { size: number } }): Decompressor };
    compressor: { create(options: { table: { size: number } }): Compressor };
  };
  export default hpack;
}
