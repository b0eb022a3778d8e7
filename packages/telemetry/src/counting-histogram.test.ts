// CountingHistogram against prom-client's Histogram: the same observations read the same in the
// exposition format, and a gateway's workers' series add up through AggregatorRegistry.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AggregatorRegistry, Histogram, Registry } from "prom-client";
import { CountingHistogram } from "./counting-histogram.js";

const BUCKETS = [0.001, 0.01, 0.1, 1];
const OBSERVED: [string, number][] = [
  ["Range", 0.0005],
  ["Range", 0.001],
  ["Range", 0.05],
  ["Put", 2],
  ["Range", 0.0999],
  ["Put", 0.01],
];

describe("CountingHistogram", () => {
  it("exposes what prom-client's Histogram exposes for the same observations", async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const counting = new CountingHistogram({
      name: "h",
      help: "help",
      labelNames: ["method"],
      buckets: BUCKETS,
      registers: [ours],
    });
    const reference = new Histogram({
      name: "h",
      help: "help",
      labelNames: ["method"],
      buckets: BUCKETS,
      registers: [theirs],
    });
    counting.zero({ method: "Txn" });
    reference.zero({ method: "Txn" });
    for (const [method, value] of OBSERVED) {
      counting.labels(method).observe(value);
      reference.labels(method).observe(value);
    }
    const lines = (text: string) => text.split("\n").sort();
    assert.deepEqual(lines(await ours.metrics()), lines(await theirs.metrics()));
    assert.match(await ours.metrics(), /h_bucket\{le="0.1",method="Range"\} 4/);
    assert.match(await ours.metrics(), /h_count\{method="Txn"\} 0/);
  });

  it("adds up across registries (a gateway's workers)", async () => {
    const registries = [new Registry(), new Registry()];
    registries.forEach((registry, i) => {
      const h = new CountingHistogram({
        name: "h",
        help: "help",
        labelNames: [],
        buckets: BUCKETS,
        registers: [registry],
      });
      for (let n = 0; n <= i; n++) h.labels().observe(0.005);
    });
    const merged = AggregatorRegistry.aggregate(
      await Promise.all(registries.map((r) => r.getMetricsAsJSON())),
    );
    const text = await merged.metrics();
    assert.match(text, /h_bucket\{le="0.01"\} 3/);
    assert.match(text, /h_count 3/);
  });
});
