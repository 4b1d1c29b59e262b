/**
 * Helpers every backend uses: request range checks that throw BackendError with the code the NBD
 * errno map expects, and an in-flight operation counter that lets close() wait for running
 * requests (so that an fd is never closed — and reused by the kernel — under a running pread/pwrite).
 */
import { BackendError } from './backend.js';

/** Operations, for messages and for the past-the-end code. */
export type Op = 'read' | 'write' | 'trim' | 'zero' | 'cache' | 'extents';

/**
 * Throws unless [offset, offset+length) is a well-formed, `minBlock`-aligned range inside `size`.
 * Codes follow the NBD spec's choice: past the end is ENOSPC for write/zero, EINVAL otherwise;
 * misaligned or malformed is EINVAL. A zero length is accepted (at any offset ≤ size).
 */
export function checkRange(op: Op, offset: number, length: number, size: number, minBlock: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new BackendError('EINVAL', `${op}: bad range offset ${offset} length ${length}`);
  }
  if (offset + length > size) {
    throw new BackendError(
      op === 'write' || op === 'zero' ? 'ENOSPC' : 'EINVAL',
      `${op} of ${length} bytes at ${offset} is beyond the ${size}-byte volume`,
    );
  }
  if (offset % minBlock !== 0 || length % minBlock !== 0) {
    throw new BackendError('EINVAL', `${op} of ${length} bytes at ${offset} is not aligned to ${minBlock} bytes`);
  }
}

/** The error of any request on a closed (or closing) backend. */
export function closedError(what: string): BackendError {
  return new BackendError('ESHUTDOWN', `${what} is closed`);
}

/** The error of a modifying request on a read-only backend. */
export function readOnlyError(what: string, op: Op): BackendError {
  return new BackendError('EROFS', `${op}: ${what} is read-only`);
}

/**
 * Counts running operations. `enter()` throws ESHUTDOWN once `shutdown()` was called;
 * `shutdown()` resolves when the count drops to zero.
 */
export class InFlight {
  private count = 0;
  private closing = false;
  private drained: (() => void) | undefined;

  constructor(private readonly what: string) {}

  get closed(): boolean {
    return this.closing;
  }

  enter(): void {
    if (this.closing) throw closedError(this.what);
    this.count++;
  }

  leave(): void {
    if (--this.count === 0 && this.drained) {
      this.drained();
      this.drained = undefined;
    }
  }

  /** Refuses new operations; resolves once the running ones are done. */
  shutdown(): Promise<void> {
    this.closing = true;
    if (this.count === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const prev = this.drained;
      this.drained = () => {
        prev?.();
        resolve();
      };
    });
  }
}
