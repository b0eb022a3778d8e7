// Waits, bounded, for something a cluster does asynchronously (a snapshot file, a member
// catching up): polls `probe` every 250 ms; a probe that throws counts as "not yet".
export async function eventually(
  what: string,
  probe: () => Promise<boolean>,
  timeoutMs = 40_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await probe()) return;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (${String(last)})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
