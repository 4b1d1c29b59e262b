/**
 * A FIFO reader/writer lock over ranges of data units, for the encrypted layer's read-modify-write.
 *
 * Every request holds one entry over the units it touches while it runs: shared for reads and for
 * unit-aligned writes/trims/zeroes, exclusive for requests that read-modify-write a partial unit.
 * Overlapping shared entries run together (the order of overlapping I/O is the
 * client's business, as in NBD); an exclusive entry waits for every overlapping earlier entry and
 * blocks every overlapping later one, so a read-modify-write never loses a concurrent write to
 * another sector of the same unit, and a read never sees a unit torn by a write to another
 * sector of it. Entries over disjoint units never wait for each other.
 *
 * Waiting is FIFO among overlapping conflicting entries (no starvation): an entry is granted when
 * it conflicts with no earlier entry, granted or waiting. The list holds the running requests
 * (bounded by the queue depth), so linear scans are cheap; an uncontended acquire allocates one
 * small object and no promise.
 */

export interface LockEntry {
  /** First unit (inclusive). */
  readonly start: number;
  /** Last unit + 1 (exclusive). */
  readonly end: number;
  readonly exclusive: boolean;
  /** @internal */
  granted: boolean;
  /** @internal */
  wake: (() => void) | undefined;
}

function conflicts(a: LockEntry, b: LockEntry): boolean {
  return (a.exclusive || b.exclusive) && a.start < b.end && b.start < a.end;
}

export class RangeLock {
  private readonly entries: LockEntry[] = [];

  /** Number of entries held or waiting (for tests and metrics). */
  get size(): number {
    return this.entries.length;
  }

  /**
   * Takes an entry over units [start, end). Returns it at once when nothing conflicts, otherwise
   * a promise of it. Always pair with {@link release}.
   */
  acquire(start: number, end: number, exclusive: boolean): LockEntry | Promise<LockEntry> {
    const entry: LockEntry = { start, end, exclusive, granted: true, wake: undefined };
    for (const other of this.entries) {
      if (conflicts(entry, other)) {
        entry.granted = false;
        break;
      }
    }
    this.entries.push(entry);
    if (entry.granted) return entry;
    return new Promise((resolve) => {
      entry.wake = () => resolve(entry);
    });
  }

  release(entry: LockEntry): void {
    const i = this.entries.indexOf(entry);
    if (i < 0) return;
    this.entries.splice(i, 1);
    // Grant, in order, every waiting entry that no earlier entry conflicts with.
    for (let j = i; j < this.entries.length; j++) {
      const waiting = this.entries[j]!;
      if (waiting.granted || !(waiting.start < entry.end && entry.start < waiting.end)) continue;
      let blocked = false;
      for (let k = 0; k < j; k++) {
        if (conflicts(waiting, this.entries[k]!)) {
          blocked = true;
          break;
        }
      }
      if (!blocked) {
        waiting.granted = true;
        const wake = waiting.wake;
        waiting.wake = undefined;
        wake?.();
      }
    }
  }
}
