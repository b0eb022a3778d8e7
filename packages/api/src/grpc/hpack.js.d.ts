// hpack.js (the HPACK implementation of the `spdy` package) ships no types. Tests only (a dev
// dependency): its encoder makes header blocks as a client would, with a dynamic table and
// Huffman strings, for our decoder (h2/hpack-decoder.ts) to read. Its table option is `maxSize`
// (with any other name its tables never evict).
declare module "hpack.js" {
  interface Compressor {
    write(headers: { name: string; value: string }[]): void;
    read(): Buffer | null;
  }
  const hpack: {
    compressor: { create(options: { table: { maxSize: number } }): Compressor };
  };
  export default hpack;
}
