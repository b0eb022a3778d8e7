// The otlp-receiver as a child process, for tests that check traces across processes: a real
// OTLP/HTTP endpoint the services export to, and the spans of one trace read back from it.
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { ReceivedSpan } from "./otlp-trace-decoding.js";

const RECEIVER_MAIN = fileURLToPath(
  new URL(`../otlp-receiver-main.${import.meta.url.endsWith(".ts") ? "ts" : "js"}`, import.meta.url),
);

export interface OtlpReceiverProcess {
  child: ChildProcess;
  /** http://HOST:PORT: OTEL_EXPORTER_OTLP_ENDPOINT for the services. */
  url: string;
  /**
   * The trace's spans once `complete` holds for them; exports are batched, so this polls, for at
   * most `timeoutMs` (default 20 s), and then returns what has arrived.
   */
  traceSpans(
    traceId: string,
    complete: (spans: ReceivedSpan[]) => boolean,
    timeoutMs?: number,
  ): Promise<ReceivedSpan[]>;
  /**
   * `base` (this process's environment by default) set up to export every span here at once:
   * this endpoint over OTLP/HTTP, sampling whatever the caller's traceparent says, 100 ms batches.
   */
  exportingEnv(base?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
  stop(): void;
}

function exportingEnv(url: string, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...base,
    OTEL_EXPORTER_OTLP_ENDPOINT: url,
    OTEL_TRACES_SAMPLER: "parentbased_always_on",
    OTEL_BSP_SCHEDULE_DELAY: "100",
  };
  delete env.OTEL_SDK_DISABLED;
  delete env.OTEL_EXPORTER_OTLP_PROTOCOL;
  return env;
}

/** Starts a receiver on a free loopback port (with this process's Node flags, so sources run too). */
export function startOtlpReceiverProcess(): Promise<OtlpReceiverProcess> {
  const execArgv = process.execArgv.filter((a) => !a.startsWith("--test"));
  const child = spawn(process.execPath, [...execArgv, RECEIVER_MAIN, "--listen", "127.0.0.1:0"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`otlp-receiver did not start: ${out}`)), 30_000);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const m = /listening on ([\d.]+:\d+)/.exec(out);
      if (m === null) return;
      clearTimeout(timer);
      const url = `http://${m[1]}`;
      resolve({
        child,
        url,
        traceSpans: (id, complete, ms) => poll(url, id, complete, ms),
        exportingEnv: (base) => exportingEnv(url, base),
        stop: () => child.kill(),
      });
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`otlp-receiver exited with ${code}: ${out}`));
    });
  });
}

async function poll(
  url: string,
  traceId: string,
  complete: (spans: ReceivedSpan[]) => boolean,
  timeoutMs = 20_000,
): Promise<ReceivedSpan[]> {
  const deadline = Date.now() + timeoutMs;
  let spans: ReceivedSpan[] = [];
  for (;;) {
    const res = await fetch(`${url}/api/traces/${traceId}`);
    spans = ((await res.json()) as { spans: ReceivedSpan[] }).spans;
    if (complete(spans) || Date.now() > deadline) return spans;
    await new Promise((r) => setTimeout(r, 200));
  }
}
