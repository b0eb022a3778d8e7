// Retries with exponential back-off and full jitter (AWS's advice: spreads retries of many
// clients), bounded by attempts. Only failures `retryable` accepts are retried.

export interface RetryOptions {
  /** Total tries, the first included. */
  attempts: number;
  /** The first back-off's ceiling; doubles each time up to `maxDelayMs`. */
  baseDelayMs: number;
  maxDelayMs: number;
  retryable(err: unknown): boolean;
  /** Called before each back-off with the failure and the attempt that failed (1-based). */
  onRetry?(err: unknown, attempt: number, delayMs: number): void;
  /** Injected in tests; Math.random otherwise. */
  random?: () => number;
}

export function backoffDelay(attempt: number, options: RetryOptions): number {
  const ceiling = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** (attempt - 1));
  return Math.floor((options.random ?? Math.random)() * ceiling);
}

export async function withRetries<T>(
  run: (attempt: number) => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  if (!Number.isInteger(options.attempts) || options.attempts < 1)
    throw new Error("attempts must be at least 1");
  for (let attempt = 1; ; attempt++) {
    try {
      return await run(attempt);
    } catch (err) {
      if (attempt >= options.attempts || !options.retryable(err)) throw err;
      const delay = backoffDelay(attempt, options);
      options.onRetry?.(err, attempt, delay);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
