import { existsSync, promises as fs, statSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { KmsClient } from '../../src/kms/client.js';
import {
  KmsInvalidCiphertextError,
  KmsKeyDeletedError,
  KmsKeyDisabledError,
  KmsKeyPendingDeletionError,
  KmsNotFoundError,
  KmsUnavailableError,
  type KeyProvider,
} from '../../src/kms/provider.js';
import { nitride, tempDir } from '../helpers/nitride.js';
import { startKms, type RunningKms } from '../helpers/nitride.js';
import { rejection } from '../helpers/errors.js';

let running: RunningKms[] = [];
let cleanups: Array<() => void> = [];
afterEach(async () => {
  for (const k of running) await k.stop('SIGKILL');
  running = [];
  cleanups.forEach((c) => c());
  cleanups = [];
});

async function fresh(args: string[] = ['--allow-immediate-deletion']): Promise<RunningKms> {
  const t = tempDir('nitride-kms-');
  cleanups.push(t.cleanup);
  const k = await startKms({ stateDir: path.join(t.dir, 'state'), socket: path.join(t.dir, 'run', 'kms.sock'), args });
  running.push(k);
  return k;
}

const kmsCli = (k: RunningKms, ...args: string[]) => nitride(['kms', ...args, '--socket', k.socket]);

async function auditLines(k: RunningKms): Promise<Array<Record<string, any>>> {
  return (await fs.readFile(path.join(k.stateDir, 'audit.log'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, any>);
}

/** One raw HTTP call on the socket (for what the typed client cannot send). */
function raw(socket: string, method: string, urlPath: string, body?: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, method, path: urlPath, headers: body === undefined ? {} : { 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const VOL = { volume: 'vol-0a1b2c3d4e5f60718' };

describe('nitride kms serve (real process)', () => {
  it('creates keys from the CLI and serves generate/decrypt round trips through KmsClient', async () => {
    const k = await fresh();
    expect(statSync(k.stateDir).mode & 0o777).toBe(0o700);
    expect(statSync(k.socket).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(k.socket)).mode & 0o777).toBe(0o700);

    const created = await kmsCli(k, 'create-key', '--alias', 'alias/team-a', '--description', 'team A volumes', '--json');
    expect(created.code, created.stderr).toBe(0);
    const meta = JSON.parse(created.stdout);
    expect(meta).toMatchObject({ keyId: expect.stringMatching(/^key-[0-9a-f]{32}$/), aliases: ['alias/team-a'], state: 'Enabled', currentVersion: 1 });
    expect(statSync(path.join(k.stateDir, 'keystore.json')).mode & 0o777).toBe(0o600);
    const plain = await kmsCli(k, 'create-key');
    expect(plain.stdout.trim()).toMatch(/^key-[0-9a-f]{32}$/);

    const provider: KeyProvider = k.client;
    const wrapped = await provider.generateDataKeyWithoutPlaintext(meta.keyId, VOL);
    expect(wrapped).toMatchObject({ keyId: meta.keyId, keyVersion: 1 });
    const opened = await provider.decrypt(wrapped.ciphertextBlob, VOL);
    expect(opened.plaintext.length).toBe(64);
    expect(opened.plaintext.buffer.byteLength).toBe(64); // own memory: wiping it wipes the only copy

    const g = await provider.generateDataKey('alias/team-a', VOL);
    const d = await provider.decrypt(g.ciphertextBlob, VOL);
    expect(d.plaintext.equals(g.plaintext)).toBe(true);
    expect((await provider.describeKey('alias/team-a')).keyId).toBe(meta.keyId);

    // no key given: the default key alias/nitride/ebs is created on first use
    const def = await provider.generateDataKeyWithoutPlaintext(undefined, VOL);
    const list = JSON.parse((await kmsCli(k, 'list-keys', '--json')).stdout);
    expect(list.keys.find((x: { keyId: string }) => x.keyId === def.keyId).aliases).toEqual(['alias/nitride/ebs']);
    const table = await kmsCli(k, 'list-keys');
    expect(table.stdout).toMatch(/^KEY ID\s+STATE\s+VERSION\s+ALIASES/);
    expect(table.stdout).toContain('alias/team-a');

    // wrong context and tampering over the wire
    await expect(provider.decrypt(g.ciphertextBlob, { volume: 'vol-other' })).rejects.toBeInstanceOf(KmsInvalidCiphertextError);
    const tampered = Buffer.from(g.ciphertextBlob);
    tampered[tampered.length - 1]! ^= 1;
    await expect(provider.decrypt(tampered, VOL)).rejects.toBeInstanceOf(KmsInvalidCiphertextError);
  });

  it('sends plaintext keys as raw bytes, never JSON', async () => {
    const k = await fresh();
    const w = await k.client.generateDataKeyWithoutPlaintext(undefined, VOL);
    const r = await raw(k.socket, 'POST', '/v1/decrypt', JSON.stringify({ ciphertextBlob: w.ciphertextBlob.toString('base64'), context: VOL }));
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/octet-stream');
    expect(r.headers['nitride-kms-key-id']).toBe(w.keyId);
    expect(r.headers['nitride-kms-key-version']).toBe('1');
    expect(r.body.length).toBe(64);
    const viaClient = await k.client.decrypt(w.ciphertextBlob, VOL);
    expect(viaClient.plaintext.equals(r.body)).toBe(true);
  });

  it('disable stops decrypts with a clear error; enable restores; rotation and re-encrypt work', async () => {
    const k = await fresh();
    const keyId = (await kmsCli(k, 'create-key')).stdout.trim();
    const g = await k.client.generateDataKey(keyId, VOL);

    const disabled = await kmsCli(k, 'disable-key', keyId, '--json');
    expect(disabled.code).toBe(0);
    expect(JSON.parse(disabled.stdout).state).toBe('Disabled');
    const err = await rejection(k.client.decrypt(g.ciphertextBlob, VOL));
    expect(err).toBeInstanceOf(KmsKeyDisabledError);
    expect(err.code).toBe('KMS_KEY_DISABLED');
    expect(err.message).toBe(`KMS key ${keyId} is disabled`);
    await expect(k.client.generateDataKeyWithoutPlaintext(keyId, VOL)).rejects.toBeInstanceOf(KmsKeyDisabledError);

    const enabled = await kmsCli(k, 'enable-key', keyId);
    expect(enabled.code).toBe(0);
    expect(enabled.stdout).toMatch(/^state:\s+Enabled$/m);
    expect((await k.client.decrypt(g.ciphertextBlob, VOL)).plaintext.equals(g.plaintext)).toBe(true);

    const rotated = await kmsCli(k, 'rotate-key', keyId, '--json');
    expect(JSON.parse(rotated.stdout).currentVersion).toBe(2);
    const re = await k.client.reEncrypt(g.ciphertextBlob, VOL);
    expect(re).toMatchObject({ keyId, keyVersion: 2, sourceKeyId: keyId, sourceKeyVersion: 1 });
    const d = await k.client.decrypt(re.ciphertextBlob, VOL);
    expect(d.keyVersion).toBe(2);
    expect(d.plaintext.equals(g.plaintext)).toBe(true);
    expect((await k.client.decrypt(g.ciphertextBlob, VOL)).keyVersion).toBe(1);
  });

  it('scheduled deletion: pending (cancel works), then with 0 days the material is destroyed', async () => {
    const k = await fresh();
    const keyId = (await kmsCli(k, 'create-key', '--alias', 'alias/doomed')).stdout.trim();
    const w = await k.client.generateDataKeyWithoutPlaintext('alias/doomed', VOL);
    const before = await fs.readFile(path.join(k.stateDir, 'keystore.json'), 'utf8');
    const material: string = JSON.parse(before).keys[0].versions[0].material;

    const pending = JSON.parse((await kmsCli(k, 'schedule-deletion', keyId, '--days', '3', '--json')).stdout);
    expect(pending.state).toBe('PendingDeletion');
    expect(Date.parse(pending.deletionDate) - Date.now()).toBeGreaterThan(2.9 * 86_400_000);
    await expect(k.client.decrypt(w.ciphertextBlob, VOL)).rejects.toBeInstanceOf(KmsKeyPendingDeletionError);
    expect(JSON.parse((await kmsCli(k, 'cancel-deletion', keyId, '--json')).stdout).state).toBe('Disabled');
    await kmsCli(k, 'enable-key', keyId);
    expect((await k.client.decrypt(w.ciphertextBlob, VOL)).keyId).toBe(keyId);

    const shred = await kmsCli(k, 'schedule-deletion', 'alias/doomed', '--days', '0', '--json');
    expect(shred.code, shred.stderr).toBe(0);
    expect(JSON.parse(shred.stdout)).toMatchObject({ keyId, state: 'Deleted' });
    const err = await rejection(k.client.decrypt(w.ciphertextBlob, VOL));
    expect(err).toBeInstanceOf(KmsKeyDeletedError);
    expect(err.message).toMatch(new RegExp(`KMS key ${keyId} was deleted at .*unrecoverable`));
    const after = await fs.readFile(path.join(k.stateDir, 'keystore.json'), 'utf8');
    expect(after).not.toContain(material);
    expect(JSON.parse(after).keys[0].versions[0].material).toBeNull();
    const describe = await kmsCli(k, 'describe-key', keyId);
    expect(describe.stdout).toMatch(/^state:\s+Deleted$/m);
    const gone = await kmsCli(k, 'describe-key', 'alias/doomed');
    expect(gone.code).toBe(1);
    expect(gone.stderr.trim()).toBe('nitride: no KMS key has the alias alias/doomed');
  });

  it('without --allow-immediate-deletion the waiting period is 7-30 days', async () => {
    const k = await fresh([]);
    const keyId = (await kmsCli(k, 'create-key')).stdout.trim();
    const r = await kmsCli(k, 'schedule-deletion', keyId, '--days', '0');
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(
      'nitride: deletion waiting period must be a whole number of days from 7 to 30 (shorter periods need a KMS started with --allow-immediate-deletion)',
    );
    const ok = JSON.parse((await kmsCli(k, 'schedule-deletion', keyId, '--json')).stdout);
    expect(Math.round((Date.parse(ok.deletionDate) - Date.now()) / 86_400_000)).toBe(30);
  });

  it('refuses a second KMS on the same socket and on the same state dir; stops cleanly', async () => {
    const k = await fresh();
    const t = tempDir('nitride-kms-');
    cleanups.push(t.cleanup);
    const r = await nitride(['kms', 'serve', '--state-dir', t.dir, '--socket', k.socket]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(`nitride: KMS socket ${k.socket} is in use by another process (pid ${k.process.pid})`);
    const s = await nitride(['kms', 'serve', '--state-dir', k.stateDir, '--socket', path.join(t.dir, 'other.sock')]);
    expect(s.code).toBe(1);
    expect(s.stderr.trim()).toMatch(new RegExp(`^nitride: .*\\(pid ${k.process.pid}\\) is using state directory ${k.stateDir}$`));
    expect((await kmsCli(k, 'list-keys')).code).toBe(0);

    expect(await k.stop('SIGTERM')).toBe(0);
    expect(existsSync(k.socket)).toBe(false);
    expect(k.output()).toContain('"msg":"kms stopped"');
    const down = await rejection(new KmsClient({ socketPath: k.socket }).listKeys());
    expect(down).toBeInstanceOf(KmsUnavailableError);
    expect(down.code).toBe('KMS_UNAVAILABLE');
    const cli = await kmsCli(k, 'list-keys');
    expect(cli.code).toBe(1);
    expect(cli.stderr.trim()).toBe(`nitride: cannot reach the nitride KMS at ${k.socket} (is it running?)`);
  });

  it('rejects bad input with 4xx JSON errors and one-line CLI errors, and keeps serving', async () => {
    const k = await fresh();
    const w = await k.client.generateDataKeyWithoutPlaintext(undefined, VOL);
    const blob = w.ciphertextBlob.toString('base64');
    const cases: Array<[string, string, string | undefined, number, string, RegExp]> = [
      ['POST', '/v1/decrypt', '{"ciphertextBlob":', 400, 'BAD_JSON', /not valid JSON/],
      ['POST', '/v1/decrypt', JSON.stringify({ ciphertextBlob: blob, context: VOL, plaintext: 'x' }), 400, 'USAGE', /unknown field\(s\) 'plaintext'/],
      ['POST', '/v1/decrypt', JSON.stringify({ ciphertextBlob: '!!', context: VOL }), 400, 'USAGE', /base64/],
      ['POST', '/v1/decrypt', JSON.stringify({ ciphertextBlob: blob, context: { volume: 5 } }), 400, 'USAGE', /context/],
      ['POST', '/v1/decrypt', JSON.stringify({ ciphertextBlob: 'AAAA', context: VOL }), 400, 'KMS_INVALID_CIPHERTEXT', /invalid length/],
      ['POST', '/v1/decrypt', JSON.stringify({ ciphertextBlob: blob, context: { volume: 'x' } }), 400, 'KMS_INVALID_CIPHERTEXT', /wrong encryption context/],
      ['POST', '/v1/generate-data-key', JSON.stringify({ context: VOL, bytes: 0 }), 400, 'USAGE', /bytes/],
      ['POST', '/v1/generate-data-key-without-plaintext', JSON.stringify({ keyId: 'nope', context: VOL }), 400, 'USAGE', /invalid key reference/],
      ['POST', '/v1/keys', JSON.stringify({ alias: 'alias/nitride/x' }), 400, 'USAGE', /reserved/],
      ['GET', `/v1/keys/${'key-' + '0'.repeat(32)}`, undefined, 404, 'KMS_NOT_FOUND', /no KMS key/],
      ['POST', '/v1/keys/alias%2Fnitride%2Febs/schedule-deletion', JSON.stringify({ days: 'x' }), 400, 'USAGE', /days/],
      ['GET', '/v1/keys/%E0%A4%A', undefined, 400, 'USAGE', /invalid key reference/],
      ['GET', '/v1/nope', undefined, 404, 'NO_ROUTE', /no such API path/],
      ['DELETE', '/v1/keys', undefined, 405, 'METHOD_NOT_ALLOWED', /not allowed/],
    ];
    for (const [method, p, body, status, code, message] of cases) {
      const r = await raw(k.socket, method, p, body);
      expect(r.status, `${method} ${p} ${body}`).toBe(status);
      expect(r.headers['content-type']).toBe('application/json');
      const json = JSON.parse(r.body.toString());
      expect(json.error.code, `${method} ${p}`).toBe(code);
      expect(json.error.message).toMatch(message);
    }
    for (const [args, code, message] of [
      [['describe-key', 'foo'], 2, /^nitride: invalid key reference 'foo': expected key-<32 hex digits> or alias\/<name>$/],
      [['create-key', '--alias', 'team'], 2, /^nitride: invalid alias 'team'/],
      [['schedule-deletion', 'alias/x', '--days', 'soon'], 2, /^nitride: .*must be a whole number of days/],
      [['describe-key'], 2, /^nitride: missing required argument 'key'/],
      [['frobnicate-key'], 2, /^nitride: unknown command 'frobnicate-key'/],
      [['enable-key', 'alias/none'], 1, /^nitride: no KMS key has the alias alias\/none$/],
    ] as Array<[string[], number, RegExp]>) {
      const r = await kmsCli(k, ...args);
      expect(r.code, args.join(' ')).toBe(code);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr.trim(), args.join(' ')).toMatch(message);
    }
    expect(k.process.exitCode).toBeNull();
    expect((await k.client.decrypt(w.ciphertextBlob, VOL)).plaintext.length).toBe(64);
    // even calls that match no route are audited
    const lines = await auditLines(k);
    expect(lines.find((l) => l.action === 'kms.UnknownCall' && l.target === 'GET /v1/nope')).toMatchObject({ status: 404, error: 'NO_ROUTE', result: 'error' });
    expect(lines.find((l) => l.action === 'kms.UnknownCall' && l.target === 'DELETE /v1/keys')).toMatchObject({ status: 405 });
    expect(lines.find((l) => l.action === 'kms.Decrypt' && l.error === 'BAD_JSON')).toBeDefined();
  });

  it('audits every call (who, API, key, context, result) and never logs key bytes', async () => {
    const k = await fresh();
    const keyId = (await kmsCli(k, 'create-key', '--alias', 'alias/audited')).stdout.trim();
    const secrets: Buffer[] = [];
    const blobs: Buffer[] = [];
    for (let i = 0; i < 4; i++) {
      const g = await k.client.generateDataKey(i % 2 ? keyId : undefined, { volume: `vol-${i}` });
      secrets.push(Buffer.from(g.plaintext));
      blobs.push(g.ciphertextBlob);
      const d = await k.client.decrypt(g.ciphertextBlob, { volume: `vol-${i}` });
      secrets.push(Buffer.from(d.plaintext));
    }
    await k.client.rotateKey(keyId);
    const re = await k.client.reEncrypt(blobs[1]!, { volume: 'vol-1' });
    secrets.push(Buffer.from((await k.client.decrypt(re.ciphertextBlob, { volume: 'vol-1' })).plaintext));
    await kmsCli(k, 'disable-key', keyId);
    await k.client.decrypt(blobs[1]!, { volume: 'vol-1' }).catch(() => {});
    await k.client.decrypt(blobs[0]!, { volume: 'wrong' }).catch(() => {});
    await kmsCli(k, 'schedule-deletion', keyId, '--days', '0');

    const lines = await auditLines(k);
    const me = process.getuid!();
    for (const line of lines) {
      expect(line.caller.uid).toBe(me);
      expect(line.caller.pid).toBeGreaterThan(0);
      expect(line.action).toMatch(/^kms\./);
      expect(['ok', 'error']).toContain(line.result);
    }
    const actions = lines.map((l) => l.action);
    for (const a of ['kms.Status', 'kms.CreateKey', 'kms.GenerateDataKey', 'kms.Decrypt', 'kms.RotateKey', 'kms.ReEncrypt', 'kms.DisableKey', 'kms.ScheduleKeyDeletion']) {
      expect(actions, a).toContain(a);
    }
    const decrypts = lines.filter((l) => l.action === 'kms.Decrypt');
    expect(decrypts[0]).toMatchObject({ status: 200, result: 'ok', details: { context: { volume: 'vol-0' }, keyVersion: 1 } });
    expect(decrypts[0]!.target).toMatch(/^key-/);
    expect(decrypts.find((l) => l.status === 409)).toMatchObject({ target: keyId, error: 'KMS_KEY_DISABLED', result: 'error', details: { context: { volume: 'vol-1' } } });
    expect(decrypts.find((l) => l.status === 400)).toMatchObject({ error: 'KMS_INVALID_CIPHERTEXT', details: { context: { volume: 'wrong' } } });
    expect(lines.find((l) => l.action === 'kms.ReEncrypt')).toMatchObject({ target: keyId, details: { keyVersion: 1, destinationKeyId: keyId, destinationKeyVersion: 2 } });
    expect(lines.find((l) => l.action === 'kms.GenerateDataKey' && l.details.defaultKey)).toMatchObject({ details: { bytes: 64, context: { volume: 'vol-0' } } });

    // nothing outside the key store holds a data key or a master key, in any common encoding
    await k.stop('SIGTERM');
    const keystore = JSON.parse(await fs.readFile(path.join(k.stateDir, 'keystore.json'), 'utf8'));
    const masters = keystore.keys.flatMap((key: { versions: Array<{ material: string | null }> }) => key.versions.map((v) => v.material)).filter(Boolean) as string[];
    expect(masters.length).toBeGreaterThan(0);
    const outputs = (await fs.readFile(path.join(k.stateDir, 'audit.log'), 'utf8')) + k.output();
    expect(secrets).toHaveLength(9);
    for (const s of [...secrets, ...masters.map((m) => Buffer.from(m, 'base64'))]) {
      for (const encoded of [s.toString('hex'), s.toString('base64'), s.toString('base64url'), s.subarray(0, 24).toString('base64'), s.subarray(0, 16).toString('hex')]) {
        expect(outputs.includes(encoded)).toBe(false);
      }
      expect(outputs.includes(JSON.stringify([...s]).slice(1, 40))).toBe(false);
    }
  });
});
