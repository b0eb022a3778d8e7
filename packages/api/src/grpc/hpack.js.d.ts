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
  const hpack: {
    decompressor: { create(options: { table: { size: number } }): Decompressor };
  };
  export default hpack;
}
