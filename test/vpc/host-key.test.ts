/** The host key: generated once through the KMS with only its blob saved, the same pair at every later start. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalKeyProvider } from '../../src/kms/local.js';
import { loadSodium, type Sodium } from '../../src/kms/sodium.js';
import { createLogger } from '../../src/log/logger.js';
import { publicKeyOf } from '../../src/vpc/handshake.js';
import { loadHostKey } from '../../src/vpc/host-key.js';

const log = createLogger({ level: 'silent' });
let sodium: Sodium;
let kms: LocalKeyProvider;
beforeAll(async () => {
  sodium = await loadSodium();
  kms = await LocalKeyProvider.open({ sweepIntervalMs: 0 });
});
afterAll(async () => {
  await kms.close();
});

/** A store that counts saves and can be made to fail. */
function store(blob?: string): { hostKeyBlob: string | undefined; saves: number; fail: boolean; save(): Promise<void> } {
  return {
    hostKeyBlob: blob,
    saves: 0,
    fail: false,
    async save() {
      if (this.fail) throw new Error('disk full');
      this.saves++;
    },
  };
}

describe('host key', () => {
  it('is generated once (the blob saved, the key clamped), then unwrapped from the blob to the same pair', async () => {
    const first = store();
    const keys = await loadHostKey(sodium, kms, first, log);
    expect(first.saves).toBe(1);
    expect(first.hostKeyBlob).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(keys.privateKey[0]! & 7).toBe(0);
    expect(keys.privateKey[31]! & 0xc0).toBe(0x40);
    expect(keys.publicKey.equals(publicKeyOf(sodium, keys.privateKey))).toBe(true);

    const again = store(first.hostKeyBlob);
    const same = await loadHostKey(sodium, kms, again, log);
    expect(again.saves).toBe(0);
    expect(same.publicKey.equals(keys.publicKey)).toBe(true);
    expect(same.privateKey.equals(keys.privateKey)).toBe(true);
  });

  it('a new key whose blob cannot be saved is not kept', async () => {
    const s = store();
    s.fail = true;
    await expect(loadHostKey(sodium, kms, s, log)).rejects.toThrow('disk full');
    expect(s.hostKeyBlob).toBeUndefined();
  });

  it('a blob the KMS cannot unwrap is an error', async () => {
    await expect(loadHostKey(sodium, kms, store(Buffer.alloc(80, 1).toString('base64')), log)).rejects.toThrow();
  });
});
