import assert from "node:assert/strict";
import { createServer } from "node:net";
import { describe, it } from "node:test";
import { freePort, freePorts } from "./mod.js";

describe("freePort", () => {
  it("gives a bindable port below the kernel's ephemeral range", async () => {
    const port = await freePort();
    assert.ok(port >= 22_000 && port < 32_000, `${port}`);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => resolve());
    });
    await new Promise((r) => server.close(r));
  });

  it("gives distinct ports, none of them one that is in use", async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", () => r()));
    const taken = (busy.address() as { port: number }).port;
    const ports = await freePorts(20);
    assert.equal(new Set(ports).size, 20);
    assert.ok(!ports.includes(taken));
    await new Promise((r) => busy.close(r));
  });
});
