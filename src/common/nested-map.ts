/**
 * A map of maps (outer key → inner key → value) that drops an outer entry with its last inner
 * one. For indexes of many entries under few outer keys (ENIs by VPC and address, interfaces by
 * host, claims by subnet): no joined key string per entry.
 */
export class NestedMap<A, B, V> {
  private readonly outer = new Map<A, Map<B, V>>();

  get(a: A, b: B): V | undefined {
    return this.outer.get(a)?.get(b);
  }

  set(a: A, b: B, value: V): void {
    let inner = this.outer.get(a);
    if (!inner) this.outer.set(a, (inner = new Map()));
    inner.set(b, value);
  }

  /** Whether there was such an entry. */
  delete(a: A, b: B): boolean {
    const inner = this.outer.get(a);
    if (!inner?.delete(b)) return false;
    if (!inner.size) this.outer.delete(a);
    return true;
  }

  clear(): void {
    this.outer.clear();
  }

  /** Each outer key with its (non-empty) inner map. */
  groups(): IterableIterator<[A, ReadonlyMap<B, V>]> {
    return this.outer.entries();
  }
}
