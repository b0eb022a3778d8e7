// A min-heap of (lease ID, time) with at most one entry per lease, so re-registering a lease
// (renewed, extended on promotion, retried after a revoke that did not commit) moves its entry
// in O(log n) instead of leaving stale duplicates behind, as etcd's LeaseExpiredNotifier does.

interface Entry {
  id: bigint;
  time: number;
}

export class LeaseTimeQueue {
  private readonly heap: Entry[] = [];
  private readonly positions = new Map<bigint, number>();

  get size(): number {
    return this.heap.length;
  }

  /** The earliest entry, if any. */
  peek(): Readonly<Entry> | undefined {
    return this.heap[0];
  }

  timeOf(id: bigint): number | undefined {
    const position = this.positions.get(id);
    return position === undefined ? undefined : this.heap[position].time;
  }

  /** Inserts the lease, or moves its existing entry to `time`. */
  upsert(id: bigint, time: number): void {
    const position = this.positions.get(id);
    if (position === undefined) {
      this.heap.push({ id, time });
      this.positions.set(id, this.heap.length - 1);
      this.siftUp(this.heap.length - 1);
      return;
    }
    const entry = this.heap[position];
    const earlier = time < entry.time;
    entry.time = time;
    if (earlier) this.siftUp(position);
    else this.siftDown(position);
  }

  pop(): Entry | undefined {
    if (this.heap.length === 0) return undefined;
    const top = this.heap[0];
    this.removeAt(0);
    return top;
  }

  remove(id: bigint): boolean {
    const position = this.positions.get(id);
    if (position === undefined) return false;
    this.removeAt(position);
    return true;
  }

  clear(): void {
    this.heap.length = 0;
    this.positions.clear();
  }

  private removeAt(position: number): void {
    const removed = this.heap[position];
    this.positions.delete(removed.id);
    const last = this.heap.pop()!;
    if (position === this.heap.length) return;
    this.heap[position] = last;
    this.positions.set(last.id, position);
    this.siftDown(position);
    this.siftUp(position);
  }

  private siftUp(position: number): void {
    const entry = this.heap[position];
    while (position > 0) {
      const parentPosition = (position - 1) >> 1;
      const parent = this.heap[parentPosition];
      if (parent.time <= entry.time) break;
      this.heap[position] = parent;
      this.positions.set(parent.id, position);
      position = parentPosition;
    }
    this.heap[position] = entry;
    this.positions.set(entry.id, position);
  }

  private siftDown(position: number): void {
    const entry = this.heap[position];
    const length = this.heap.length;
    for (;;) {
      let child = 2 * position + 1;
      if (child >= length) break;
      if (child + 1 < length && this.heap[child + 1].time < this.heap[child].time) child++;
      if (this.heap[child].time >= entry.time) break;
      this.heap[position] = this.heap[child];
      this.positions.set(this.heap[position].id, position);
      position = child;
    }
    this.heap[position] = entry;
    this.positions.set(entry.id, position);
  }
}
