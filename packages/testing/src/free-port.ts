// Loopback ports for processes a test or tool is about to start. A port is picked below the
// kernel's ephemeral range: a port the kernel hands out for `listen(0)` is also what it gives
// outgoing connections as their local port, so under load a client (etcdctl, a gRPC channel)
// could take it before the process binds it (seen as EADDRINUSE in CI).
import { createServer } from "node:net";

// Below Linux's default ephemeral range (32768-60999) and above etcd's e2e suite (20000+).
const FREE_PORT_LOW = 22_000;
const FREE_PORT_HIGH = 32_000;
const ATTEMPTS = 50;

/** A port on `host` nothing listens on right now. */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const port = FREE_PORT_LOW + Math.floor(Math.random() * (FREE_PORT_HIGH - FREE_PORT_LOW));
    if (await canListen(port, host)) return port;
  }
  return listenOnce(0, host);
}

/** `count` distinct free ports on `host`. */
export async function freePorts(count: number, host = "127.0.0.1"): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort(host));
  return [...ports];
}

async function canListen(port: number, host: string): Promise<boolean> {
  return listenOnce(port, host).then(
    () => true,
    () => false,
  );
}

function listenOnce(port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(port, host, () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}
