// Debian's etcdctl 3.4 as the tests' client: what operators and etcd's e2e suite use.
import { spawn, spawnSync } from "node:child_process";

export const haveEtcdctl = spawnSync("etcdctl", ["version"]).status === 0;

/** Runs etcdctl against `endpoints` (host:port list), `input` on its stdin; its stdout. */
export function etcdctl(endpoints: string, args: string[], input = ""): Promise<string> {
  const argv = [`--endpoints=${endpoints}`, "--command-timeout=20s", "--dial-timeout=5s", ...args];
  return new Promise((resolve, reject) => {
    const child = spawn("etcdctl", argv, {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, ETCDCTL_API: "3" },
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (c) => {
      out += c;
    });
    child.stderr.on("data", (c) => {
      err += c;
    });
    // "close", not "exit": output may still be in the pipes when the process has exited.
    child.on("close", (code) =>
      code === 0 ? resolve(out) : reject(new Error(`etcdctl ${args.join(" ")}: ${err}`)),
    );
    // An etcdctl that fails before reading its stdin closes it: its exit code and stderr say why.
    child.stdin.on("error", () => {});
    child.stdin.end(input);
  });
}
