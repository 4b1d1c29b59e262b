/**
 * Give memory back after a large batch (a fleet relist, 10,000 ENIs arriving): a full garbage
 * collection, so V8 frees the old-space pages the batch's garbage held (otherwise kept until a
 * later collection, ~10 MB of RSS at 10,000 ENIs), then glibc's malloc_trim for the native
 * heaps. Costs tens of milliseconds: callers do it once after such a batch, not per change.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { mallocTrim } from '../native/addon.js';

let collect: (() => void) | undefined;

/** V8's gc(), from a context created while --expose-gc was on (the process's own global has none). */
function fullGc(): void {
  if (!collect) {
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as () => void;
    setFlagsFromString('--no-expose-gc');
  }
  collect();
}

export function releaseMemory(): void {
  fullGc();
  mallocTrim();
}
