/**
 * The key-provider boundary between the daemon and a KMS.
 *
 * The daemon only ever talks to a {@link KeyProvider}: at volume creation it asks for a
 * data key *without* plaintext (it stores only the wrapped blob with the volume metadata),
 * at attach it asks the provider to `decrypt` that blob under the volume's encryption
 * context, and key rotation is `reEncrypt` (re-wrap the same data key under the newest
 * master-key version; the volume data is never re-encrypted). Three implementations:
 *
 * - {@link ../kms/client.js KmsClient}: talks to `nitride kms serve` on its Unix socket
 *   (what the daemon uses in production);
 * - {@link ../kms/local.js LocalKeyProvider}: the same keystore logic in-process (tests,
 *   and what the KMS server itself fronts);
 * - later, an adapter to a real external KMS or HSM (AWS KMS, Vault transit, PKCS#11):
 *   implement this interface, nothing else in the daemon changes.
 *
 * Secrets: every `plaintext` returned is a `Buffer` the caller owns and must wipe
 * (`sodium.memzero`) as soon as it has keyed its cipher. Plaintext never travels as a
 * string, in either direction.
 *
 * @module
 */
import { ConflictError, ForbiddenError, NitrideError, NotFoundError, RuntimeError, UsageError } from '../common/errors.js';

/**
 * Non-secret key/value pairs bound into a wrapped data key (AEAD associated data): the
 * blob only decrypts under exactly the same context. nitride binds `{ volume: <volume id> }`.
 * Order does not matter (it is canonicalised by key). Logged in the audit trail.
 */
export type EncryptionContext = Readonly<Record<string, string>>;

/** Lifecycle state of a master key. */
export type KeyState = 'Enabled' | 'Disabled' | 'PendingDeletion' | 'Deleted';

/** Default size of a data key: 64 bytes = the two 256-bit keys of AES-256-XTS. */
export const DEFAULT_DATA_KEY_BYTES = 64;
/** Largest data key a provider hands out. */
export const MAX_DATA_KEY_BYTES = 1024;
/** The alias of the key used when a caller names none (like `alias/aws/ebs`); created on first use. */
export const DEFAULT_KEY_ALIAS = 'alias/nitride/ebs';

/** Options every provider call takes. */
export interface KmsCallOptions {
  /** Abandon the call (a remote provider drops the request; the result is then unknown). */
  signal?: AbortSignal;
}

/** Options of {@link KeyProvider.generateDataKey} and {@link KeyProvider.generateDataKeyWithoutPlaintext}. */
export interface GenerateDataKeyOptions extends KmsCallOptions {
  /** Length of the data key in bytes, 1–1024 (default {@link DEFAULT_DATA_KEY_BYTES}). */
  bytes?: number;
}

/** Options of {@link KeyProvider.reEncrypt}. */
export interface ReEncryptOptions extends KmsCallOptions {
  /**
   * Context to bind the new blob to (default: the source context). Used when a data key
   * moves to a new owner, e.g. a volume restored from another volume's snapshot.
   */
  destinationContext?: EncryptionContext;
}

/** A data key wrapped under a master key: safe to store anywhere. */
export interface WrappedDataKey {
  /** Canonical id (`key-…`) of the master key that wrapped it (aliases are resolved). */
  keyId: string;
  /** Version of that master key used for the wrap (the newest at the time). */
  keyVersion: number;
  /** The opaque wrapped key (format in `src/kms/blob.ts`). */
  ciphertextBlob: Buffer;
}

/** An unwrapped data key. `plaintext` is secret: wipe it as soon as it is used. */
export interface PlaintextDataKey {
  keyId: string;
  keyVersion: number;
  plaintext: Buffer;
}

/** A fresh data key, both wrapped and in plaintext (wipe `plaintext` after use). */
export interface GeneratedDataKey extends WrappedDataKey {
  plaintext: Buffer;
}

/** The result of a re-wrap: the same data key, now under `keyId`/`keyVersion`. */
export interface ReEncryptResult extends WrappedDataKey {
  /** Master key and version the source blob was wrapped under. */
  sourceKeyId: string;
  sourceKeyVersion: number;
}

/** Public description of a master key (never its material). */
export interface KeyMetadata {
  keyId: string;
  /** Aliases (`alias/…`) pointing at this key. */
  aliases: string[];
  description: string;
  state: KeyState;
  /** ISO-8601 creation time. */
  createdAt: string;
  /** The version new wraps use (versions 1…currentVersion are retained for unwrapping). */
  currentVersion: number;
  /** ISO-8601 time of the newest rotation (absent if never rotated). */
  rotatedAt?: string;
  /** When state is PendingDeletion: ISO-8601 time the material will be destroyed. */
  deletionDate?: string;
  /** When state is Deleted: ISO-8601 time the material was destroyed. */
  deletedAt?: string;
}

/**
 * What the daemon needs from a KMS. Key references (`keyId` parameters) are a canonical
 * id (`key-<32 hex>`) or an alias (`alias/<name>`); results always carry the canonical id.
 */
export interface KeyProvider {
  /**
   * A new random data key wrapped under `keyId` (or the default key {@link DEFAULT_KEY_ALIAS},
   * created on first use, when `keyId` is undefined). The caller never sees the plaintext:
   * this is what volume creation uses.
   */
  generateDataKeyWithoutPlaintext(keyId: string | undefined, context: EncryptionContext, options?: GenerateDataKeyOptions): Promise<WrappedDataKey>;

  /** Like {@link generateDataKeyWithoutPlaintext} but also returns the plaintext (caller wipes it). */
  generateDataKey(keyId: string | undefined, context: EncryptionContext, options?: GenerateDataKeyOptions): Promise<GeneratedDataKey>;

  /**
   * Unwrap a blob. Fails with {@link KmsInvalidCiphertextError} if the blob was tampered with
   * or `context` differs from the one it was wrapped under, and with a key-state error
   * (disabled, pending deletion, deleted) if its master key is not usable.
   */
  decrypt(ciphertextBlob: Uint8Array, context: EncryptionContext, options?: KmsCallOptions): Promise<PlaintextDataKey>;

  /**
   * Re-wrap a blob under the newest version of `destinationKeyId` (default: the blob's own
   * key, i.e. a rotation), without the plaintext leaving the provider.
   */
  reEncrypt(ciphertextBlob: Uint8Array, context: EncryptionContext, destinationKeyId?: string, options?: ReEncryptOptions): Promise<ReEncryptResult>;

  /** Metadata of a key (any state, including Deleted tombstones). */
  describeKey(keyId: string, options?: KmsCallOptions): Promise<KeyMetadata>;
}

/** Options of {@link KeyAdmin.createKey}. */
export interface CreateKeyOptions extends KmsCallOptions {
  /** Alias to point at the new key (`alias/<name>`; `alias/nitride/…` is reserved). */
  alias?: string;
  /** Free text for operators. */
  description?: string;
}

/** Key management, for operators (the `nitride kms` verbs); the daemon does not need it. */
export interface KeyAdmin {
  createKey(options?: CreateKeyOptions): Promise<KeyMetadata>;
  listKeys(options?: KmsCallOptions): Promise<KeyMetadata[]>;
  enableKey(keyId: string, options?: KmsCallOptions): Promise<KeyMetadata>;
  /** Refuse every use of the key until it is enabled again (its volumes cannot be attached). */
  disableKey(keyId: string, options?: KmsCallOptions): Promise<KeyMetadata>;
  /** Add a new key version; new wraps use it, old blobs still unwrap. */
  rotateKey(keyId: string, options?: KmsCallOptions): Promise<KeyMetadata>;
  /**
   * Destroy the key's material after `days` (default 30; 7–30 unless the KMS allows
   * immediate deletion, then 0–30). Until then it is unusable but recoverable with
   * {@link cancelKeyDeletion}; after, every blob wrapped under it is unrecoverable.
   */
  scheduleKeyDeletion(keyId: string, days?: number, options?: KmsCallOptions): Promise<KeyMetadata>;
  /** Stop a pending deletion; the key comes back Disabled (enable it to use it). */
  cancelKeyDeletion(keyId: string, options?: KmsCallOptions): Promise<KeyMetadata>;
}

/** Stable error codes of KMS failures (`err.code`). */
export const KMS_ERROR_CODES = [
  'KMS_NOT_FOUND',
  'KMS_KEY_DELETED',
  'KMS_KEY_DISABLED',
  'KMS_KEY_PENDING_DELETION',
  'KMS_INVALID_CIPHERTEXT',
  'KMS_UNAVAILABLE',
  'KMS_ACCESS_DENIED',
] as const;
export type KmsErrorCode = (typeof KMS_ERROR_CODES)[number];

/** No key or alias by that name (HTTP 404). */
export class KmsNotFoundError extends NotFoundError {
  constructor(message: string) {
    super(message, 'KMS_NOT_FOUND');
  }
}

/** The key existed but its material was destroyed: everything wrapped under it is gone (HTTP 404). */
export class KmsKeyDeletedError extends NotFoundError {
  constructor(message: string) {
    super(message, 'KMS_KEY_DELETED');
  }
}

/** The key is disabled (HTTP 409). */
export class KmsKeyDisabledError extends ConflictError {
  constructor(message: string) {
    super(message, 'KMS_KEY_DISABLED');
  }
}

/** The key is scheduled for deletion (HTTP 409). */
export class KmsKeyPendingDeletionError extends ConflictError {
  constructor(message: string) {
    super(message, 'KMS_KEY_PENDING_DELETION');
  }
}

/** The blob is malformed, tampered with, or the encryption context is wrong (HTTP 400). */
export class KmsInvalidCiphertextError extends UsageError {
  constructor(message: string) {
    super(message, 'KMS_INVALID_CIPHERTEXT');
  }
}

/** The KMS cannot be reached or cannot do its job (socket, storage). */
export class KmsUnavailableError extends RuntimeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'KMS_UNAVAILABLE', options);
  }
}

/** The calling host has no grant for this call, or the KMS refused its host key (HTTP 403). */
export class KmsAccessDeniedError extends ForbiddenError {
  constructor(message: string) {
    super(message, 'KMS_ACCESS_DENIED');
  }
}

/** Whether `err` is one of the typed KMS errors above. */
export function isKmsError(err: unknown): err is NitrideError & { code: KmsErrorCode } {
  return err instanceof NitrideError && (KMS_ERROR_CODES as readonly string[]).includes(err.code);
}

/** Rebuild the typed error for a code received over the wire (undefined for non-KMS codes). */
export function kmsErrorFromCode(code: string, message: string): NitrideError | undefined {
  switch (code as KmsErrorCode) {
    case 'KMS_NOT_FOUND':
      return new KmsNotFoundError(message);
    case 'KMS_KEY_DELETED':
      return new KmsKeyDeletedError(message);
    case 'KMS_KEY_DISABLED':
      return new KmsKeyDisabledError(message);
    case 'KMS_KEY_PENDING_DELETION':
      return new KmsKeyPendingDeletionError(message);
    case 'KMS_INVALID_CIPHERTEXT':
      return new KmsInvalidCiphertextError(message);
    case 'KMS_UNAVAILABLE':
      return new KmsUnavailableError(message);
    case 'KMS_ACCESS_DENIED':
      return new KmsAccessDeniedError(message);
    default:
      return undefined;
  }
}
