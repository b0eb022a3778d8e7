// Finds which local process owns the client end of a loopback TCP connection, from /proc.
// Members all dial peers from 127.0.0.1 with ephemeral ports, so the address says nothing
// about the sender; the kernel's socket table and each process's fd table do. This works for
// any member implementation (etcd's rafthttp, our gRPC peer transport) without parsing its
// protocol. Linux only.

import { readdir, readFile, readlink } from "node:fs/promises";

/** Socket inode of the IPv4/IPv6 TCP socket whose local port is `port` and remote port `peerPort`. */
export async function socketInode(port: number, peerPort: number): Promise<number | undefined> {
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = await readFile(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10) continue;
      const local = Number.parseInt(fields[1].split(":")[1], 16);
      const remote = Number.parseInt(fields[2].split(":")[1], 16);
      if (local === port && remote === peerPort) return Number(fields[9]);
    }
  }
  return undefined;
}

/** Whether process `pid` holds socket `inode` among its open file descriptors. */
export async function processHoldsSocket(pid: number, inode: number): Promise<boolean> {
  const target = `socket:[${inode}]`;
  let fds: string[];
  try {
    fds = await readdir(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  for (const fd of fds) {
    try {
      if ((await readlink(`/proc/${pid}/fd/${fd}`)) === target) return true;
    } catch {
      // The fd closed while we looked.
    }
  }
  return false;
}

/**
 * Which of `candidates` (index -> pid) opened the connection that arrived from
 * 127.0.0.1:`remotePort` at our listening port `listenPort`.
 */
export async function connectionOwner(
  remotePort: number,
  listenPort: number,
  candidates: ReadonlyMap<number, number>,
): Promise<number | undefined> {
  const inode = await socketInode(remotePort, listenPort);
  if (inode === undefined || inode === 0) return undefined;
  for (const [index, pid] of candidates) {
    if (await processHoldsSocket(pid, inode)) return index;
  }
  return undefined;
}
