/**
 * The wrapped-data-key ("ciphertext blob") format, and the wrap/unwrap primitives.
 *
 * Blob, format version 1 (all integers big-endian):
 *
 *     offset  size  field
 *          0     3  magic "NKB" (0x4e 0x4b 0x42): nitride key blob
 *          3     1  format version = 1
 *          4    16  master key id: the 16 bytes behind `key-<32 hex>`
 *         20     4  master key version (u32, ≥ 1)
 *         24    24  nonce (random, XChaCha20)
 *         48     n  XChaCha20-Poly1305-IETF(data key) ‖ 16-byte Poly1305 tag
 *
 * The AEAD associated data binds everything that decides how the blob is read:
 *
 *     AD = blob[0..24)                     magic, format version, key id, key version
 *        ‖ u32 count                       number of encryption-context pairs
 *        ‖ for each pair, sorted by the UTF-8 bytes of its key:
 *              u32 len(key) ‖ key ‖ u32 len(value) ‖ value     (UTF-8)
 *
 * so a blob opens only under the same key version *and* the same encryption context;
 * flipping any header bit, moving the blob to another volume (other context) or
 * truncating it fails authentication. The nonce is the AEAD's public nonce; 192 random bits
 * make reuse under one master key negligible without any counter state.
 */
import { KmsInvalidCiphertextError, type EncryptionContext } from './provider.js';
import { UsageError } from '../common/errors.js';
import type { Sodium } from './sodium.js';

export const BLOB_MAGIC = Buffer.from('NKB', 'latin1');
export const BLOB_FORMAT_VERSION = 1;
export const KEY_ID_BYTES = 16;
export const NONCE_BYTES = 24;
export const TAG_BYTES = 16;
export const HEADER_BYTES = BLOB_MAGIC.length + 1 + KEY_ID_BYTES + 4 + NONCE_BYTES;
/** Master key length (XChaCha20-Poly1305 key). */
export const MASTER_KEY_BYTES = 32;
/** Largest blob accepted (a 1024-byte data key). */
export const MAX_BLOB_BYTES = HEADER_BYTES + 1024 + TAG_BYTES;

/** Limits on encryption contexts (checked everywhere a context enters). */
export const MAX_CONTEXT_PAIRS = 64;
export const MAX_CONTEXT_KEY_CHARS = 256;
export const MAX_CONTEXT_VALUE_CHARS = 1024;

const KEY_ID_PATTERN = /^key-[0-9a-f]{32}$/;

/** Whether `ref` is a canonical key id (`key-` + 32 lowercase hex digits). */
export function isKeyId(ref: string): boolean {
  return KEY_ID_PATTERN.test(ref);
}

/** The parsed fixed header of a blob. */
export interface BlobHeader {
  keyId: string;
  keyVersion: number;
  nonce: Uint8Array;
  /** blob[0..24): the header bytes that go into the associated data. */
  prefix: Uint8Array;
  ciphertext: Uint8Array;
}

/** Throw a UsageError unless `context` is a well-formed encryption context. */
export function checkContext(context: unknown): asserts context is EncryptionContext {
  if (typeof context !== 'object' || context === null || Array.isArray(context)) {
    throw new UsageError('encryption context must be an object of string values');
  }
  const entries = Object.entries(context as Record<string, unknown>);
  if (entries.length > MAX_CONTEXT_PAIRS) throw new UsageError(`encryption context has more than ${MAX_CONTEXT_PAIRS} pairs`);
  for (const [k, v] of entries) {
    if (k.length === 0 || k.length > MAX_CONTEXT_KEY_CHARS) throw new UsageError(`encryption context keys must be 1-${MAX_CONTEXT_KEY_CHARS} characters`);
    if (typeof v !== 'string') throw new UsageError(`encryption context value of '${k}' is not a string`);
    if (v.length > MAX_CONTEXT_VALUE_CHARS) throw new UsageError(`encryption context value of '${k}' is longer than ${MAX_CONTEXT_VALUE_CHARS} characters`);
    // A lone surrogate would UTF-8-encode like U+FFFD: two contexts, one encoding. Refuse.
    if (/\p{Cs}/u.test(k) || /\p{Cs}/u.test(v)) throw new UsageError('encryption context is not valid Unicode');
  }
}

/** The canonical byte encoding of a context (sorted, length-prefixed: unambiguous). */
export function encodeContext(context: EncryptionContext): Buffer {
  const pairs = Object.entries(context)
    .map(([k, v]) => [Buffer.from(k, 'utf8'), Buffer.from(v, 'utf8')] as const)
    .sort((a, b) => Buffer.compare(a[0], b[0]));
  const parts: Buffer[] = [u32(pairs.length)];
  for (const [k, v] of pairs) parts.push(u32(k.length), k, u32(v.length), v);
  return Buffer.concat(parts);
}

/** Parse the fixed header; any malformation is KMS_INVALID_CIPHERTEXT. */
export function parseBlob(blob: Uint8Array): BlobHeader {
  const b = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  if (b.length < HEADER_BYTES + TAG_BYTES + 1 || b.length > MAX_BLOB_BYTES) {
    throw new KmsInvalidCiphertextError(`ciphertext blob has an invalid length (${b.length} bytes)`);
  }
  if (!b.subarray(0, BLOB_MAGIC.length).equals(BLOB_MAGIC)) {
    throw new KmsInvalidCiphertextError('ciphertext blob is not a nitride KMS blob (bad magic)');
  }
  const version = b[BLOB_MAGIC.length];
  if (version !== BLOB_FORMAT_VERSION) {
    throw new KmsInvalidCiphertextError(`ciphertext blob has unsupported format version ${version}`);
  }
  let offset = BLOB_MAGIC.length + 1;
  const keyId = 'key-' + b.subarray(offset, offset + KEY_ID_BYTES).toString('hex');
  offset += KEY_ID_BYTES;
  const keyVersion = b.readUInt32BE(offset);
  offset += 4;
  if (keyVersion < 1) throw new KmsInvalidCiphertextError('ciphertext blob names key version 0');
  const prefix = b.subarray(0, offset);
  const nonce = b.subarray(offset, offset + NONCE_BYTES);
  offset += NONCE_BYTES;
  return { keyId, keyVersion, nonce, prefix, ciphertext: b.subarray(offset) };
}

/** Wrap `plaintext` under master key `material` (version `keyVersion` of `keyId`), bound to `context`. */
export function wrap(sodium: Sodium, plaintext: Uint8Array, material: Uint8Array, keyId: string, keyVersion: number, context: EncryptionContext): Buffer {
  if (!isKeyId(keyId)) throw new Error(`not a key id: ${keyId}`);
  const prefix = Buffer.alloc(HEADER_BYTES - NONCE_BYTES);
  BLOB_MAGIC.copy(prefix, 0);
  prefix[BLOB_MAGIC.length] = BLOB_FORMAT_VERSION;
  Buffer.from(keyId.slice(4), 'hex').copy(prefix, BLOB_MAGIC.length + 1);
  prefix.writeUInt32BE(keyVersion, BLOB_MAGIC.length + 1 + KEY_ID_BYTES);
  const nonce = sodium.randombytes_buf(NONCE_BYTES);
  const ad = Buffer.concat([prefix, encodeContext(context)]);
  const ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, null, nonce, material);
  return Buffer.concat([prefix, nonce, ciphertext]);
}

/**
 * Unwrap a parsed blob with master key `material`. Any authentication failure (wrong
 * context, tampering, wrong key) is KMS_INVALID_CIPHERTEXT; the reason is deliberately
 * not distinguished. The returned Buffer owns its memory: wipe it after use.
 */
export function unwrap(sodium: Sodium, header: BlobHeader, material: Uint8Array, context: EncryptionContext): Buffer {
  const ad = Buffer.concat([header.prefix, encodeContext(context)]);
  let opened: Uint8Array;
  try {
    opened = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(null, header.ciphertext, ad, header.nonce, material);
  } catch {
    throw new KmsInvalidCiphertextError(
      `ciphertext blob does not authenticate under key ${header.keyId} version ${header.keyVersion}: wrong encryption context, or the blob was altered`,
    );
  }
  // libsodium.js returns a copy out of its heap in an ArrayBuffer of its own: view it, no copy.
  return Buffer.from(opened.buffer, opened.byteOffset, opened.byteLength);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
