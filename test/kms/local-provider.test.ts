import { chmodSync, promises as fs, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalKeyProvider, type LocalKeyProviderOptions } from '../../src/kms/local.js';
import {
  DEFAULT_KEY_ALIAS,
  KmsInvalidCiphertextError,
  KmsKeyDeletedError,
  KmsKeyDisabledError,
  KmsKeyPendingDeletionError,
  KmsNotFoundError,
  isKmsError,
  type KeyProvider,
} from '../../src/kms/provider.js';
import { tempDir } from '../helpers/nitride.js';
import { rejection } from '../helpers/errors.js';

const VOL = { volume: 'vol-0123456789abcdef0' };

let providers: LocalKeyProvider[] = [];
let cleanups: Array<() => void> = [];
afterEach(async () => {
  for (const p of providers) await p.close().catch(() => {});
  providers = [];
  cleanups.forEach((c) => c());
  cleanups = [];
});

async function provider(options: LocalKeyProviderOptions = {}): Promise<LocalKeyProvider> {
  const p = await LocalKeyProvider.open({ sweepIntervalMs: 0, ...options });
  providers.push(p);
  return p;
}

function scratch(): string {
  const t = tempDir('nitride-kms-unit-');
  cleanups.push(t.cleanup);
  return t.dir;
}

/** A clock the test moves by hand. */
function fakeClock(start = Date.parse('2030-01-01T00:00:00Z')) {
  let now = start;
  return { now: () => new Date(now), advanceDays: (d: number) => (now += d * 86_400_000) };
}

describe('LocalKeyProvider: envelope operations', () => {
  it('creates the default key on first use and keeps using it', async () => {
    const p = await provider();
    expect(await p.listKeys()).toEqual([]);
    const a = await p.generateDataKeyWithoutPlaintext(undefined, VOL);
    expect(a.keyId).toMatch(/^key-[0-9a-f]{32}$/);
    expect(a.keyVersion).toBe(1);
    expect(a).not.toHaveProperty('plaintext');
    const b = await p.generateDataKeyWithoutPlaintext(undefined, { volume: 'vol-2' });
    expect(b.keyId).toBe(a.keyId);
    const meta = await p.describeKey(DEFAULT_KEY_ALIAS);
    expect(meta).toMatchObject({ keyId: a.keyId, aliases: [DEFAULT_KEY_ALIAS], state: 'Enabled', currentVersion: 1 });
    expect(await p.listKeys()).toHaveLength(1);
  });

  it('creates the default key only once under concurrent first use', async () => {
    const p = await provider();
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => p.generateDataKeyWithoutPlaintext(undefined, { volume: `vol-${i}` })));
    expect(new Set(results.map((r) => r.keyId)).size).toBe(1);
    expect(await p.listKeys()).toHaveLength(1);
  });

  it('round-trips a 64-byte data key under the same context only', async () => {
    const p = await provider();
    const key = await p.createKey({ alias: 'alias/team-a' });
    const g = await p.generateDataKey('alias/team-a', VOL);
    expect(g.keyId).toBe(key.keyId);
    expect(g.plaintext.length).toBe(64);
    const d = await p.decrypt(g.ciphertextBlob, { ...VOL });
    expect(d).toMatchObject({ keyId: key.keyId, keyVersion: 1 });
    expect(d.plaintext.equals(g.plaintext)).toBe(true);
    expect(d.plaintext.buffer.byteLength).toBe(64);
    for (const ctx of [{ volume: 'vol-other' }, {}, { ...VOL, extra: 'x' }] as Array<Record<string, string>>) {
      const err = await rejection(p.decrypt(g.ciphertextBlob, ctx));
      expect(err).toBeInstanceOf(KmsInvalidCiphertextError);
      expect(err.code).toBe('KMS_INVALID_CIPHERTEXT');
      expect(err.message).toMatch(/wrong encryption context/);
    }
    const sized = await p.generateDataKey(key.keyId, VOL, { bytes: 32 });
    expect(sized.plaintext.length).toBe(32);
    await expect(p.generateDataKey(key.keyId, VOL, { bytes: 0 })).rejects.toThrow(/from 1 to 1024/);
    await expect(p.generateDataKey(key.keyId, VOL, { bytes: 2048 })).rejects.toThrow(/from 1 to 1024/);
  });

  it('rejects every single-byte tampering of a blob', async () => {
    const p = await provider();
    const { ciphertextBlob } = await p.generateDataKeyWithoutPlaintext(undefined, VOL);
    for (let i = 0; i < ciphertextBlob.length; i++) {
      const t = Buffer.from(ciphertextBlob);
      t[i]! ^= 0x01;
      const err = await rejection(p.decrypt(t, VOL));
      // flipping a key-id byte names a key this KMS does not hold; anything else fails authentication/parsing
      if (i >= 4 && i < 20) expect(err, `byte ${i}`).toBeInstanceOf(KmsNotFoundError);
      else expect(err, `byte ${i}`).toBeInstanceOf(KmsInvalidCiphertextError);
    }
    await expect(p.decrypt(ciphertextBlob.subarray(0, ciphertextBlob.length - 1), VOL)).rejects.toBeInstanceOf(KmsInvalidCiphertextError);
    await expect(p.decrypt(Buffer.from('not a blob'), VOL)).rejects.toBeInstanceOf(KmsInvalidCiphertextError);
  });

  it('does not open a blob relabelled to another existing key', async () => {
    const p = await provider();
    const a = await p.createKey();
    const b = await p.createKey();
    const blob = Buffer.from((await p.generateDataKeyWithoutPlaintext(a.keyId, VOL)).ciphertextBlob);
    Buffer.from(b.keyId.slice(4), 'hex').copy(blob, 4);
    await expect(p.decrypt(blob, VOL)).rejects.toBeInstanceOf(KmsInvalidCiphertextError);
  });

  it('rotation: new wraps use the new version, old blobs still decrypt, reEncrypt moves them', async () => {
    const p = await provider();
    const old = await p.generateDataKey(undefined, VOL);
    const rotated = await p.rotateKey(DEFAULT_KEY_ALIAS);
    expect(rotated.currentVersion).toBe(2);
    expect(rotated.rotatedAt).toBeDefined();
    const fresh = await p.generateDataKeyWithoutPlaintext(undefined, VOL);
    expect(fresh.keyVersion).toBe(2);
    const d = await p.decrypt(old.ciphertextBlob, VOL);
    expect(d.keyVersion).toBe(1);
    expect(d.plaintext.equals(old.plaintext)).toBe(true);
    const re = await p.reEncrypt(old.ciphertextBlob, VOL);
    expect(re).toMatchObject({ keyId: old.keyId, keyVersion: 2, sourceKeyId: old.keyId, sourceKeyVersion: 1 });
    expect(re.ciphertextBlob.readUInt32BE(20)).toBe(2);
    const d2 = await p.decrypt(re.ciphertextBlob, VOL);
    expect(d2.keyVersion).toBe(2);
    expect(d2.plaintext.equals(old.plaintext)).toBe(true);
  });

  it('reEncrypt moves a data key to another key and/or another context', async () => {
    const p = await provider();
    const g = await p.generateDataKey(undefined, VOL);
    const target = await p.createKey({ alias: 'alias/archive' });
    const re = await p.reEncrypt(g.ciphertextBlob, VOL, 'alias/archive', { destinationContext: { volume: 'vol-restored' } });
    expect(re.keyId).toBe(target.keyId);
    expect(re.sourceKeyId).toBe(g.keyId);
    expect((await p.decrypt(re.ciphertextBlob, { volume: 'vol-restored' })).plaintext.equals(g.plaintext)).toBe(true);
    await expect(p.decrypt(re.ciphertextBlob, VOL)).rejects.toBeInstanceOf(KmsInvalidCiphertextError);
    await expect(p.reEncrypt(g.ciphertextBlob, { volume: 'wrong' })).rejects.toBeInstanceOf(KmsInvalidCiphertextError);
    await p.disableKey(target.keyId);
    await expect(p.reEncrypt(g.ciphertextBlob, VOL, target.keyId)).rejects.toBeInstanceOf(KmsKeyDisabledError);
  });
});

describe('LocalKeyProvider: key states', () => {
  it('a disabled key wraps and unwraps nothing until enabled again', async () => {
    const p = await provider();
    const k = await p.createKey();
    const g = await p.generateDataKeyWithoutPlaintext(k.keyId, VOL);
    expect((await p.disableKey(k.keyId)).state).toBe('Disabled');
    const err = await rejection(p.decrypt(g.ciphertextBlob, VOL));
    expect(err).toBeInstanceOf(KmsKeyDisabledError);
    expect(err.code).toBe('KMS_KEY_DISABLED');
    expect(err.message).toBe(`KMS key ${k.keyId} is disabled`);
    expect(isKmsError(err)).toBe(true);
    await expect(p.generateDataKeyWithoutPlaintext(k.keyId, VOL)).rejects.toBeInstanceOf(KmsKeyDisabledError);
    await expect(p.reEncrypt(g.ciphertextBlob, VOL)).rejects.toBeInstanceOf(KmsKeyDisabledError);
    await expect(p.rotateKey(k.keyId)).rejects.toBeInstanceOf(KmsKeyDisabledError);
    expect((await p.enableKey(k.keyId)).state).toBe('Enabled');
    expect((await p.decrypt(g.ciphertextBlob, VOL)).plaintext.length).toBe(64);
  });

  it('deletion: waiting period (7-30 days), pending state, cancel, then crypto-shred when the date passes', async () => {
    const clock = fakeClock();
    const p = await provider({ now: clock.now });
    const k = await p.createKey({ alias: 'alias/doomed' });
    const g = await p.generateDataKeyWithoutPlaintext(k.keyId, VOL);
    for (const days of [0, 6, 31, 1.5]) await expect(p.scheduleKeyDeletion(k.keyId, days)).rejects.toThrow(/from 7 to 30.*--allow-immediate-deletion/);

    const pending = await p.scheduleKeyDeletion(k.keyId, 7);
    expect(pending.state).toBe('PendingDeletion');
    expect(pending.deletionDate).toBe('2030-01-08T00:00:00.000Z');
    const err = await rejection(p.decrypt(g.ciphertextBlob, VOL));
    expect(err).toBeInstanceOf(KmsKeyPendingDeletionError);
    expect(err.message).toMatch(/pending deletion .*2030-01-08.*cancel the deletion/);
    await expect(p.enableKey(k.keyId)).rejects.toBeInstanceOf(KmsKeyPendingDeletionError);
    await expect(p.scheduleKeyDeletion(k.keyId, 7)).rejects.toBeInstanceOf(KmsKeyPendingDeletionError);

    expect((await p.cancelKeyDeletion(k.keyId)).state).toBe('Disabled');
    await expect(p.cancelKeyDeletion(k.keyId)).rejects.toThrow(/not pending deletion/);
    await p.enableKey(k.keyId);
    expect((await p.decrypt(g.ciphertextBlob, VOL)).keyId).toBe(k.keyId);

    await p.scheduleKeyDeletion(k.keyId, 30);
    clock.advanceDays(29.9);
    await expect(p.decrypt(g.ciphertextBlob, VOL)).rejects.toBeInstanceOf(KmsKeyPendingDeletionError);
    clock.advanceDays(0.2);
    const gone = await rejection(p.decrypt(g.ciphertextBlob, VOL));
    expect(gone).toBeInstanceOf(KmsKeyDeletedError);
    expect(gone.code).toBe('KMS_KEY_DELETED');
    expect(gone.message).toMatch(/was deleted at .*unrecoverable/);
    const meta = await p.describeKey(k.keyId);
    expect(meta).toMatchObject({ state: 'Deleted', aliases: [] });
    expect(meta.deletedAt).toBeDefined();
    await expect(p.describeKey('alias/doomed')).rejects.toBeInstanceOf(KmsNotFoundError);
    await expect(p.enableKey(k.keyId)).rejects.toBeInstanceOf(KmsKeyDeletedError);
    await expect(p.cancelKeyDeletion(k.keyId)).rejects.toBeInstanceOf(KmsKeyDeletedError);
  });

  it('allowImmediateDeletion permits 0 days: the key is destroyed before the call returns', async () => {
    const p = await provider({ allowImmediateDeletion: true });
    const k = await p.createKey();
    const g = await p.generateDataKeyWithoutPlaintext(k.keyId, VOL);
    expect((await p.scheduleKeyDeletion(k.keyId, 0)).state).toBe('Deleted');
    await expect(p.decrypt(g.ciphertextBlob, VOL)).rejects.toBeInstanceOf(KmsKeyDeletedError);
  });

  it('deleting the default key crypto-shreds its family; the next default is a new key', async () => {
    const p = await provider({ allowImmediateDeletion: true });
    const first = await p.generateDataKeyWithoutPlaintext(undefined, VOL);
    await p.scheduleKeyDeletion(DEFAULT_KEY_ALIAS, 0);
    await expect(p.decrypt(first.ciphertextBlob, VOL)).rejects.toBeInstanceOf(KmsKeyDeletedError);
    const second = await p.generateDataKeyWithoutPlaintext(undefined, VOL);
    expect(second.keyId).not.toBe(first.keyId);
  });

  it('validates key references and aliases', async () => {
    const p = await provider();
    await p.createKey({ alias: 'alias/a/b_c-1' });
    await expect(p.createKey({ alias: 'alias/a/b_c-1' })).rejects.toMatchObject({ code: 'KMS_ALIAS_EXISTS' });
    for (const alias of ['team', 'alias/', 'alias/a b', 'alias//x', 'alias/x/']) await expect(p.createKey({ alias }), alias).rejects.toThrow(/invalid alias/);
    await expect(p.createKey({ alias: 'alias/nitride/mine' })).rejects.toThrow(/reserved/);
    await expect(p.describeKey('key-123')).rejects.toThrow(/invalid key reference 'key-123'/);
    await expect(p.describeKey('key-' + '0'.repeat(32))).rejects.toBeInstanceOf(KmsNotFoundError);
    await expect(p.generateDataKeyWithoutPlaintext('alias/none', VOL)).rejects.toBeInstanceOf(KmsNotFoundError);
    await expect(p.generateDataKeyWithoutPlaintext(undefined, { volume: 1 } as unknown as Record<string, string>)).rejects.toThrow(/not a string/);
  });

  it('honours an aborted signal', async () => {
    const p = await provider();
    await expect(p.generateDataKeyWithoutPlaintext(undefined, VOL, { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ABORTED' });
  });

  it('is a KeyProvider (the daemon cannot tell it from KmsClient)', async () => {
    const p: KeyProvider = await provider();
    const w = await p.generateDataKeyWithoutPlaintext(undefined, VOL);
    expect((await p.decrypt(w.ciphertextBlob, VOL)).plaintext.length).toBe(64);
  });
});

describe('LocalKeyProvider: the key store file', () => {
  it('persists keys (0600, atomic) and reopens them; deletion removes the material from the file', async () => {
    const dir = scratch();
    const file = path.join(dir, 'keystore.json');
    const p = await provider({ file, allowImmediateDeletion: true });
    const keep = await p.createKey({ alias: 'alias/keep', description: 'kept' });
    const doomed = await p.createKey();
    const gKeep = await p.generateDataKey(keep.keyId, VOL);
    const gDoomed = await p.generateDataKeyWithoutPlaintext(doomed.keyId, VOL);
    await p.rotateKey(keep.keyId);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const before = JSON.parse(await fs.readFile(file, 'utf8'));
    expect(before).toMatchObject({ format: 'nitride-kms-keystore', version: 1, aliases: { 'alias/keep': keep.keyId } });
    const doomedMaterial: string = before.keys.find((k: { keyId: string }) => k.keyId === doomed.keyId).versions[0].material;
    expect(Buffer.from(doomedMaterial, 'base64').length).toBe(32);

    await p.scheduleKeyDeletion(doomed.keyId, 0);
    const after = await fs.readFile(file, 'utf8');
    expect(after).not.toContain(doomedMaterial);
    expect(JSON.parse(after).keys.find((k: { keyId: string }) => k.keyId === doomed.keyId)).toMatchObject({ state: 'Deleted', versions: [{ material: null }] });
    expect((await fs.readdir(dir)).sort()).toEqual(['keystore.json']);
    await p.close();
    await expect(p.describeKey(keep.keyId)).rejects.toMatchObject({ code: 'KMS_UNAVAILABLE' });

    const again = await provider({ file });
    expect(await again.describeKey('alias/keep')).toMatchObject({ keyId: keep.keyId, currentVersion: 2, description: 'kept' });
    expect((await again.decrypt(gKeep.ciphertextBlob, VOL)).plaintext.equals(gKeep.plaintext)).toBe(true);
    await expect(again.decrypt(gDoomed.ciphertextBlob, VOL)).rejects.toBeInstanceOf(KmsKeyDeletedError);
  });

  it('a pending deletion survives a restart and fires when its date has passed', async () => {
    const dir = scratch();
    const file = path.join(dir, 'keystore.json');
    const clock = fakeClock();
    const p = await provider({ file, now: clock.now });
    const k = await p.createKey();
    await p.scheduleKeyDeletion(k.keyId, 7);
    await p.close();
    clock.advanceDays(8);
    const again = await provider({ file, now: clock.now });
    expect(await again.sweep()).toEqual([k.keyId]);
    expect((await again.describeKey(k.keyId)).state).toBe('Deleted');
  });

  it('tightens a group/other-readable key store to 0600 and refuses a corrupt one', async () => {
    const dir = scratch();
    const file = path.join(dir, 'keystore.json');
    const p = await provider({ file });
    await p.createKey();
    await p.close();
    chmodSync(file, 0o644);
    await provider({ file });
    expect(statSync(file).mode & 0o777).toBe(0o600);

    writeFileSync(file, '{"format":"nitride-kms-keystore","version":1,"keys":[{"keyId":"bad"}],"aliases":{}}');
    await expect(LocalKeyProvider.open({ file })).rejects.toMatchObject({ code: 'STATE_CORRUPT' });
    writeFileSync(file, '{not json');
    await expect(LocalKeyProvider.open({ file })).rejects.toMatchObject({ code: 'STATE_CORRUPT' });
  });

  it('a failed save leaves memory as the file is (no key exists that the disk does not know)', async () => {
    // (root ignores directory permissions: make the save fail by removing the directory)
    const dir = scratch();
    const sub = path.join(dir, 'sub');
    await fs.mkdir(sub);
    const file = path.join(sub, 'keystore.json');
    const p = await provider({ file });
    await p.createKey({ alias: 'alias/one' });
    await fs.rm(sub, { recursive: true });
    const err = await rejection(p.createKey({ alias: 'alias/two' }));
    expect(err.code).toBe('KMS_UNAVAILABLE');
    expect(err.message).toMatch(/cannot save the key store/);
    // the reload found no file at all: memory now matches the (empty) disk
    expect(await p.listKeys()).toEqual([]);
  });
});
