#!/usr/bin/env node
// otlp-receiver [--listen HOST:PORT] [--print]: an OTLP trace receiver process (HTTP and gRPC on one port) (see
// otlp/otlp-receiver.ts). Prints "otlp-receiver listening on HOST:PORT" once it listens (port 0
// picks a free one), and with --print one JSON line per received span.

import { OtlpReceiver } from "./otlp/otlp-receiver.js";

function parseArgs(argv: string[]): { host: string; port: number; print: boolean } {
  let listen = "127.0.0.1:4318";
  let print = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--print") print = true;
    else if (arg === "--listen" && i + 1 < argv.length) listen = argv[++i]!;
    else if (arg.startsWith("--listen=")) listen = arg.slice("--listen=".length);
    else throw new Error(`otlp-receiver: unknown argument ${arg}`);
  }
  const colon = listen.lastIndexOf(":");
  const port = Number(listen.slice(colon + 1));
  if (colon < 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`otlp-receiver: --listen wants HOST:PORT, got ${listen}`);
  }
  return { host: listen.slice(0, colon).replace(/^\[|\]$/g, ""), port, print };
}

const { host, port, print } = parseArgs(process.argv.slice(2));
const receiver = new OtlpReceiver(
  print
    ? {
        onSpans: (spans) => {
          for (const s of spans) process.stdout.write(`${JSON.stringify(s)}\n`);
        },
      }
    : {},
);
const bound = await receiver.listen(port, host);
process.stdout.write(`otlp-receiver listening on ${host}:${bound}\n`);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => void receiver.close().then(() => process.exit(0)));
}
