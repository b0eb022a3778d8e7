// A grpc-js server standing in for a member in the channel tests: bound to a free loopback
// port, plaintext.
import grpc from "@grpc/grpc-js";

/** Binds `server` to 127.0.0.1 on a free port; returns "127.0.0.1:<port>". */
export async function bindLoopback(server: grpc.Server): Promise<string> {
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return `127.0.0.1:${port}`;
}
