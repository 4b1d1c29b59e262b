/** libsodium (WASM build), initialised once per process. */
import sodiumModule from 'libsodium-wrappers';

export type Sodium = typeof sodiumModule;

let ready: Promise<Sodium> | undefined;

/** The initialised libsodium; every KMS path awaits this before touching a key. */
export function loadSodium(): Promise<Sodium> {
  ready ??= sodiumModule.ready.then(() => sodiumModule);
  return ready;
}

/** Wipe secret bytes (no-op for undefined). Synchronous: callable from `finally` and callbacks. */
export function wipe(sodium: Sodium, ...buffers: Array<Uint8Array | undefined | null>): void {
  for (const b of buffers) if (b) sodium.memzero(b);
}
