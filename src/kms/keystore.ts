/**
 * The KMS key store: master keys, their versions, aliases and lifecycle, and the
 * envelope operations over them (generate / decrypt / re-encrypt data keys).
 *
 * A master key is 32 random bytes (libsodium `randombytes_buf`) used as an
 * XChaCha20-Poly1305 key to wrap data keys (format in `blob.ts`). It never leaves this
 * module: not in replies, not in logs, not in the audit trail.
 *
 * Lifecycle:
 *
 *     Enabled ⇄ Disabled            enable-key / disable-key
 *     Enabled|Disabled → PendingDeletion   schedule-deletion (7–30 days; 0–30 with
 *                                           --allow-immediate-deletion, for tests)
 *     PendingDeletion → Disabled    cancel-deletion (like AWS: re-enable explicitly)
 *     PendingDeletion → Deleted     when the deletion date passes (checked before every
 *                                   call and on a timer): every version's material is
 *                                   zeroed and dropped from the file = crypto-shred.
 *
 * Only Enabled keys wrap or unwrap; the other states fail with typed errors, which is
 * how disabling a key stops its volumes from being attached. A Deleted key stays as a
 * tombstone (no material) so that its volumes get a clear "deleted" error, not "unknown".
 *
 * Rotation adds a version: new wraps use the newest version, every retained version still
 * unwraps, and `reEncrypt` moves a blob to the newest version (cheap: the data key, not
 * the data, is re-encrypted).
 *
 * Persistence: `<state-dir>/keystore.json`, mode 0600, written atomically (temp file +
 * fsync + rename + dir fsync) before any call that changed it returns. Format:
 *
 *     { "format": "nitride-kms-keystore", "version": 1,
 *       "keys": [ { "keyId": "key-<32 hex>", "description": "…", "createdAt": ISO,
 *                   "state": "Enabled"|"Disabled"|"PendingDeletion"|"Deleted",
 *                   "deletionDate"?: ISO, "deletedAt"?: ISO,
 *                   "versions": [ { "version": 1, "createdAt": ISO,
 *                                   "material": "<base64 of 32 bytes>" | null } ] } ],
 *       "aliases": { "alias/nitride/ebs": "key-…" } }
 *
 * This file-backed store is a software stand-in for an HSM: the master keys are only as
 * safe as this file and this process (their base64 text passes through JS strings while
 * the file is read or written). A real deployment keeps master keys in an HSM or an
 * external KMS and plugs it in behind the `KeyProvider` interface (`provider.ts`); the
 * daemon does not change. Data keys, in contrast, are only ever held in Buffers that are
 * wiped after use. (libsodium.js copies keys into its WASM heap and frees them without
 * wiping; the residue there is a known limit of the WASM build.)
 */
import { promises as fs } from 'node:fs';
import { z } from 'zod';
import { ConflictError, RuntimeError, UsageError, errnoCode, oneLine } from '../common/errors.js';
import { readJsonFile, writeFileAtomic } from '../common/durable-fs.js';
import type { Logger } from '../log/logger.js';
import { MASTER_KEY_BYTES, checkContext, isKeyId, parseBlob, unwrap, wrap } from './blob.js';
import {
  DEFAULT_DATA_KEY_BYTES,
  DEFAULT_KEY_ALIAS,
  KmsInvalidCiphertextError,
  KmsKeyDeletedError,
  KmsKeyDisabledError,
  KmsKeyPendingDeletionError,
  KmsNotFoundError,
  KmsUnavailableError,
  MAX_DATA_KEY_BYTES,
  type EncryptionContext,
  type GeneratedDataKey,
  type KeyMetadata,
  type KeyState,
  type PlaintextDataKey,
  type ReEncryptResult,
  type WrappedDataKey,
} from './provider.js';
import { loadSodium, wipe, type Sodium } from './sodium.js';
import { SerialQueue } from '../common/serial.js';

/** Deletion waiting period, in days: default and bounds (AWS: 7–30, default 30). */
export const DEFAULT_DELETION_DAYS = 30;
export const MIN_DELETION_DAYS = 7;
export const MAX_DELETION_DAYS = 30;
const DAY_MS = 86_400_000;

const ALIAS_PATTERN = /^alias\/[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/;
const MAX_ALIAS_CHARS = 256;
/** Aliases under this prefix belong to the KMS itself (like `alias/aws/`). */
export const RESERVED_ALIAS_PREFIX = 'alias/nitride/';
const MAX_DESCRIPTION_CHARS = 8192;

export interface KeyStoreOptions {
  /** Persist to this file (mode 0600); undefined keeps everything in memory (tests). */
  file?: string;
  /** Allow deletion waiting periods below 7 days, down to 0 = destroy now (tests only). */
  allowImmediateDeletion?: boolean;
  /** Clock, for tests of the deletion waiting period (default: the real one). */
  now?: () => Date;
  /** Where lifecycle events are logged (component `kms`); silent if absent. */
  logger?: Logger;
}

interface KeyVersion {
  version: number;
  createdAt: string;
  /** 32 bytes, or null once destroyed. */
  material: Buffer | null;
}

interface KeyRecord {
  keyId: string;
  description: string;
  createdAt: string;
  state: KeyState;
  deletionDate?: string;
  deletedAt?: string;
  versions: KeyVersion[];
}

const FileSchema = z
  .object({
    format: z.literal('nitride-kms-keystore'),
    version: z.literal(1),
    keys: z.array(
      z
        .object({
          keyId: z.string().regex(/^key-[0-9a-f]{32}$/),
          description: z.string(),
          createdAt: z.string(),
          state: z.enum(['Enabled', 'Disabled', 'PendingDeletion', 'Deleted']),
          deletionDate: z.string().optional(),
          deletedAt: z.string().optional(),
          versions: z
            .array(z.object({ version: z.number().int().min(1), createdAt: z.string(), material: z.string().nullable() }).strict())
            .min(1),
        })
        .strict(),
    ),
    aliases: z.record(z.string(), z.string()),
  })
  .strict();
type KeystoreFile = z.infer<typeof FileSchema>;

/** Master keys and the envelope operations on them. Every public method is serialised. */
export class KeyStore {
  private keys = new Map<string, KeyRecord>();
  private aliases = new Map<string, string>();
  private readonly queue = new SerialQueue();
  private closed = false;

  private constructor(
    private readonly sodium: Sodium,
    private readonly options: KeyStoreOptions,
  ) {}

  /** Open (or create, on first save) the store. A corrupt file is an error, never reset. */
  static async open(options: KeyStoreOptions = {}): Promise<KeyStore> {
    const store = new KeyStore(await loadSodium(), options);
    if (options.file) await store.load();
    return store;
  }

  // ---- key management ----------------------------------------------------------------

  createKey(options: { alias?: string; description?: string } = {}): Promise<KeyMetadata> {
    return this.exclusive(async () => {
      if (options.alias !== undefined) {
        checkAlias(options.alias);
        if (options.alias.startsWith(RESERVED_ALIAS_PREFIX)) throw new UsageError(`aliases under ${RESERVED_ALIAS_PREFIX} are reserved for the KMS`);
      }
      const description = options.description ?? '';
      if (description.length > MAX_DESCRIPTION_CHARS) throw new UsageError(`description is longer than ${MAX_DESCRIPTION_CHARS} characters`);
      const record = await this.addKey(description, options.alias);
      return this.metadata(record);
    });
  }

  listKeys(): Promise<KeyMetadata[]> {
    return this.exclusive(() => [...this.keys.values()].map((r) => this.metadata(r)));
  }

  describeKey(ref: string): Promise<KeyMetadata> {
    return this.exclusive(() => this.metadata(this.resolve(ref)));
  }

  enableKey(ref: string): Promise<KeyMetadata> {
    return this.transition(ref, 'enable', (r) => {
      if (r.state === 'PendingDeletion') throw this.stateError(r, 'cancel the deletion first');
      r.state = 'Enabled';
    });
  }

  disableKey(ref: string): Promise<KeyMetadata> {
    return this.transition(ref, 'disable', (r) => {
      if (r.state === 'PendingDeletion') throw this.stateError(r);
      r.state = 'Disabled';
    });
  }

  rotateKey(ref: string): Promise<KeyMetadata> {
    return this.transition(ref, 'rotate', (r) => {
      this.assertUsable(r);
      const newest = r.versions[r.versions.length - 1]!;
      r.versions.push({ version: newest.version + 1, createdAt: this.nowIso(), material: this.newMaterial() });
    });
  }

  async scheduleKeyDeletion(ref: string, days = DEFAULT_DELETION_DAYS): Promise<KeyMetadata> {
    const min = this.options.allowImmediateDeletion ? 0 : MIN_DELETION_DAYS;
    if (!Number.isInteger(days) || days < min || days > MAX_DELETION_DAYS) {
      const hint = this.options.allowImmediateDeletion ? '' : ' (shorter periods need a KMS started with --allow-immediate-deletion)';
      throw new UsageError(`deletion waiting period must be a whole number of days from ${min} to ${MAX_DELETION_DAYS}${hint}`);
    }
    return this.transition(ref, 'schedule-deletion', (r) => {
      if (r.state === 'PendingDeletion') throw this.stateError(r);
      r.state = 'PendingDeletion';
      r.deletionDate = new Date(this.now().getTime() + days * DAY_MS).toISOString();
    });
  }

  cancelKeyDeletion(ref: string): Promise<KeyMetadata> {
    return this.transition(ref, 'cancel-deletion', (r) => {
      if (r.state !== 'PendingDeletion') throw new ConflictError(`KMS key ${r.keyId} is not pending deletion (it is ${r.state})`, 'KMS_INVALID_STATE');
      r.state = 'Disabled';
      delete r.deletionDate;
    });
  }

  /** Destroy keys whose deletion date has passed; returns the ids destroyed. Also runs before every call. */
  sweep(): Promise<string[]> {
    return this.exclusive(() => this.sweepDue(), false);
  }

  // ---- envelope operations -----------------------------------------------------------

  /** A new data key wrapped under `ref` (default key if undefined); plaintext only if asked. */
  generateDataKey(ref: string | undefined, context: EncryptionContext, bytes?: number, withPlaintext?: true): Promise<GeneratedDataKey>;
  generateDataKey(ref: string | undefined, context: EncryptionContext, bytes: number | undefined, withPlaintext: false): Promise<WrappedDataKey>;
  async generateDataKey(ref: string | undefined, context: EncryptionContext, bytes = DEFAULT_DATA_KEY_BYTES, withPlaintext = true): Promise<WrappedDataKey> {
    checkContext(context);
    if (!Number.isInteger(bytes) || bytes < 1 || bytes > MAX_DATA_KEY_BYTES) {
      throw new UsageError(`data key length must be a whole number of bytes from 1 to ${MAX_DATA_KEY_BYTES}`);
    }
    return this.exclusive(async () => {
      const record = ref === undefined ? await this.defaultKey() : this.resolve(ref);
      this.assertUsable(record);
      const version = newestVersion(record);
      const plaintext = this.secretBuffer(this.sodium.randombytes_buf(bytes));
      try {
        const ciphertextBlob = wrap(this.sodium, plaintext, version.material!, record.keyId, version.version, context);
        const wrapped: WrappedDataKey = { keyId: record.keyId, keyVersion: version.version, ciphertextBlob };
        if (withPlaintext) return { ...wrapped, plaintext };
        wipe(this.sodium, plaintext);
        return wrapped;
      } catch (err) {
        wipe(this.sodium, plaintext);
        throw err;
      }
    });
  }

  /** Unwrap `blob` under `context`. The caller owns (and must wipe) `plaintext`. */
  async decrypt(blob: Uint8Array, context: EncryptionContext): Promise<PlaintextDataKey> {
    checkContext(context);
    return this.exclusive(() => {
      const { keyId, keyVersion, plaintext } = this.open(blob, context);
      return { keyId, keyVersion, plaintext };
    });
  }

  /** Re-wrap `blob` under the newest version of `destinationRef` (default: its own key). */
  async reEncrypt(blob: Uint8Array, context: EncryptionContext, destinationRef?: string, destinationContext?: EncryptionContext): Promise<ReEncryptResult> {
    checkContext(context);
    if (destinationContext !== undefined) checkContext(destinationContext);
    return this.exclusive(() => {
      // Resolve the destination first: a bad destination must not cost an unwrap.
      const destination = destinationRef === undefined ? undefined : this.resolve(destinationRef);
      if (destination) this.assertUsable(destination);
      const source = this.open(blob, context);
      try {
        const target = destination ?? this.keys.get(source.keyId)!;
        const version = newestVersion(target);
        const ciphertextBlob = wrap(this.sodium, source.plaintext, version.material!, target.keyId, version.version, destinationContext ?? context);
        return { keyId: target.keyId, keyVersion: version.version, ciphertextBlob, sourceKeyId: source.keyId, sourceKeyVersion: source.keyVersion };
      } finally {
        wipe(this.sodium, source.plaintext);
      }
    });
  }

  /** Wipe all key material from memory. The store is unusable afterwards. */
  close(): Promise<void> {
    return this.exclusive(() => {
      this.closed = true;
      this.wipeAll();
    });
  }

  // ---- internals ---------------------------------------------------------------------

  /** Run `fn` alone: no call ever sees another's half-applied change. */
  private exclusive<T>(fn: () => Promise<T> | T, sweepFirst = true): Promise<T> {
    return this.queue.run(async () => {
      if (this.closed) throw new KmsUnavailableError('the key store is closed');
      if (sweepFirst) await this.sweepDue();
      return fn();
    });
  }

  /** Apply `change` to a key (resolved from `ref`), save, and return its new metadata. */
  private transition(ref: string, what: string, change: (r: KeyRecord) => void): Promise<KeyMetadata> {
    return this.exclusive(async () => {
      const record = this.resolve(ref);
      if (record.state === 'Deleted') throw this.stateError(record);
      const before = record.state;
      change(record);
      await this.save();
      this.options.logger?.info({ keyId: record.keyId, from: before, to: record.state, op: what, deletionDate: record.deletionDate }, `key ${what}`);
      // "0 days" means now: shred before answering, so the caller sees the final state.
      if (record.state === 'PendingDeletion') await this.sweepDue();
      return this.metadata(record);
    });
  }

  /** Unwrap: parse, find the key and version, check state, authenticate. */
  private open(blob: Uint8Array, context: EncryptionContext): PlaintextDataKey {
    const header = parseBlob(blob);
    const record = this.keys.get(header.keyId);
    if (!record) throw new KmsNotFoundError(`the ciphertext blob was wrapped under KMS key ${header.keyId}, which this KMS does not hold`);
    this.assertUsable(record);
    const version = record.versions.find((v) => v.version === header.keyVersion);
    if (!version?.material) {
      throw new KmsInvalidCiphertextError(`the ciphertext blob names version ${header.keyVersion} of KMS key ${record.keyId}, which does not exist`);
    }
    const plaintext = unwrap(this.sodium, header, version.material, context);
    return { keyId: record.keyId, keyVersion: version.version, plaintext };
  }

  private async addKey(description: string, alias: string | undefined): Promise<KeyRecord> {
    if (alias !== undefined && this.aliases.has(alias)) throw new ConflictError(`alias ${alias} already exists (it names ${this.aliases.get(alias)})`, 'KMS_ALIAS_EXISTS');
    const now = this.nowIso();
    const idBytes = this.sodium.randombytes_buf(16);
    const record: KeyRecord = {
      keyId: 'key-' + Buffer.from(idBytes).toString('hex'),
      description,
      createdAt: now,
      state: 'Enabled',
      versions: [{ version: 1, createdAt: now, material: this.newMaterial() }],
    };
    this.keys.set(record.keyId, record);
    if (alias !== undefined) this.aliases.set(alias, record.keyId);
    await this.save();
    this.options.logger?.info({ keyId: record.keyId, alias }, 'key created');
    return record;
  }

  /** The default key (`alias/nitride/ebs`), created on first use. */
  private async defaultKey(): Promise<KeyRecord> {
    const id = this.aliases.get(DEFAULT_KEY_ALIAS);
    const existing = id === undefined ? undefined : this.keys.get(id);
    if (existing) return existing;
    return this.addKey('default key for nitride volumes (created on first use)', DEFAULT_KEY_ALIAS);
  }

  private resolve(ref: string): KeyRecord {
    if (typeof ref !== 'string') throw new UsageError('key reference must be a string');
    let keyId = ref;
    if (ref.startsWith('alias/')) {
      checkAlias(ref);
      const target = this.aliases.get(ref);
      if (target === undefined) throw new KmsNotFoundError(`no KMS key has the alias ${ref}`);
      keyId = target;
    } else if (!isKeyId(ref)) {
      throw new UsageError(`invalid key reference '${ref.slice(0, 80)}': expected key-<32 hex digits> or alias/<name>`);
    }
    const record = this.keys.get(keyId);
    if (!record) throw new KmsNotFoundError(`no KMS key ${keyId}`);
    return record;
  }

  private assertUsable(r: KeyRecord): void {
    if (r.state !== 'Enabled') throw this.stateError(r);
  }

  private stateError(r: KeyRecord, hint?: string): Error {
    switch (r.state) {
      case 'Disabled':
        return new KmsKeyDisabledError(`KMS key ${r.keyId} is disabled${hint ? `; ${hint}` : ''}`);
      case 'PendingDeletion':
        return new KmsKeyPendingDeletionError(
          `KMS key ${r.keyId} is pending deletion (its material will be destroyed at ${r.deletionDate}); ${hint ?? 'cancel the deletion to use it again'}`,
        );
      case 'Deleted':
        return new KmsKeyDeletedError(`KMS key ${r.keyId} was deleted at ${r.deletedAt}: its material is destroyed and data keys wrapped under it are unrecoverable`);
      case 'Enabled':
        return new ConflictError(`KMS key ${r.keyId} is enabled`, 'KMS_INVALID_STATE');
    }
  }

  /** Crypto-shred every key whose deletion date has passed. */
  private async sweepDue(): Promise<string[]> {
    const now = this.now().getTime();
    const due = [...this.keys.values()].filter((r) => r.state === 'PendingDeletion' && Date.parse(r.deletionDate ?? '') <= now);
    if (due.length === 0) return [];
    for (const r of due) {
      for (const v of r.versions) {
        wipe(this.sodium, v.material);
        v.material = null;
      }
      r.state = 'Deleted';
      r.deletedAt = this.nowIso();
      delete r.deletionDate;
      for (const [alias, id] of this.aliases) if (id === r.keyId) this.aliases.delete(alias);
    }
    await this.save();
    for (const r of due) this.options.logger?.warn({ keyId: r.keyId }, 'key material destroyed (deletion date reached): data keys wrapped under it are unrecoverable');
    return due.map((r) => r.keyId);
  }

  private metadata(r: KeyRecord): KeyMetadata {
    const newest = r.versions[r.versions.length - 1]!;
    return {
      keyId: r.keyId,
      aliases: [...this.aliases].filter(([, id]) => id === r.keyId).map(([a]) => a).sort(),
      description: r.description,
      state: r.state,
      createdAt: r.createdAt,
      currentVersion: newest.version,
      ...(r.versions.length > 1 ? { rotatedAt: newest.createdAt } : {}),
      ...(r.deletionDate ? { deletionDate: r.deletionDate } : {}),
      ...(r.deletedAt ? { deletedAt: r.deletedAt } : {}),
    };
  }

  private newMaterial(): Buffer {
    return this.secretBuffer(this.sodium.randombytes_buf(MASTER_KEY_BYTES));
  }

  /** View libsodium's output (a private ArrayBuffer) as a Buffer, without copying it. */
  private secretBuffer(bytes: Uint8Array): Buffer {
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private now(): Date {
    return this.options.now?.() ?? new Date();
  }

  private nowIso(): string {
    return this.now().toISOString();
  }

  private wipeAll(): void {
    for (const r of this.keys.values()) for (const v of r.versions) wipe(this.sodium, v.material);
  }

  // ---- persistence -------------------------------------------------------------------

  /** Write the file; on failure go back to what the file holds, so memory never runs ahead of disk. */
  private async save(): Promise<void> {
    const file = this.options.file;
    if (!file) return;
    const doc: KeystoreFile = {
      format: 'nitride-kms-keystore',
      version: 1,
      keys: [...this.keys.values()].map((r) => ({
        keyId: r.keyId,
        description: r.description,
        createdAt: r.createdAt,
        state: r.state,
        ...(r.deletionDate ? { deletionDate: r.deletionDate } : {}),
        ...(r.deletedAt ? { deletedAt: r.deletedAt } : {}),
        versions: r.versions.map((v) => ({ version: v.version, createdAt: v.createdAt, material: v.material ? v.material.toString('base64') : null })),
      })),
      aliases: Object.fromEntries([...this.aliases].sort(([a], [b]) => (a < b ? -1 : 1))),
    };
    try {
      await writeFileAtomic(file, JSON.stringify(doc, null, 2) + '\n', 0o600);
    } catch (err) {
      await this.load().catch(() => {});
      throw new KmsUnavailableError(`cannot save the key store ${file}: ${oneLine(err)}`, { cause: err });
    }
  }

  private async load(): Promise<void> {
    const file = this.options.file!;
    const raw = await readJsonFile<unknown>(file);
    const keys = new Map<string, KeyRecord>();
    const aliases = new Map<string, string>();
    if (raw !== undefined) {
      await this.tightenMode(file);
      const parsed = FileSchema.safeParse(raw);
      if (!parsed.success) throw new RuntimeError(`${file} is not a valid key store: ${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}`, 'STATE_CORRUPT');
      for (const k of parsed.data.keys) {
        const corrupt = (why: string) => new RuntimeError(`${file}: key ${k.keyId} ${why}`, 'STATE_CORRUPT');
        if (keys.has(k.keyId)) throw corrupt('appears twice');
        const versions = k.versions.map((v, i): KeyVersion => {
          if (v.version !== i + 1) throw corrupt('has non-contiguous versions');
          if ((v.material === null) !== (k.state === 'Deleted')) throw corrupt('has material inconsistent with its state');
          return { version: v.version, createdAt: v.createdAt, material: v.material === null ? null : secretFromBase64(v.material) };
        });
        if (versions.some((v) => v.material && v.material.length !== MASTER_KEY_BYTES)) throw corrupt(`has material that is not ${MASTER_KEY_BYTES} bytes`);
        if (k.state === 'PendingDeletion' && Number.isNaN(Date.parse(k.deletionDate ?? ''))) throw corrupt('is pending deletion without a valid date');
        keys.set(k.keyId, { ...k, versions });
      }
      for (const [alias, id] of Object.entries(parsed.data.aliases)) {
        if (!ALIAS_PATTERN.test(alias) || keys.get(id)?.state === undefined || keys.get(id)?.state === 'Deleted') {
          throw new RuntimeError(`${file}: alias ${alias} names ${id}, which is not a live key`, 'STATE_CORRUPT');
        }
        aliases.set(alias, id);
      }
    }
    this.wipeAll();
    this.keys = keys;
    this.aliases = aliases;
  }

  /** A key store readable by anyone but its owner is fixed (0600) and reported. */
  private async tightenMode(file: string): Promise<void> {
    try {
      const st = await fs.stat(file);
      if ((st.mode & 0o077) !== 0) {
        await fs.chmod(file, 0o600);
        this.options.logger?.warn({ file, mode: (st.mode & 0o777).toString(8) }, 'key store was group/other accessible; mode reset to 0600');
      }
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }
}

function newestVersion(r: KeyRecord): KeyVersion {
  return r.versions[r.versions.length - 1]!;
}

function checkAlias(alias: string): void {
  if (typeof alias !== 'string' || alias.length > MAX_ALIAS_CHARS || !ALIAS_PATTERN.test(alias)) {
    throw new UsageError(`invalid alias '${String(alias).slice(0, 80)}': expected alias/<name> (letters, digits, _ - and /)`);
  }
}

/** Decode base64 key material into a Buffer of its own (not the shared pool), wiping the temporary. */
function secretFromBase64(text: string): Buffer {
  const tmp = Buffer.from(text, 'base64');
  const out = Buffer.alloc(tmp.length);
  tmp.copy(out);
  tmp.fill(0);
  return out;
}
