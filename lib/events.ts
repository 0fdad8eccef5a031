/**
 * A small typed event emitter: the one home for "call these listeners when X happens". A listener
 * that throws is logged and does not stop the others.
 */
import { log } from "./log.ts";

// deno-lint-ignore no-explicit-any
export type EventMap = Record<string, any[]>;

type Listener<A extends unknown[]> = (...args: A) => void;

export class Emitter<E extends EventMap> {
  #listeners: { [K in keyof E]?: Listener<E[K]>[] } = {};

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof E>(event: K, fn: Listener<E[K]>): () => void {
    const list = this.#listeners[event] ??= [];
    list.push(fn);
    return () => {
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    };
  }

  emit<K extends keyof E>(event: K, ...args: E[K]): void {
    for (const fn of [...(this.#listeners[event] ?? [])]) {
      try {
        fn(...args);
      } catch (e) {
        log.error("event listener failed", { event: String(event), error: (e as Error).message });
      }
    }
  }
}
