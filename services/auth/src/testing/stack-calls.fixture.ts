// The clients the auth stack's tests call it with: Debian's etcdctl 3.4 (its exit code and
// output, refusals included), raw grpc-js unary calls with a token, and /metrics pages.
import { execFile } from "node:child_process";
import grpc from "@grpc/grpc-js";

export function etcdctl(
  endpoint: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      "/usr/bin/etcdctl",
      [`--endpoints=${endpoint}`, "--dial-timeout=3s", "--command-timeout=8s", ...args],
      { env: { ...process.env, ETCDCTL_API: "3" }, timeout: 20_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** etcdctl's error message: the last line of its stderr, without "Error: ". */
export const lastLine = (text: string) =>
  text
    .trim()
    .split("\n")
    .pop()!
    .replace(/^Error: /, "");

export function unary<Req, Res>(
  client: grpc.Client,
  method: (
    req: Req,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (e: grpc.ServiceError | null, r: Res) => void,
  ) => unknown,
  request: Req,
  metadata = new grpc.Metadata(),
): Promise<Res> {
  return new Promise((resolve, reject) =>
    method.call(client, request, metadata, { deadline: Date.now() + 10_000 }, (err, res) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

export function withToken(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set("token", token);
  return md;
}

/** The sum of a Prometheus text page's samples of `name` whose labels include all of `labels`. */
export function metricSum(page: string, name: string, ...labels: string[]): number {
  let total = 0;
  for (const line of page.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (labels.every((l) => line.includes(l))) total += Number(line.split(" ").pop());
  }
  return total;
}
