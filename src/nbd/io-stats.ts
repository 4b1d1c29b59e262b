/**
 * I/O counters of one export, filled by its NBD connections on the hot path and read
 * only when metrics are scraped. Plain numbers in preallocated arrays: recording a request
 * allocates nothing (no labels, no strings, no Map entries after an errno's first use).
 */
import { NbdCmd, NbdErrno } from './constants.js';

/** Upper bounds (seconds) of the request latency histogram buckets; +Inf is implicit. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
];

/** Commands counted, by wire number, with their metric label. */
export const COUNTED_COMMANDS: ReadonlyArray<readonly [number, string]> = [
  [NbdCmd.READ, 'read'],
  [NbdCmd.WRITE, 'write'],
  [NbdCmd.FLUSH, 'flush'],
  [NbdCmd.TRIM, 'trim'],
  [NbdCmd.CACHE, 'cache'],
  [NbdCmd.WRITE_ZEROES, 'write_zeroes'],
  [NbdCmd.BLOCK_STATUS, 'block_status'],
];

/** Counters of one command type. */
export class CommandStats {
  ops = 0;
  /** Payload bytes moved (READ, WRITE) or covered (TRIM, WRITE_ZEROES, CACHE, BLOCK_STATUS). */
  bytes = 0;
  latencySumSeconds = 0;
  /** Non-cumulative counts per bucket; the last one is +Inf. */
  readonly buckets = new Float64Array(LATENCY_BUCKETS_SECONDS.length + 1);
}

/** Spec name of an NBD errno value ("EIO"), or its number. */
export function nbdErrnoName(errno: number): string {
  for (const [name, value] of Object.entries(NbdErrno)) if (value === errno) return name;
  return String(errno);
}

/** Commands a native data plane serves itself, in the order of its counter blocks. */
const FAST_PATH_COMMANDS = [NbdCmd.READ, NbdCmd.WRITE] as const;

export class ExportIoStats {
  private readonly byCommand: CommandStats[] = Array.from({ length: NbdCmd.BLOCK_STATUS + 2 }, () => new CommandStats());
  /** Error replies by NBD errno. */
  readonly errors = new Map<number, number>();
  /** Counters kept elsewhere (native data planes), folded in whenever these are read. */
  private readonly sources = new Set<() => Float64Array>();

  /** Indexed by command number; unknown commands share the last slot. */
  get commands(): readonly CommandStats[] {
    for (const take of this.sources) this.addFastPath(take());
    return this.byCommand;
  }

  /**
   * Counts a native data plane's requests too: `take` returns its counters since the last call
   * (NbdLane.takeStats layout). The returned function folds the last ones in and detaches it.
   */
  attach(take: () => Float64Array): () => void {
    this.sources.add(take);
    return () => {
      if (this.sources.delete(take)) this.addFastPath(take());
    };
  }

  /** One request done: `errno` 0 for success. */
  record(command: number, bytes: number, seconds: number, errno: number): void {
    const stats = this.byCommand[command <= NbdCmd.BLOCK_STATUS ? command : NbdCmd.BLOCK_STATUS + 1]!;
    stats.ops++;
    if (errno === 0) stats.bytes += bytes;
    stats.latencySumSeconds += seconds;
    let i = 0;
    while (i < LATENCY_BUCKETS_SECONDS.length && seconds > LATENCY_BUCKETS_SECONDS[i]!) i++;
    stats.buckets[i]!++;
    if (errno !== 0) this.errors.set(errno, (this.errors.get(errno) ?? 0) + 1);
  }

  /** Adds [ops, bytes, latencySum, buckets…] blocks, one per FAST_PATH_COMMANDS entry. */
  private addFastPath(counters: Float64Array): void {
    const stride = 3 + LATENCY_BUCKETS_SECONDS.length + 1;
    FAST_PATH_COMMANDS.forEach((command, k) => {
      const at = k * stride;
      if (counters.length < at + stride || counters[at] === 0) return;
      const stats = this.byCommand[command]!;
      stats.ops += counters[at]!;
      stats.bytes += counters[at + 1]!;
      stats.latencySumSeconds += counters[at + 2]!;
      for (let i = 0; i < stats.buckets.length; i++) stats.buckets[i]! += counters[at + 3 + i]!;
    });
  }
}
