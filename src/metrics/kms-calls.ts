/**
 * A {@link KeyProvider} that counts the calls the daemon makes to the KMS, by operation and
 * outcome (ok, or the error code), and passes everything else through untouched.
 */
import { NitrideError } from '../common/errors.js';
import type { KeyProvider } from '../kms/provider.js';

export type KmsOperation = 'GenerateDataKey' | 'GenerateDataKeyWithoutPlaintext' | 'Decrypt' | 'ReEncrypt' | 'DescribeKey';

export class CountingKeyProvider implements KeyProvider {
  /** `operation outcome` → calls. */
  readonly calls = new Map<string, { operation: KmsOperation; outcome: string; count: number }>();

  constructor(private readonly inner: KeyProvider) {}

  generateDataKeyWithoutPlaintext(...args: Parameters<KeyProvider['generateDataKeyWithoutPlaintext']>): ReturnType<KeyProvider['generateDataKeyWithoutPlaintext']> {
    return this.count('GenerateDataKeyWithoutPlaintext', this.inner.generateDataKeyWithoutPlaintext(...args));
  }

  generateDataKey(...args: Parameters<KeyProvider['generateDataKey']>): ReturnType<KeyProvider['generateDataKey']> {
    return this.count('GenerateDataKey', this.inner.generateDataKey(...args));
  }

  decrypt(...args: Parameters<KeyProvider['decrypt']>): ReturnType<KeyProvider['decrypt']> {
    return this.count('Decrypt', this.inner.decrypt(...args));
  }

  reEncrypt(...args: Parameters<KeyProvider['reEncrypt']>): ReturnType<KeyProvider['reEncrypt']> {
    return this.count('ReEncrypt', this.inner.reEncrypt(...args));
  }

  describeKey(...args: Parameters<KeyProvider['describeKey']>): ReturnType<KeyProvider['describeKey']> {
    return this.count('DescribeKey', this.inner.describeKey(...args));
  }

  private async count<T>(operation: KmsOperation, call: Promise<T>): Promise<T> {
    let outcome = 'ok';
    try {
      return await call;
    } catch (err) {
      outcome = err instanceof NitrideError ? err.code : 'error';
      throw err;
    } finally {
      const key = `${operation} ${outcome}`;
      const entry = this.calls.get(key) ?? { operation, outcome, count: 0 };
      entry.count++;
      this.calls.set(key, entry);
    }
  }
}
