// An interval tree over half-open key ranges [start, end), answering "which ranges contain this
// key" in O(log n + matches). Range watchers are looked up through it for every applied event,
// so a write does not cost a scan over every range watcher. Keys are byte strings held as latin1
// JS strings: one code unit per byte keeps byte order under `<`, and Map lookups stay cheap.
//
// An AVL tree ordered by (start, end), each node carrying the largest end of its subtree so a
// stabbing query can skip subtrees whose ranges all end at or before the key. `end === null`
// means unbounded (etcd's "from key" watch).

export type RangeEnd = string | null;

interface Node<V> {
  start: string;
  end: RangeEnd;
  value: V;
  left: Node<V> | null;
  right: Node<V> | null;
  height: number;
  maxEnd: RangeEnd;
}

function endAfter(a: RangeEnd, b: RangeEnd): boolean {
  if (a === null) return b !== null;
  return b !== null && a > b;
}

function compareRange(start: string, end: RangeEnd, node: Node<unknown>): number {
  if (start !== node.start) return start < node.start ? -1 : 1;
  if (end === node.end) return 0;
  return endAfter(end, node.end) ? 1 : -1;
}

function height(node: Node<unknown> | null): number {
  return node === null ? 0 : node.height;
}

function update<V>(node: Node<V>): Node<V> {
  node.height = 1 + Math.max(height(node.left), height(node.right));
  let maxEnd = node.end;
  if (node.left !== null && endAfter(node.left.maxEnd, maxEnd)) maxEnd = node.left.maxEnd;
  if (node.right !== null && endAfter(node.right.maxEnd, maxEnd)) maxEnd = node.right.maxEnd;
  node.maxEnd = maxEnd;
  return node;
}

function rotateRight<V>(node: Node<V>): Node<V> {
  const pivot = node.left!;
  node.left = pivot.right;
  pivot.right = update(node);
  return update(pivot);
}

function rotateLeft<V>(node: Node<V>): Node<V> {
  const pivot = node.right!;
  node.right = pivot.left;
  pivot.left = update(node);
  return update(pivot);
}

function rebalance<V>(node: Node<V>): Node<V> {
  update(node);
  const balance = height(node.left) - height(node.right);
  if (balance > 1) {
    if (height(node.left!.left) < height(node.left!.right)) node.left = rotateLeft(node.left!);
    return rotateRight(node);
  }
  if (balance < -1) {
    if (height(node.right!.right) < height(node.right!.left)) node.right = rotateRight(node.right!);
    return rotateLeft(node);
  }
  return node;
}

export class IntervalIndex<V> {
  private root: Node<V> | null = null;
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(start: string, end: RangeEnd): V | undefined {
    let node = this.root;
    while (node !== null) {
      const cmp = compareRange(start, end, node);
      if (cmp === 0) return node.value;
      node = cmp < 0 ? node.left : node.right;
    }
    return undefined;
  }

  /** Inserts the range, or replaces the value of an identical range. */
  set(start: string, end: RangeEnd, value: V): void {
    this.root = this.insert(this.root, start, end, value);
  }

  delete(start: string, end: RangeEnd): boolean {
    const before = this.count;
    this.root = this.remove(this.root, start, end);
    return this.count < before;
  }

  /** Calls `visit` with the value of every range containing `key`. */
  stab(key: string, visit: (value: V) => void): void {
    this.stabNode(this.root, key, visit);
  }

  /**
   * True when some range contains `key`. Descends one path: when the left subtree reaches past
   * `key` but holds no match, the range reaching furthest there starts after `key`, and so does
   * everything to the right, so there is never a reason to come back.
   */
  contains(key: string): boolean {
    let node = this.root;
    while (node !== null) {
      if (node.start <= key && (node.end === null || key < node.end)) return true;
      const left = node.left;
      if (left !== null && (left.maxEnd === null || key < left.maxEnd)) node = left;
      else if (key < node.start) return false;
      else node = node.right;
    }
    return false;
  }

  private stabNode(node: Node<V> | null, key: string, visit: (value: V) => void): void {
    while (node !== null) {
      if (node.maxEnd !== null && key >= node.maxEnd) return;
      this.stabNode(node.left, key, visit);
      // Every range in the right subtree starts at or after node.start.
      if (key < node.start) return;
      if (node.end === null || key < node.end) visit(node.value);
      node = node.right;
    }
  }

  private insert(node: Node<V> | null, start: string, end: RangeEnd, value: V): Node<V> {
    if (node === null) {
      this.count++;
      return { start, end, value, left: null, right: null, height: 1, maxEnd: end };
    }
    const cmp = compareRange(start, end, node);
    if (cmp === 0) {
      node.value = value;
      return node;
    }
    if (cmp < 0) node.left = this.insert(node.left, start, end, value);
    else node.right = this.insert(node.right, start, end, value);
    return rebalance(node);
  }

  private remove(node: Node<V> | null, start: string, end: RangeEnd): Node<V> | null {
    if (node === null) return null;
    const cmp = compareRange(start, end, node);
    if (cmp < 0) node.left = this.remove(node.left, start, end);
    else if (cmp > 0) node.right = this.remove(node.right, start, end);
    else {
      this.count--;
      if (node.left === null) return node.right;
      if (node.right === null) return node.left;
      let successor = node.right;
      while (successor.left !== null) successor = successor.left;
      node.start = successor.start;
      node.end = successor.end;
      node.value = successor.value;
      // The successor is removed from the right subtree; count it back since remove() decrements.
      this.count++;
      node.right = this.remove(node.right, successor.start, successor.end);
    }
    return rebalance(node);
  }
}
