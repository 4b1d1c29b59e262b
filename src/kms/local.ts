/**
 * An in-process {@link KeyProvider}: the keystore logic of `keystore.ts` without a socket.
 * Unit tests use it in memory; `nitride kms serve` fronts a file-backed one. It is also the
 * proof that the provider boundary is pluggable: the daemon cannot tell it from `KmsClient`.
 */
import { RuntimeError, oneLine } from '../common/errors.js';
import type { Logger } from '../log/logger.js';
import { KeyStore, type KeyStoreOptions } from './keystore.js';
import type {
  CreateKeyOptions,
  EncryptionContext,
  GenerateDataKeyOptions,
  GeneratedDataKey,
  KeyAdmin,
  KeyMetadata,
  KeyProvider,
  KmsCallOptions,
  PlaintextDataKey,
  ReEncryptOptions,
  ReEncryptResult,
  WrappedDataKey,
} from './provider.js';

export interface LocalKeyProviderOptions extends KeyStoreOptions {
  /**
   * How often to look for keys whose deletion date has passed, in ms (default 60 000;
   * 0 = only before each call). The timer never keeps the process alive.
   */
  sweepIntervalMs?: number;
  logger?: Logger;
}

export class LocalKeyProvider implements KeyProvider, KeyAdmin {
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly store: KeyStore,
    options: LocalKeyProviderOptions,
  ) {
    const interval = options.sweepIntervalMs ?? 60_000;
    if (interval > 0) {
      this.timer = setInterval(() => {
        this.store.sweep().catch((err: unknown) => options.logger?.error({ err: oneLine(err) }, 'deletion sweep failed'));
      }, interval);
      this.timer.unref();
    }
  }

  /** Open a provider; with `file` it persists there, without it lives in memory only. */
  static async open(options: LocalKeyProviderOptions = {}): Promise<LocalKeyProvider> {
    return new LocalKeyProvider(await KeyStore.open(options), options);
  }

  generateDataKeyWithoutPlaintext(keyId: string | undefined, context: EncryptionContext, options: GenerateDataKeyOptions = {}): Promise<WrappedDataKey> {
    return this.run(options, () => this.store.generateDataKey(keyId, context, options.bytes, false));
  }

  generateDataKey(keyId: string | undefined, context: EncryptionContext, options: GenerateDataKeyOptions = {}): Promise<GeneratedDataKey> {
    return this.run(options, () => this.store.generateDataKey(keyId, context, options.bytes, true));
  }

  decrypt(ciphertextBlob: Uint8Array, context: EncryptionContext, options: KmsCallOptions = {}): Promise<PlaintextDataKey> {
    return this.run(options, () => this.store.decrypt(ciphertextBlob, context));
  }

  reEncrypt(ciphertextBlob: Uint8Array, context: EncryptionContext, destinationKeyId?: string, options: ReEncryptOptions = {}): Promise<ReEncryptResult> {
    return this.run(options, () => this.store.reEncrypt(ciphertextBlob, context, destinationKeyId, options.destinationContext));
  }

  describeKey(keyId: string, options: KmsCallOptions = {}): Promise<KeyMetadata> {
    return this.run(options, () => this.store.describeKey(keyId));
  }

  createKey(options: CreateKeyOptions = {}): Promise<KeyMetadata> {
    return this.run(options, () =>
      this.store.createKey({
        ...(options.alias !== undefined ? { alias: options.alias } : {}),
        ...(options.description !== undefined ? { description: options.description } : {}),
      }),
    );
  }

  listKeys(options: KmsCallOptions = {}): Promise<KeyMetadata[]> {
    return this.run(options, () => this.store.listKeys());
  }

  enableKey(keyId: string, options: KmsCallOptions = {}): Promise<KeyMetadata> {
    return this.run(options, () => this.store.enableKey(keyId));
  }

  disableKey(keyId: string, options: KmsCallOptions = {}): Promise<KeyMetadata> {
    return this.run(options, () => this.store.disableKey(keyId));
  }

  rotateKey(keyId: string, options: KmsCallOptions = {}): Promise<KeyMetadata> {
    return this.run(options, () => this.store.rotateKey(keyId));
  }

  scheduleKeyDeletion(keyId: string, days?: number, options: KmsCallOptions = {}): Promise<KeyMetadata> {
    return this.run(options, () => this.store.scheduleKeyDeletion(keyId, days));
  }

  cancelKeyDeletion(keyId: string, options: KmsCallOptions = {}): Promise<KeyMetadata> {
    return this.run(options, () => this.store.cancelKeyDeletion(keyId));
  }

  /** Destroy keys whose deletion date has passed now (it also happens before every call). */
  sweep(): Promise<string[]> {
    return this.store.sweep();
  }

  /** Stop the timer and wipe all master key material from memory. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.store.close();
  }

  private async run<T>(options: KmsCallOptions, fn: () => Promise<T>): Promise<T> {
    if (options.signal?.aborted) throw new RuntimeError('call aborted', 'ABORTED');
    return fn();
  }
}
