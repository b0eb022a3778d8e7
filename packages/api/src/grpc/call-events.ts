// The events of one call (ServerCall, the member's grpc-js-shaped call): node:events'
// EventEmitter subset that calls use, with nothing allocated until a listener is added.
//
// Why not EventEmitter: its constructor gives every instance a `{ __proto__: null }` listener
// table (a dictionary-mode object, ~150 bytes) and four fields. A unary put has two emitters
// (the server's call and the adapter's call) and most never get a listener; at 100 clients a put
// lives ~20 ms, past a few scavenges, so those tables were promoted and died in the old
// generation (bench/JOURNAL.md, night 2: what outlives a scavenge).

// biome-ignore lint/suspicious/noExplicitAny: listeners take whatever their event carries
type Listener = (...args: any[]) => void;

/** A listener added with `once`: removed before it runs. */
interface OnceWrapper {
  (...args: unknown[]): void;
  listener: Listener;
}

/**
 * on / addListener / prependListener / once / off / removeListener / removeAllListeners /
 * emit / listenerCount, with EventEmitter's semantics: listeners run in order with `this` the
 * emitter, a listener removed during an emit still runs in that emit, 'error' without a
 * listener throws.
 */
export class CallEvents {
  /**
   * event, listeners, event, listeners... made on the first listener: a call has few events,
   * so a scan beats a Map's table. One listener is kept as itself; more as an array that is
   * never changed in place (an emit in progress goes on over the one it took).
   */
  private listenerTable: (string | symbol | Listener | readonly Listener[])[] | undefined;

  on(event: string | symbol, listener: Listener): this {
    return this.addListener(event, listener);
  }

  addListener(event: string | symbol, listener: Listener): this {
    return this.add(event, listener, false);
  }

  prependListener(event: string | symbol, listener: Listener): this {
    return this.add(event, listener, true);
  }

  once(event: string | symbol, listener: Listener): this {
    return this.on(event, this.onceWrapper(event, listener));
  }

  prependOnceListener(event: string | symbol, listener: Listener): this {
    return this.prependListener(event, this.onceWrapper(event, listener));
  }

  off(event: string | symbol, listener: Listener): this {
    return this.removeListener(event, listener);
  }

  /** Removes the listener added last that is `listener` (or a `once` of it), as EventEmitter does. */
  removeListener(event: string | symbol, listener: Listener): this {
    const table = this.listenerTable;
    const at = this.indexOf(event);
    if (at < 0) return this;
    const list = listenersOf(table![at + 1]!);
    for (let i = list.length - 1; i >= 0; i--) {
      const l = list[i]!;
      if (l === listener || (l as Partial<OnceWrapper>).listener === listener) {
        if (list.length === 1) table!.splice(at, 2);
        else if (list.length === 2) table![at + 1] = list[1 - i]!;
        else table![at + 1] = list.slice(0, i).concat(list.slice(i + 1));
        break;
      }
    }
    return this;
  }

  removeAllListeners(event?: string | symbol): this {
    if (event === undefined) this.listenerTable = undefined;
    else {
      const at = this.indexOf(event);
      if (at >= 0) this.listenerTable!.splice(at, 2);
    }
    return this;
  }

  listenerCount(event: string | symbol): number {
    const at = this.indexOf(event);
    return at < 0 ? 0 : listenersOf(this.listenerTable![at + 1]!).length;
  }

  emit(event: string | symbol, ...args: unknown[]): boolean {
    const at = this.indexOf(event);
    if (at < 0) {
      if (event === "error")
        throw args[0] instanceof Error ? args[0] : new Error(`Unhandled error: ${String(args[0])}`);
      return false;
    }
    const listeners = this.listenerTable![at + 1]!;
    if (typeof listeners === "function") listeners.apply(this, args);
    else for (const l of listeners as readonly Listener[]) l.apply(this, args);
    return true;
  }

  private indexOf(event: string | symbol): number {
    const table = this.listenerTable;
    if (table === undefined) return -1;
    for (let i = 0; i < table.length; i += 2) if (table[i] === event) return i;
    return -1;
  }

  private add(event: string | symbol, listener: Listener, first: boolean): this {
    const at = this.indexOf(event);
    if (at < 0) {
      this.listenerTable ??= [];
      this.listenerTable.push(event, listener);
      return this;
    }
    const list = listenersOf(this.listenerTable![at + 1]!);
    this.listenerTable![at + 1] = first ? [listener, ...list] : [...list, listener];
    return this;
  }

  private onceWrapper(event: string | symbol, listener: Listener): OnceWrapper {
    let fired = false;
    const wrapper = ((...args: unknown[]) => {
      if (fired) return;
      fired = true;
      this.removeListener(event, wrapper);
      listener.apply(this, args);
    }) as OnceWrapper;
    wrapper.listener = listener;
    return wrapper;
  }
}

function listenersOf(entry: string | symbol | Listener | readonly Listener[]): readonly Listener[] {
  return typeof entry === "function" ? [entry] : (entry as readonly Listener[]);
}
