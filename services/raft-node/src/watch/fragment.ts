import { eventFieldSize, watchResponseBaseSize } from "./response-size.js";
import type { WatchResponse } from "./watch-response.js";

/**
 * Splits a response whose encoding would reach `maxBytes` into several, all but the last
 * flagged `fragment`, as etcd's sendFragments does for watches created with fragment=true:
 * each piece takes events while it stays under the limit and always holds at least one event
 * (a single event larger than the limit travels alone), and a response with fewer than two
 * events is never split.
 */
export function fragmentResponse(response: WatchResponse, maxBytes: number): WatchResponse[] {
  const { events } = response;
  if (events.length < 2) return [response];
  let total = watchResponseBaseSize(response);
  for (const event of events) total += eventFieldSize(event);
  if (total < maxBytes) return [response];

  const base = watchResponseBaseSize({ ...response, fragment: true });

  const pieces: WatchResponse[] = [];
  let index = 0;
  while (index < events.length) {
    let size = base;
    const start = index;
    while (index < events.length) {
      const next = size + eventFieldSize(events[index]);
      if (index > start && next >= maxBytes) break;
      size = next;
      index++;
    }
    pieces.push({ ...response, events: events.slice(start, index), fragment: index < events.length });
  }
  return pieces;
}
